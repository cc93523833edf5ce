//! Baton behind an authenticating nats-server: `deploy/nats/nats.conf` itself, with a user per
//! role and subject permissions. A wrong credential ends a process within seconds with a message
//! naming the settings to check; a client cannot pose as the scheduler, a gateway or a worker; a
//! worker cannot answer a client (only gateways do) and a gateway cannot plan; and the scheduler,
//! a gateway, a worker and a client, each with its own user, serve requests. With the openssl
//! command available, the same over mutual TLS with `deploy/nats/nats-tls.conf`, the gateway
//! inside the scheduler.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use async_nats::Event;
use baton_common::client::{Client, ClientErrorKind, ClientOptions};
use baton_common::nats::{self, NatsConnectError, Retry};
use baton_common::settings::NatsSettings;
use baton_common::subjects;
use baton_common::testing::NatsServer;
use baton_scheduler::loadgen::{self, Payload, Schedule};
use baton_scheduler::runtime::status::Status as SchedStatus;
use baton_scheduler::workload::Gap;
use futures::StreamExt;
use tokio::sync::mpsc;

/// The passwords the server gets from its environment, as in a deployment.
const PASSWORDS: [(&str, &str, &str); 4] = [
    ("scheduler", "NATS_SCHEDULER_PASSWORD", "sched-pw"),
    ("gateway", "NATS_GATEWAY_PASSWORD", "gateway-pw"),
    ("worker", "NATS_WORKER_PASSWORD", "worker-pw"),
    ("client", "NATS_CLIENT_PASSWORD", "client-pw"),
];

/// One test at a time: two of them run a scheduler, a worker and perhaps a gateway, and this
/// machine has two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Wrong credentials must end a process well before this (they take milliseconds; the bound is
/// generous for a loaded two-core machine).
const FAIL_FAST: Duration = Duration::from_secs(10);

fn password(user: &str) -> &'static str {
    PASSWORDS.iter().find(|(u, _, _)| *u == user).expect("a known user").2
}

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nats").join(file)
}

fn server_env() -> Vec<(&'static str, &'static str)> {
    PASSWORDS.iter().map(|(_, var, pw)| (*var, *pw)).collect()
}

/// nats-server with deploy/nats/nats.conf.
fn secured_server() -> NatsServer {
    NatsServer::start_with_config(&deploy("nats.conf"), &server_env())
        .expect("nats-server with deploy/nats/nats.conf (run deploy/setup/nats-server.sh)")
}

fn bin(name: &str) -> PathBuf {
    if name == "baton" {
        return PathBuf::from(env!("CARGO_BIN_EXE_baton"));
    }
    baton_common::testing::workspace_binary(name)
}

/// A `baton` or `baton-worker` command as `user` with `password`, through the environment as a
/// container would get them.
fn command(binary: &str, url: &str, user: &str, password: &str) -> Command {
    let mut c = Command::new(bin(binary));
    c.env("BATON_NATS__URL", url)
        .env("BATON_NATS__USER", user)
        .env("BATON_NATS__PASSWORD", password)
        .env("BATON_METRICS__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn");
    c
}

fn worker_args(id: &str) -> Vec<&str> {
    vec![
        "run",
        "--id",
        id,
        "--models",
        "m",
        "--profile",
        "sleep#200,2000,0,0",
        "--input-shape",
        "16",
        "--input-dtype",
        "u8",
    ]
}

/// Runs `command` to completion within `limit`, returning its output and how long it took.
fn run_bounded(mut command: Command, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    loop {
        if child.try_wait().expect("wait").is_some() {
            return (child.wait_with_output().expect("output"), start.elapsed());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "still running after {limit:?} (it should have failed fast); stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The process exited with an error whose text contains every one of `expected`.
fn assert_failed_with(output: &Output, expected: &[&str]) {
    assert!(!output.status.success(), "it should have failed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    for e in expected {
        assert!(stderr.contains(e), "stderr lacks {e:?}:\n{stderr}");
    }
}

async fn client(url: &str, user: &str) -> Client {
    ClientOptions::new()
        .name(format!("test-{user}"))
        .user_and_password(user, password(user))
        .grace(Duration::from_secs(2))
        .connect(url)
        .await
        .expect("connect as client")
}

/// A connection as `user` whose NATS events (permission violations among them) arrive on the
/// returned channel.
async fn watched(url: &str, user: &str) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let settings = NatsSettings {
        url: url.to_string(),
        name: format!("test-{user}"),
        user: user.to_string(),
        password: password(user).into(),
        ..NatsSettings::default()
    };
    let nats = nats::connect(&settings, Retry::For(Duration::from_secs(5)), |o| {
        let tx = tx.clone();
        o.event_callback(move |event: Event| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(event.to_string());
            }
        })
    })
    .await
    .expect("connect");
    (nats, rx)
}

