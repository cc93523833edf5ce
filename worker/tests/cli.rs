//! The `baton-worker` binary: it serves until SIGTERM, then drains, says goodbye and exits 0;
//! it refuses what it cannot do with a message that says what to do instead.

use std::process::{Command, Stdio};
use std::time::Duration;

use baton_common::control::{Goodbye, Heartbeat, WorkerHello, WorkerState};
use baton_common::subjects;
use baton_common::testing::NatsServer;
use baton_common::wire::decode;
use futures::StreamExt;

const BIN: &str = env!("CARGO_BIN_EXE_baton-worker");
const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_says_goodbye_and_exits_zero() {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("cannot start nats-server for the test: {e}"));
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut tap = client.subscribe("baton.worker.>").await.unwrap();
    client.publish("baton.worker.sync", "".into()).await.unwrap();
    tokio::time::timeout(WAIT, tap.next()).await.unwrap().unwrap();

    let mut child = Command::new(BIN)
        .args(["run", "--nats", &server.url(), "--id", "cli1", "--models", "a,b"])
        .args([
            "--profile",
            "sleep#1000,2000,0,0",
            "--profile",
            "b=sleep#10,20,0,0",
            "--max-batch",
            "16",
        ])
        .args(["--input-shape", "none", "--heartbeat-ms", "20", "--hardware", "t4"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut next = async || {
        tokio::time::timeout(WAIT, tap.next())
            .await
            .expect("a message")
            .unwrap()
    };
    let hello = loop {
        let m = next().await;
        if m.subject.as_str() == subjects::WORKER_HELLO {
            break decode::<WorkerHello>(&m.payload).unwrap();
        }
    };
    assert_eq!((hello.worker_id.as_str(), hello.hardware.as_str()), ("cli1", "t4"));
    let names: Vec<&str> = hello.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(hello.models[0].profile.max_batch(), 16);
    assert_eq!(hello.models[1].profile.forward_mean_us(1).unwrap(), 30.0);

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut saw_draining = false;
    loop {
        let m = next().await;
        match m.subject.as_str() {
            subjects::WORKER_HEARTBEAT => {
                saw_draining |= decode::<Heartbeat>(&m.payload).unwrap().state == WorkerState::Draining;
            }
            subjects::WORKER_GOODBYE => {
                assert_eq!(decode::<Goodbye>(&m.payload).unwrap().worker_id.as_str(), "cli1");
                break;
            }
            _ => {}
        }
    }
    assert!(saw_draining, "a draining heartbeat comes before the goodbye");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
}

fn run_expecting_failure(args: &[&str]) -> String {
    let out = Command::new(BIN).arg("run").args(args).output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[cfg(not(feature = "torch"))]
#[test]
fn torch_without_the_feature_says_how_to_build_it() {
    let err = run_expecting_failure(&["--id", "w", "--model", "m=resnet18", "--backend", "torch"]);
    assert!(err.contains("make torch") && err.contains("--features torch"), "{err}");
    let out = Command::new(BIN)
        .args(["profile", "--model", "resnet18", "--out", "p.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("make torch"), "{err}");
}

#[test]
fn torch_models_are_not_for_the_emulated_backend() {
    let err = run_expecting_failure(&["--id", "w", "--model", "m=resnet18"]);
    assert!(err.contains("--backend torch"), "{err}");
}

#[test]
fn a_model_without_a_profile_is_refused() {
    let err = run_expecting_failure(&["--id", "w", "--models", "m,n", "--profile", "m=sleep#1,1,0,0"]);
    assert!(err.contains("profile for model `n`"), "{err}");
    let err = run_expecting_failure(&["--id", "a.b", "--models", "m"]);
    assert!(err.contains("NATS subject"), "{err}");
}
