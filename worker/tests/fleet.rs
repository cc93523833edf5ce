//! `baton-worker fleet` against the real scheduler over a real nats-server: a fleet of 200
//! emulated workers registers as 200 ready workers, serves requests through them with exactly one
//! `ok` reply each, and on SIGTERM drains every worker, which all say goodbye, so the scheduler
//! lists none.
//!
//! Needs the `baton` binary beside the test (`cargo build -p baton-scheduler --bin baton`, or
//! `make test`, which builds the workspace first).

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::Subscriber;
use baton_common::client::{Client, ClientOptions};
use baton_common::control::{BatchDone, Goodbye};
use baton_common::subjects;
use baton_common::testing::{workspace_binary, NatsServer};
use baton_common::wire::{decode, DType, InferReply, InferRequest, Status, Tensor};
use futures::StreamExt;

const WORKERS: usize = 200;
const REQUESTS: usize = 300;
const WAIT: Duration = Duration::from_secs(30);

/// Kills what is left of the processes if the test fails half-way.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The ready workers the scheduler lists on `baton.ops.status`, or `None` if it does not answer.
async fn ready_workers(client: &Client) -> Option<BTreeSet<String>> {
    let reply = tokio::time::timeout(
        Duration::from_secs(2),
        client.nats().request(subjects::OPS_STATUS, "".into()),
    )
    .await
    .ok()?
    .ok()?;
    let status: serde_json::Value = serde_json::from_slice(&reply.payload).ok()?;
    let workers = status.get("workers")?.as_array()?;
    Some(
        workers
            .iter()
            .filter(|w| w["state"] == "ready")
            .filter_map(|w| w["id"].as_str().map(str::to_string))
            .collect(),
    )
}

/// Waits until the scheduler lists exactly `n` ready workers; returns their ids.
async fn wait_ready(client: &Client, n: usize) -> BTreeSet<String> {
    let start = Instant::now();
    loop {
        if let Some(ids) = ready_workers(client).await {
            if ids.len() == n {
                return ids;
            }
        }
        assert!(start.elapsed() < WAIT, "the scheduler never listed {n} ready workers");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The fleet's next line of output.
async fn next_line(out: BufReader<ChildStdout>) -> (String, BufReader<ChildStdout>) {
    tokio::task::spawn_blocking(move || {
        let mut out = out;
        let mut line = String::new();
        out.read_line(&mut line).expect("read the fleet's output");
        (line, out)
    })
    .await
    .unwrap()
}

/// Reads `sub` until a message on `until` arrives (the tap's own round trip), keeping the rest.
async fn read_until(sub: &mut Subscriber, until: &str) -> Vec<async_nats::Message> {
    let mut seen = Vec::new();
    loop {
        let m = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("the tap's sync message")
            .expect("tap open");
        if m.subject.as_str() == until {
            return seen;
        }
        seen.push(m);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_of_200_registers_serves_and_drains() {
    let nats = NatsServer::start().unwrap_or_else(|e| panic!("cannot start nats-server for the test: {e}"));
    let tap_conn = async_nats::connect(nats.url()).await.unwrap();
    // Every reply (to any inbox), BatchDone and goodbye, in the order the server forwards them.
    let mut tap = tap_conn.subscribe(">").await.unwrap();
    tap_conn.publish("test.sync", "".into()).await.unwrap();
    read_until(&mut tap, "test.sync").await;

    let scheduler = baton_common::testing::scheduler_command(workspace_binary("baton"), &nats.url())
        .spawn()
        .expect("start baton scheduler");
    let mut fleet = Command::new(env!("CARGO_BIN_EXE_baton-worker"))
        .args(["fleet", "--count", &WORKERS.to_string(), "--nats", &nats.url()])
        .args(["--models", "m", "--profile", "sleep#200,2000,0,0"])
        .args(["--input-shape", "16", "--input-dtype", "u8", "--per-connection", "64"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start baton-worker fleet");
    let out = BufReader::new(fleet.stdout.take().unwrap());
    let fleet_pid = fleet.id();
    let mut processes = Processes(vec![scheduler, fleet]);

    let client = ClientOptions::new()
        .name("fleet-test")
        .grace(Duration::from_secs(2))
        .connect(&nats.url())
        .await
        .unwrap();
    let (up, out) = next_line(out).await;
    assert!(
        up.starts_with(&format!(
            "fleet up: {WORKERS} workers (fleet-0 … fleet-{}) on 4 NATS",
            WORKERS - 1
        )),
        "{up}"
    );
    let ids = wait_ready(&client, WORKERS).await;
    let expected: BTreeSet<String> = (0..WORKERS).map(|i| format!("fleet-{i}")).collect();
    assert_eq!(ids, expected);

    // Requests through the fleet, all at once: each gets its own `ok`.
    let sends = (0..REQUESTS).map(|i| {
        let client = client.clone();
        async move {
            let req = InferRequest {
                id: Some(format!("req-{i}")),
                inputs: vec![Tensor {
                    dtype: DType::U8,
                    shape: vec![16],
                    data: vec![i as u8; 16],
                }],
                slo_ms: Some(500.0),
                priority: None,
            };
            client.send("m", &req, Duration::from_millis(500)).await
        }
    });
    for (i, reply) in futures::future::join_all(sends).await.into_iter().enumerate() {
        let reply = reply.unwrap_or_else(|e| panic!("request {i}: {e}"));
        assert_eq!(
            (reply.status, reply.id.as_str()),
            (Status::Ok, format!("req-{i}").as_str()),
            "{reply:?}"
        );
    }

    let term = Command::new("kill")
        .args(["-TERM", &fleet_pid.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let (down, _) = next_line(out).await;
    assert_eq!(
        down.trim(),
        format!("fleet down: {WORKERS} of {WORKERS} workers drained and said goodbye")
    );
    let mut fleet = processes.0.pop().unwrap();
    let status = tokio::task::spawn_blocking(move || fleet.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the fleet exits 0 after draining: {status:?}");
    assert!(wait_ready(&client, 0).await.is_empty());

    // The fleet is gone, so everything it sent is ahead of this round trip on the tap.
    tap_conn.publish("test.sync", "".into()).await.unwrap();
    let seen = read_until(&mut tap, "test.sync").await;
    let mut replies: HashMap<String, Vec<Status>> = HashMap::new();
    let mut goodbyes = BTreeSet::new();
    let mut batch_workers = BTreeSet::new();
    for m in &seen {
        match m.subject.as_str() {
            subjects::WORKER_GOODBYE => {
                goodbyes.insert(decode::<Goodbye>(&m.payload).unwrap().worker_id.to_string());
            }
            subjects::BATCH_DONE => {
                batch_workers.insert(decode::<BatchDone>(&m.payload).unwrap().worker_id.to_string());
            }
            s if s.starts_with("_INBOX.") => {
                if let Ok(r) = decode::<InferReply>(&m.payload) {
                    replies.entry(r.id.clone()).or_default().push(r.status);
                }
            }
            _ => {}
        }
    }
    assert_eq!(replies.len(), REQUESTS, "one reply per request");
    for (id, statuses) in &replies {
        assert_eq!(statuses, &[Status::Ok], "request {id}: exactly one reply, `ok`");
    }
    assert_eq!(goodbyes, expected, "every worker said goodbye");
    assert!(batch_workers.iter().all(|w| expected.contains(w)), "{batch_workers:?}");
}