/// Waits up to 5 s for an event containing `needle`.
async fn expect_event(events: &mut mpsc::UnboundedReceiver<String>, needle: &str) {
    let found = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(e) = events.recv().await {
            if e.to_lowercase().contains(&needle.to_lowercase()) {
                return e;
            }
        }
        String::new()
    })
    .await;
    assert!(
        matches!(&found, Ok(e) if !e.is_empty()),
        "no event with {needle:?} from the server"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_fail_fast_with_a_clear_message() {
    let _serial = SERIAL.lock().await;
    let server = secured_server();
    let url = server.url();

    // The client library: an error at once, of kind Connect, saying what to check.
    let start = Instant::now();
    let err = ClientOptions::new()
        .user_and_password("client", "wrong")
        .connect(&url)
        .await
        .unwrap_err();
    assert!(start.elapsed() < FAIL_FAST, "{:?}", start.elapsed());
    assert_eq!(err.kind(), ClientErrorKind::Connect);
    assert_eq!(
        err.to_string(),
        format!(
            "NATS at {url} rejected the credentials (authorization violation): check [nats] user/password \
             (BATON_NATS__USER, BATON_NATS__PASSWORD; user `client`); retrying cannot help, so Baton does not"
        )
    );

    // No credentials at all against a server that wants them.
    let err = ClientOptions::new().connect(&url).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("the server requires credentials and none are set: set [nats] user and password"),
        "{err}"
    );

    // The one connect function says so in its error type, for services that must not retry.
    let settings = NatsSettings {
        url: url.clone(),
        token: "not-a-token-here".into(),
        ..NatsSettings::default()
    };
    let err = nats::connect(&settings, Retry::Forever, |o| o).await.unwrap_err();
    assert!(err.is_rejected(), "{err}");
    assert!(matches!(err, NatsConnectError::Rejected { .. }));
    assert!(
        err.to_string().contains("check [nats] token (BATON_NATS__TOKEN)"),
        "{err}"
    );

    // The services wait forever for an unreachable server, but not for a wrong password: each
    // binary exits within seconds, naming the settings.
    let rejected = [
        "rejected the credentials (authorization violation)",
        "check [nats] user/password (BATON_NATS__USER, BATON_NATS__PASSWORD",
    ];
    let mut scheduler = command("baton", &url, "scheduler", "wrong");
    scheduler.arg("scheduler");
    let (out, took) = run_bounded(scheduler, FAIL_FAST);
    assert_failed_with(&out, &rejected);
    eprintln!("scheduler with a wrong password exited after {took:?}");

    let mut gateway = command("baton", &url, "gateway", "wrong");
    gateway.args(["gateway", "--id", "g-wrong"]);
    let (out, took) = run_bounded(gateway, FAIL_FAST);
    assert_failed_with(&out, &rejected);
    eprintln!("gateway with a wrong password exited after {took:?}");

    let mut worker = command("baton-worker", &url, "worker", "wrong");
    worker.args(worker_args("w-wrong"));
    let (out, took) = run_bounded(worker, FAIL_FAST);
    assert_failed_with(&out, &rejected);
    eprintln!("worker with a wrong password exited after {took:?}");

    let mut status = command("baton", &url, "client", "wrong");
    status.arg("status");
    let (out, _) = run_bounded(status, FAIL_FAST);
    assert_failed_with(&out, &rejected);

    // A bad combination is refused before connecting, naming the key.
    let mut status = command("baton", &url, "", "pw");
    status.arg("status");
    let (out, _) = run_bounded(status, FAIL_FAST);
    assert_failed_with(
        &out,
        &["invalid setting `nats.password`: is set but nats.user is empty"],
    );
}

/// `nats` may not publish on `subject`: the server refuses it and says so in `events`.
async fn assert_refused(nats: &async_nats::Client, events: &mut mpsc::UnboundedReceiver<String>, subject: &str) {
    nats.publish(subject.to_string(), "forged".into()).await.unwrap();
    nats.flush().await.unwrap();
    expect_event(events, &format!("permissions violation for publish to \"{subject}\"")).await;
}

/// Nothing more arrives on `sub` for a while.
async fn assert_quiet(sub: &mut async_nats::Subscriber, what: &str) {
    let more = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
    assert!(more.is_err(), "{what} received {:?}", more.unwrap().map(|m| m.subject));
}

/// The next message on `sub` is `payload` on `subject`.
async fn assert_next(sub: &mut async_nats::Subscriber, subject: &str, payload: &[u8]) {
    let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap_or_else(|_| panic!("nothing arrived on {subject}"))
        .unwrap();
    assert_eq!((m.subject.as_str(), &m.payload[..]), (subject, payload));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_cannot_pose_as_the_scheduler_a_gateway_or_a_worker() {
    let _serial = SERIAL.lock().await;
    let server = secured_server();
    let url = server.url();
    let plans = subjects::worker_plans("w1");

    // A worker listens on its subjects, a gateway on its own, the scheduler on the reports of both.
    let (worker, _) = watched(&url, "worker").await;
    let mut worker_inbox = worker.subscribe(subjects::worker_all("w1")).await.unwrap();
    let (gateway, _) = watched(&url, "gateway").await;
    let mut gateway_inbox = gateway.subscribe(subjects::gateway_all("g1")).await.unwrap();
    let (scheduler, _) = watched(&url, "scheduler").await;
    let mut reports = scheduler.subscribe(subjects::BATCH_DONE).await.unwrap();
    let mut beats = scheduler.subscribe(subjects::WORKER_HEARTBEAT).await.unwrap();
    let mut arrivals = scheduler.subscribe(subjects::ARRIVALS).await.unwrap();
    for c in [&worker, &gateway, &scheduler] {
        c.flush().await.unwrap();
    }

    // The client tries to send a plan and inputs to the worker, orders and results to the
    // gateway, and to report as a worker or a gateway.
    let (client, mut events) = watched(&url, "client").await;
    for subject in [
        plans.clone(),
        subjects::worker_inputs("w1"),
        subjects::gateway_orders("g1"),
        subjects::gateway_results("g1"),
        subjects::BATCH_DONE.to_string(),
        subjects::WORKER_HEARTBEAT.to_string(),
        subjects::ARRIVALS.to_string(),
    ] {
        // The server refuses each publish and says so.
        assert_refused(&client, &mut events, &subject).await;
    }
    // Nor can it take requests off the gateways' queue.
    let _stolen = client
        .queue_subscribe(subjects::INFER_WILDCARD, subjects::GATEWAY_QUEUE_GROUP.to_string())
        .await
        .unwrap();
    client.flush().await.unwrap();
    expect_event(
        &mut events,
        &format!(
            "permissions violation for subscription to \"{}\"",
            subjects::INFER_WILDCARD
        ),
    )
    .await;

    // Nothing forged arrived. The scheduler's own plan and orders do arrive, so the silence
    // above is the server's refusal, not a broken subscription.
    let orders = subjects::gateway_orders("g1");
    scheduler.publish(plans.clone(), "genuine".into()).await.unwrap();
    scheduler.publish(orders.clone(), "genuine".into()).await.unwrap();
    scheduler.flush().await.unwrap();
    assert_next(&mut worker_inbox, &plans, b"genuine").await;
    assert_next(&mut gateway_inbox, &orders, b"genuine").await;
    assert_quiet(&mut worker_inbox, "the worker").await;
    assert_quiet(&mut gateway_inbox, "the gateway").await;
    assert_quiet(&mut reports, "batch_done").await;
    assert_quiet(&mut beats, "the worker heartbeat").await;
    assert_quiet(&mut arrivals, "arrivals").await;
}

/// Each of the services' roles may do what its part of the protocol needs and no more: a worker
/// sends results to gateways but cannot publish on a client's inbox (only gateways answer
/// clients), nor plan or order; a gateway ships inputs and answers clients but cannot plan,
/// order, report as a worker or listen to the arrivals.
#[tokio::test(flavor = "multi_thread")]
async fn workers_and_gateways_keep_to_their_roles() {
    let _serial = SERIAL.lock().await;
    let server = secured_server();
    let url = server.url();

    // A client waits for a reply; a gateway and a worker listen on their subjects.
    let (client, _) = watched(&url, "client").await;
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.unwrap();
    let (gateway, _) = watched(&url, "gateway").await;
    let mut gateway_inbox = gateway.subscribe(subjects::gateway_all("g1")).await.unwrap();
    let (worker, _) = watched(&url, "worker").await;
    let mut worker_inbox = worker.subscribe(subjects::worker_all("w1")).await.unwrap();
    for c in [&client, &gateway, &worker] {
        c.flush().await.unwrap();
    }

    // A worker answers the gateway, never the client; it gives no orders and sends no plans
    // or inputs.
    let (rogue_worker, mut events) = watched(&url, "worker").await;
    for subject in [
        inbox.clone(),
        subjects::gateway_orders("g1"),
        subjects::ARRIVALS.to_string(),
        subjects::worker_plans("w1"),
        subjects::worker_inputs("w1"),
    ] {
        assert_refused(&rogue_worker, &mut events, &subject).await;
    }
    let results = subjects::gateway_results("g1");
    rogue_worker.publish(results.clone(), "results".into()).await.unwrap();
    rogue_worker.flush().await.unwrap();
    assert_next(&mut gateway_inbox, &results, b"results").await;

    // A gateway ships inputs and answers the client; it plans nothing, gives no orders, and
    // neither reports as a worker nor listens to the arrivals.
    let (rogue_gateway, mut events) = watched(&url, "gateway").await;
    for subject in [
        subjects::worker_plans("w1"),
        subjects::worker_revoke("w1"),
        subjects::gateway_orders("g1"),
        subjects::gateway_results("g1"),
        subjects::BATCH_DONE.to_string(),
        subjects::WORKER_HEARTBEAT.to_string(),
    ] {
        assert_refused(&rogue_gateway, &mut events, &subject).await;
    }
    let _eavesdrop = rogue_gateway.subscribe(subjects::ARRIVALS).await.unwrap();
    rogue_gateway.flush().await.unwrap();
    expect_event(
        &mut events,
        &format!("permissions violation for subscription to \"{}\"", subjects::ARRIVALS),
    )
    .await;
    let inputs = subjects::worker_inputs("w1");
    rogue_gateway.publish(inputs.clone(), "inputs".into()).await.unwrap();
    rogue_gateway.publish(inbox.clone(), "reply".into()).await.unwrap();
    rogue_gateway.flush().await.unwrap();
    assert_next(&mut worker_inbox, &inputs, b"inputs").await;
    assert_next(&mut replies, &inbox, b"reply").await;

    // Only what was allowed arrived.
    assert_quiet(&mut replies, "the client").await;
    assert_quiet(&mut gateway_inbox, "the gateway").await;
    assert_quiet(&mut worker_inbox, "the worker").await;
}

/// The scheduler, a worker and perhaps a gateway as processes, each with its own user, killed
/// on drop.
struct Cluster {
    processes: Vec<Child>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.processes {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Where the cluster's gateway runs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum GatewayAt {
    /// Inside `baton scheduler` (the scheduler user has the gateway's rights too).
    Embedded,
    /// A `baton gateway` process as the gateway user, the scheduler running none.
    Apart,
}

impl Cluster {
    /// Starts the scheduler, one worker and, if `gateway` says so, a gateway process, with
    /// `extra` environment (e.g. TLS files).
    fn start(url: &str, gateway: GatewayAt, extra: &[(&str, &str)]) -> Self {
        let mut scheduler = command("baton", url, "scheduler", password("scheduler"));
        scheduler.arg("scheduler").envs(extra.iter().copied());
        let mut worker = command("baton-worker", url, "worker", password("worker"));
        worker.args(worker_args("w0")).envs(extra.iter().copied());
        let mut commands = vec![scheduler, worker];
        if gateway == GatewayAt::Apart {
            commands[0].env("BATON_SCHEDULER__EMBEDDED_GATEWAY", "false");
            let mut gateway = command("baton", url, "gateway", password("gateway"));
            gateway.args(["gateway", "--id", "g0"]).envs(extra.iter().copied());
            commands.push(gateway);
        }
        let processes = commands
            .into_iter()
            .map(|mut c| c.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().expect("spawn"))
            .collect();
        Cluster { processes }
    }
}

/// Waits until the scheduler reports `n` ready workers and hears from one gateway (the client
/// user may ask for status).
async fn wait_ready(client: &Client, n: usize) {
    let start = Instant::now();
    loop {
        let status = tokio::time::timeout(
            Duration::from_secs(2),
            client.nats().request(subjects::OPS_STATUS, "".into()),
        )
        .await;
        if let Ok(Ok(reply)) = status {
            if let Ok(Some(s)) = serde_json::from_slice::<Option<SchedStatus>>(&reply.payload) {
                if s.workers.iter().filter(|w| w.state == "ready").count() == n && s.gateways.len() == 1 {
                    return;
                }
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the worker or the gateway never registered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two seconds of load at 200 req/s: every request is answered (results go from the worker to
/// the gateway, which answers the client's inbox), and nearly all are served.
async fn serve_load(client: &Client) {
    let schedule = Schedule::from_rate("m", 200.0, Duration::from_secs(2), Gap::Exp, 3);
    let s = loadgen::run(client, &schedule, &Payload::bytes(16), Duration::from_millis(100)).await;
    assert_eq!(s.sent, s.ok + s.rejected + s.errors + s.timeouts, "{s:?}");
    assert_eq!((s.errors, s.timeouts), (0, 0), "{s:?}");
    // Two shared cores run NATS, scheduler, worker and loadgen: allow some rejections.
    assert!(s.ok as f64 >= 0.9 * s.sent as f64, "{s:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduler_gateway_worker_and_client_serve_with_their_own_users() {
    let _serial = SERIAL.lock().await;
    let server = secured_server();
    let url = server.url();
    let _cluster = Cluster::start(&url, GatewayAt::Apart, &[]);
    let client = client(&url, "client").await;
    wait_ready(&client, 1).await;
    serve_load(&client).await;

    // The command-line tools take the same settings.
    let mut status = command("baton", &url, "client", password("client"));
    status.arg("status");
    let (out, _) = run_bounded(status, Duration::from_secs(20));
    assert!(
        out.status.success(),
        "baton status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("w0"));
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl in
/// `dir`; `None` when openssl is not installed.
fn make_certificates(dir: &Path) -> Option<()> {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().ok()?;
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(())
    };
    openssl(&["version"])?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    let key = ["-newkey", "rsa:2048", "-nodes"];
    openssl(
        &[
            &["req", "-x509"],
            &key[..],
            &[
                "-keyout",
                "ca-key.pem",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=baton test CA",
            ],
        ]
        .concat(),
    )?;
    for (name, cn) in [("server", "/CN=nats"), ("client", "/CN=baton")] {
        let (keyfile, csr, pem, ext) = (
            format!("{name}-key.pem"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        openssl(&[&["req"], &key[..], &["-keyout", &keyfile, "-out", &csr, "-subj", cn]].concat())?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &ext,
        ])?;
    }
    Some(())
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_with_the_deploy_config() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    if make_certificates(dir.path()).is_none() {
        eprintln!("SKIPPED: the openssl command is not installed; TLS settings are covered by settings tests only");
        return;
    }
    // deploy/nats/nats-tls.conf as is, with its certificate directory pointed at ours.
    let tls_conf = std::fs::read_to_string(deploy("nats-tls.conf"))
        .unwrap()
        .replace("/etc/nats/tls", &dir.path().display().to_string());
    std::fs::write(dir.path().join("nats-tls.conf"), tls_conf).unwrap();
    std::fs::copy(deploy("nats.conf"), dir.path().join("nats.conf")).unwrap();
    let server = NatsServer::start_with_config(&dir.path().join("nats-tls.conf"), &server_env())
        .expect("nats-server with deploy/nats/nats-tls.conf");
    let url = format!("tls://127.0.0.1:{}", server.port());
    let file = |name: &str| dir.path().join(name).display().to_string();
    let (ca, cert, key) = (file("ca.pem"), file("client.pem"), file("client-key.pem"));

    // Without our CA, the server's certificate is unknown: an error at once, naming ca_file.
    let start = Instant::now();
    let err = ClientOptions::new()
        .user_and_password("client", password("client"))
        .connect(&url)
        .await
        .unwrap_err();
    assert!(start.elapsed() < FAIL_FAST);
    let text = err.to_string();
    assert!(text.starts_with(&format!("TLS with NATS at {url} failed (")), "{text}");
    assert!(text.contains("UnknownIssuer"), "{text}");
    assert!(text.contains("check [nats] ca_file (BATON_NATS__CA_FILE)"), "{text}");

    // With the CA but no client certificate, the server refuses us: naming cert_file.
    let err = ClientOptions::new()
        .user_and_password("client", password("client"))
        .ca_file(&ca)
        .connect(&url)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("the server verifies clients: set [nats] cert_file and key_file"),
        "{err}"
    );

    // With everything, the whole system serves over TLS, settings from the environment.
    let tls_env = [
        ("BATON_NATS__CA_FILE", ca.as_str()),
        ("BATON_NATS__CERT_FILE", cert.as_str()),
        ("BATON_NATS__KEY_FILE", key.as_str()),
        ("BATON_NATS__REQUIRE_TLS", "true"),
    ];
    let _cluster = Cluster::start(&url, GatewayAt::Embedded, &tls_env);
    let client = ClientOptions::new()
        .user_and_password("client", password("client"))
        .ca_file(&ca)
        .client_certificate(&cert, &key)
        .require_tls(true)
        .grace(Duration::from_secs(2))
        .connect(&url)
        .await
        .expect("connect over TLS");
    wait_ready(&client, 1).await;
    serve_load(&client).await;
}
