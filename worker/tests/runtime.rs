//! The worker runtime end to end, against a real nats-server: a test plays the dispatcher and the
//! gateways with a plain async-nats client — it publishes plans, revokes and `BatchInputs`, and
//! reads the `BatchResults` the worker sends each gateway on `baton.gateway.<gw>.results` —
//! runs a worker in-process with the emulated backend (on its execution thread as `run` does, or
//! for some tests also on a timer and a connection it is given, as a fleet's workers do), and
//! watches every message on the server through one ordered tap (a subscription on `>`).
//! Because every test ends with the worker's `Goodbye` — its last message — the tap has then
//! seen everything the worker sent, so "exactly one answer per request" is checked without sleeps.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Client, Message, Subscriber};
use baton_common::control::{
    BatchDone, BatchInputs, BatchPlanMsg, BatchResults, FailedItem, Goodbye, Heartbeat, InputItem, PlanPart, Revoke,
    WorkerHello, WorkerState,
};
use baton_common::ids::BatchUuid;
use baton_common::profile::Profile;
use baton_common::subjects;
use baton_common::testing::NatsServer;
use baton_common::wire::{decode, encode, DType, InferReply, RejectReason, Status, Tensor};
use baton_worker::backend::InputSpec;
use baton_worker::executor::Execution;
use baton_worker::runtime::start_on;
use baton_worker::{checksum, run, EmulatedBackend, EmulatedModel, WorkerConfig, WorkerError};
use futures::StreamExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(5);
/// The gateway the tests' requests come from, unless a test says otherwise.
const GATEWAY: &str = "g1";

/// What a gateway got for one of its requests.
#[derive(Debug, Clone)]
enum Answer {
    Reply(InferReply),
    Failed(FailedItem),
}

impl Answer {
    fn reply(&self) -> &InferReply {
        match self {
            Answer::Reply(r) => r,
            Answer::Failed(f) => panic!("a reply expected, got {f:?}"),
        }
    }

    fn failed(&self) -> &FailedItem {
        match self {
            Answer::Failed(f) => f,
            Answer::Reply(r) => panic!("a failed item expected, got {r:?}"),
        }
    }
}

/// The gateway a results subject is for, if it is one.
fn results_gateway(subject: &str) -> Option<&str> {
    subject.strip_prefix("baton.gateway.")?.strip_suffix(".results")
}

/// Everything published on the server, in order, as the test saw it.
struct Tap {
    sub: Subscriber,
    seen: Vec<Message>,
}

impl Tap {
    /// Reads until a message matches, keeping everything read.
    async fn wait_for(&mut self, what: &str, pred: impl Fn(&Message) -> bool) -> Message {
        if let Some(m) = self.seen.iter().find(|m| pred(m)) {
            return m.clone();
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.sub.next())
                .await
                .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}"))
                .expect("tap subscription ended");
            self.seen.push(msg.clone());
            if pred(&msg) {
                return msg;
            }
        }
    }

    async fn wait_subject(&mut self, subject: &str) -> Message {
        let s = subject.to_string();
        self.wait_for(subject, move |m| m.subject.as_str() == s).await
    }

    /// Reads until at least `n` messages on `subject` have been seen; returns them.
    async fn wait_count(&mut self, subject: &str, n: usize) -> Vec<Message> {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.on(subject).len() < n {
            let msg = tokio::time::timeout_at(deadline, self.sub.next())
                .await
                .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {n} messages on {subject}"))
                .expect("tap subscription ended");
            self.seen.push(msg);
        }
        self.on(subject).into_iter().cloned().collect()
    }

    fn on(&self, subject: &str) -> Vec<&Message> {
        self.seen.iter().filter(|m| m.subject.as_str() == subject).collect()
    }

    /// Every `BatchResults` message seen, with the gateway it was sent to.
    fn results(&self) -> Vec<(String, BatchResults)> {
        self.seen
            .iter()
            .filter_map(|m| {
                let gateway = results_gateway(m.subject.as_str())?;
                let results: BatchResults = decode(&m.payload).unwrap();
                assert_eq!(results.worker_id.as_str(), "w1");
                Some((gateway.to_string(), results))
            })
            .collect()
    }

    /// Every answer seen, by `(gateway, request)`; each reply decoded from its bytes.
    fn answers(&self) -> HashMap<(String, u64), Vec<Answer>> {
        let mut out: HashMap<(String, u64), Vec<Answer>> = HashMap::new();
        for (gateway, results) in self.results() {
            for item in results.replies {
                let reply: InferReply = decode(&item.reply).unwrap();
                out.entry((gateway.clone(), item.request))
                    .or_default()
                    .push(Answer::Reply(reply));
            }
            for item in results.failed {
                out.entry((gateway.clone(), item.request))
                    .or_default()
                    .push(Answer::Failed(item));
            }
        }
        out
    }

    fn position(&self, pred: impl Fn(&Message) -> bool) -> Option<usize> {
        self.seen.iter().position(pred)
    }
}

struct Harness {
    _server: NatsServer,
    id: String,
    client: Client,
    tap: Tap,
    stop: Option<oneshot::Sender<()>>,
    worker: JoinHandle<Result<(), WorkerError>>,
}

fn spec(shape: &[u64]) -> Vec<InputSpec> {
    vec![InputSpec {
        dtype: DType::F32,
        shape: shape.to_vec(),
    }]
}

fn profile(sleep_spec: &str) -> Profile {
    Profile::from_spec(sleep_spec, 8).unwrap()
}

/// How the worker under test runs.
#[derive(Debug, Clone, Copy)]
enum Exec {
    /// As `baton-worker run`: its own connection, batches on an execution thread.
    Thread,
    /// As one worker of `baton-worker fleet`: on a connection it is given, batches on a timer.
    Timer,
}

fn nats_server() -> NatsServer {
    NatsServer::start().unwrap_or_else(|e| panic!("cannot start nats-server for the test: {e}"))
}

/// Starts nats-server, the tap, and a worker `w1` serving model `m` (input f32 [4]).
async fn start(sleep_spec: &str, tune: impl FnOnce(&mut WorkerConfig)) -> Harness {
    start_as(Exec::Thread, sleep_spec, tune).await
}

async fn start_as(exec: Exec, sleep_spec: &str, tune: impl FnOnce(&mut WorkerConfig)) -> Harness {
    start_on_server(nats_server(), exec, sleep_spec, tune).await
}

/// Starts the tap and a worker `w1` serving model `m` (input f32 [4]) on `server`.
async fn start_on_server(
    server: NatsServer,
    exec: Exec,
    sleep_spec: &str,
    tune: impl FnOnce(&mut WorkerConfig),
) -> Harness {
    let client = async_nats::connect(server.url()).await.unwrap();
    let sub = client.subscribe(">").await.unwrap();
    let mut tap = Tap { sub, seen: Vec::new() };
    // A round trip through the server proves the tap's SUB is registered before the worker starts.
    client.publish("test.sync", "x".into()).await.unwrap();
    tap.wait_subject("test.sync").await;

    let id = "w1".to_string();
    let mut config = WorkerConfig::new(server.url(), id.clone(), "cpu");
    config.heartbeat = Duration::from_millis(50);
    tune(&mut config);
    let backend = EmulatedBackend::new([EmulatedModel {
        name: "m".into(),
        profile: profile(sleep_spec),
        inputs: spec(&[4]),
    }]);
    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = async move {
        let _ = stopped.await;
    };
    let worker = match exec {
        Exec::Thread => tokio::spawn(run(config, Box::new(backend), stopped)),
        Exec::Timer => {
            let conn = async_nats::connect(server.url()).await.unwrap();
            let started = start_on(conn, config, Execution::Timer(Arc::new(backend)))
                .await
                .unwrap();
            tokio::spawn(async move {
                started.serve(stopped).await;
                Ok(())
            })
        }
    };
    Harness {
        _server: server,
        id,
        client,
        tap,
        stop: Some(stop),
        worker,
    }
}

impl Harness {
    async fn wait_hello(&mut self) -> WorkerHello {
        let m = self.tap.wait_subject(subjects::WORKER_HELLO).await;
        decode(&m.payload).unwrap()
    }

    /// As the dispatcher.
    async fn send_plan(&self, plan: &BatchPlanMsg) {
        self.client
            .publish(subjects::worker_plans(&self.id), encode(plan).into())
            .await
            .unwrap();
    }

    /// As a gateway: the inputs of items `(index, tensors)` of `plan`, in one message.
    async fn send_inputs(&self, plan: &BatchPlanMsg, items: Vec<(u32, Vec<Tensor>)>) {
        let msg = BatchInputs {
            batch_id: plan.batch_id,
            items: items
                .into_iter()
                .map(|(index, inputs)| InputItem {
                    index,
                    id: client_id(plan, index as usize).into(),
                    queued_us: queued_us(index as usize),
                    inputs,
                })
                .collect(),
        };
        self.client
            .publish(subjects::worker_inputs(&self.id), encode(&msg).into())
            .await
            .unwrap();
    }

    /// As a gateway: one item's inputs alone in a message.
    async fn send_input(&self, plan: &BatchPlanMsg, index: u32, inputs: Vec<Tensor>) {
        self.send_inputs(plan, vec![(index, inputs)]).await;
    }

    /// As the dispatcher.
    async fn send_revoke(&self, batch_ids: &[BatchUuid]) {
        let msg = Revoke {
            batch_ids: batch_ids.to_vec(),
        };
        self.client
            .publish(subjects::worker_revoke(&self.id), encode(&msg).into())
            .await
            .unwrap();
    }

    /// The reports seen for `batch_id`.
    fn dones_of(&self, batch_id: BatchUuid) -> usize {
        self.tap
            .on(subjects::BATCH_DONE)
            .iter()
            .filter(|m| decode::<BatchDone>(&m.payload).unwrap().batch_id == batch_id)
            .count()
    }

    /// Waits for a heartbeat reporting exactly `n` pending batches.
    async fn wait_pending(&mut self, n: u32) {
        let what = format!("a heartbeat with {n} pending batches");
        self.tap
            .wait_for(&what, move |m| {
                m.subject.as_str() == subjects::WORKER_HEARTBEAT
                    && decode::<Heartbeat>(&m.payload).unwrap().pending_batches == n
            })
            .await;
    }

    async fn wait_done(&mut self, batch_id: BatchUuid) -> BatchDone {
        let m = self
            .tap
            .wait_for("BatchDone", move |m| {
                m.subject.as_str() == subjects::BATCH_DONE
                    && decode::<BatchDone>(&m.payload).unwrap().batch_id == batch_id
            })
            .await;
        decode(&m.payload).unwrap()
    }

    /// Stops the worker and waits for its goodbye and a clean exit.
    async fn shutdown(&mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        let m = self.tap.wait_subject(subjects::WORKER_GOODBYE).await;
        assert_eq!(decode::<Goodbye>(&m.payload).unwrap().worker_id.as_str(), self.id);
        tokio::time::timeout(WAIT, &mut self.worker)
            .await
            .expect("worker exits after goodbye")
            .unwrap()
            .expect("worker exits cleanly");
    }
}

/// Gateway request numbers, unique across the tests of this process.
fn next_requests(n: usize) -> Vec<u64> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let first = NEXT.fetch_add(n as u64, Ordering::Relaxed);
    (first..first + n as u64).collect()
}

/// A plan of `n` requests of gateway [`GATEWAY`].
fn plan(n: usize, budget_us: u64) -> BatchPlanMsg {
    plan_of(&[(GATEWAY, n)], budget_us)
}

/// A plan with a part of `n` requests for each `(gateway, n)`, in that order.
fn plan_of(parts: &[(&str, usize)], budget_us: u64) -> BatchPlanMsg {
    BatchPlanMsg {
        batch_id: BatchUuid::random(),
        model: "m".into(),
        parts: parts
            .iter()
            .map(|&(gateway, n)| PlanPart {
                gateway: gateway.into(),
                requests: next_requests(n),
            })
            .collect(),
        budget_us,
        late: false,
    }
}

/// The client's id for item `i` of `plan`, as its gateway ships it.
fn client_id(plan: &BatchPlanMsg, i: usize) -> String {
    format!("{}-r{i}", plan.batch_id)
}

/// How long item `i` had been in Baton when its gateway shipped it, µs.
fn queued_us(i: usize) -> u64 {
    1000 + i as u64
}

/// `(gateway, request)` of item `i` of `plan`.
fn item(plan: &BatchPlanMsg, i: usize) -> (String, u64) {
    let (gateway, request) = plan.items().nth(i).expect("the plan has this item");
    (gateway.to_string(), request)
}

/// The one answer to item `i` of `plan`.
fn only(answers: &HashMap<(String, u64), Vec<Answer>>, plan: &BatchPlanMsg, i: usize) -> Answer {
    let key = item(plan, i);
    let a = answers
        .get(&key)
        .unwrap_or_else(|| panic!("item {i} ({key:?}) got no answer"));
    assert_eq!(a.len(), 1, "item {i} ({key:?}) must get exactly one answer: {a:?}");
    a[0].clone()
}

/// The one answer to item `i` of `plan`, a reply to the client's id.
fn only_reply(answers: &HashMap<(String, u64), Vec<Answer>>, plan: &BatchPlanMsg, i: usize) -> InferReply {
    let r = only(answers, plan, i).reply().clone();
    assert_eq!(r.id, client_id(plan, i), "the reply carries the client's id");
    r
}

fn tensor(seed: u32, len: usize) -> Tensor {
    let values: Vec<f32> = (0..len).map(|i| (seed * 100 + i as u32) as f32).collect();
    Tensor::from_f32(vec![len as u64], &values)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn says_hello_on_start_and_on_rehello_and_heartbeats() {
    let mut h = start("sleep#1000,2000,0,0", |_| {}).await;
    let hello = h.wait_hello().await;
    assert_eq!(hello.worker_id.as_str(), "w1");
    assert_eq!(hello.hardware, "cpu");
    assert_eq!(hello.backend, "emulated");
    assert_eq!(hello.models.len(), 1);
    assert_eq!(hello.models[0].name, "m");
    assert_eq!(hello.models[0].profile, profile("sleep#1000,2000,0,0"));

    // One heartbeat at start (possibly delivered late, with the connection), then one every
    // 50 ms: from the second to the fifth, three periods.
    h.tap.wait_count(subjects::WORKER_HEARTBEAT, 2).await;
    let t0 = Instant::now();
    let beats = h.tap.wait_count(subjects::WORKER_HEARTBEAT, 5).await;
    assert!(t0.elapsed() >= Duration::from_millis(100), "{:?}", t0.elapsed());
    for m in beats {
        let hb: Heartbeat = decode(&m.payload).unwrap();
        assert_eq!(
            hb,
            Heartbeat {
                worker_id: "w1".into(),
                instance: hb.instance,
                state: WorkerState::Ready,
                pending_batches: 0
            }
        );
    }

    assert_eq!(h.tap.on(subjects::WORKER_HELLO).len(), 1);
    h.client
        .publish(subjects::worker_rehello("w1"), "".into())
        .await
        .unwrap();
    let hellos = h.tap.wait_count(subjects::WORKER_HELLO, 2).await;
    assert_eq!(decode::<WorkerHello>(&hellos[1].payload).unwrap(), hello);
    h.shutdown().await;
    assert_eq!(h.tap.on(subjects::WORKER_HELLO).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_a_batch_with_inputs_before_and_after_its_plan() {
    runs_a_batch(Exec::Thread).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_worker_runs_a_batch_on_its_timer() {
    runs_a_batch(Exec::Timer).await;
}

async fn runs_a_batch(exec: Exec) {
    // mean(b) = 1000·b + 2000 µs → 6 ms for the batch of 4.
    let mut h = start_as(exec, "sleep#1000,2000,0,0", |_| {}).await;
    h.wait_hello().await;
    let p = plan(4, 1_000_000);
    let inputs: Vec<Tensor> = (0..4).map(|i| tensor(i, 4)).collect();
    let some = |indices: &[u32]| -> Vec<(u32, Vec<Tensor>)> {
        indices.iter().map(|&i| (i, vec![inputs[i as usize].clone()])).collect()
    };
    // Two messages of inputs, one before the plan and one after it, items out of order.
    h.send_inputs(&p, some(&[2, 0])).await;
    h.send_plan(&p).await;
    h.send_inputs(&p, some(&[3, 1])).await;

    let done = h.wait_done(p.batch_id).await;
    assert_eq!(done.worker_id.as_str(), "w1");
    assert_eq!(done.batch_size, 4);
    assert_eq!(done.failed, 0);
    assert!(done.exec_us >= 6000, "{done:?}");
    h.shutdown().await;

    let answers = h.tap.answers();
    assert_eq!(answers.len(), 4);
    for (i, input) in inputs.iter().enumerate() {
        let r = only_reply(&answers, &p, i);
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!(r.outputs, vec![checksum(std::slice::from_ref(input))]);
        assert!(!r.late);
        assert_eq!(r.timings.batch_size, 4);
        assert_eq!(r.timings.exec_us, done.exec_us);
        assert_eq!(r.timings.queued_us, queued_us(i) + done.wait_us);
    }
    // One results message, to the gateway, before the BatchDone.
    let to_gateway = subjects::gateway_results(GATEWAY);
    assert_eq!(h.tap.on(&to_gateway).len(), 1);
    let results_at = h.tap.position(|m| m.subject.as_str() == to_gateway).unwrap();
    let done_at = h.tap.position(|m| m.subject.as_str() == subjects::BATCH_DONE).unwrap();
    assert!(results_at < done_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_with_parts_from_two_gateways_answers_each_gateway_with_its_own() {
    let mut h = start("sleep#1000,2000,0,0", |_| {}).await;
    h.wait_hello().await;
    // Items 0 and 1 are g1's, item 2 is g2's; each gateway ships its own share.
    let p = plan_of(&[("g1", 2), ("g2", 1)], 1_000_000);
    let inputs: Vec<Tensor> = (0..3).map(|i| tensor(i, 4)).collect();
    h.send_inputs(&p, vec![(2, vec![inputs[2].clone()])]).await;
    h.send_plan(&p).await;
    h.send_inputs(&p, vec![(0, vec![inputs[0].clone()]), (1, vec![inputs[1].clone()])])
        .await;
    let done = h.wait_done(p.batch_id).await;
    assert_eq!((done.batch_size, done.failed), (3, 0));
    h.shutdown().await;

    let results = h.tap.results();
    let requests_of = |gateway: &str| -> Vec<u64> {
        results
            .iter()
            .filter(|(g, _)| g == gateway)
            .flat_map(|(_, r)| r.replies.iter().map(|i| i.request))
            .collect()
    };
    assert_eq!(results.len(), 2, "one message per gateway");
    assert_eq!(requests_of("g1"), p.parts[0].requests);
    assert_eq!(requests_of("g2"), p.parts[1].requests);
    assert!(results
        .iter()
        .all(|(_, r)| r.failed.is_empty() && r.batch_id == p.batch_id));
    let answers = h.tap.answers();
    for (i, input) in inputs.iter().enumerate() {
        let r = only_reply(&answers, &p, i);
        assert_eq!(r.status, Status::Ok);
        assert_eq!(r.outputs, vec![checksum(std::slice::from_ref(input))]);
        assert_eq!(r.timings.batch_size, 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_larger_than_max_payload_are_split_across_messages() {
    // A server whose messages carry at most 2,048 bytes.
    let dir = std::env::temp_dir().join(format!("baton-worker-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("small-max-payload.conf");
    let max_payload = 2048;
    std::fs::write(&config, format!("max_payload: {max_payload}\n")).unwrap();
    let server = NatsServer::start_with_config(&config, &[])
        .unwrap_or_else(|e| panic!("cannot start nats-server for the test: {e}"));
    let mut h = start_on_server(server, Exec::Thread, "sleep#1000,2000,0,0", |_| {}).await;
    h.wait_hello().await;
    // Eight requests whose ids make each reply about 600 bytes: about 4.8 KB of answers.
    let p = plan(8, 1_000_000);
    let long_id = |i: usize| format!("{}-{}", client_id(&p, i), "x".repeat(500));
    h.send_plan(&p).await;
    for i in 0..8 {
        let msg = BatchInputs {
            batch_id: p.batch_id,
            items: vec![InputItem {
                index: i as u32,
                id: long_id(i).into(),
                queued_us: queued_us(i),
                inputs: vec![tensor(i as u32, 4)],
            }],
        };
        h.client
            .publish(subjects::worker_inputs(&h.id), encode(&msg).into())
            .await
            .unwrap();
    }
    let done = h.wait_done(p.batch_id).await;
    assert_eq!((done.batch_size, done.failed), (8, 0));
    h.shutdown().await;

    let to_gateway = subjects::gateway_results(GATEWAY);
    let messages = h.tap.on(&to_gateway);
    assert!(messages.len() >= 3, "{} results message(s)", messages.len());
    for m in &messages {
        assert!(m.payload.len() <= max_payload, "{} bytes", m.payload.len());
    }
    let answers = h.tap.answers();
    assert_eq!(answers.len(), 8);
    for i in 0..8 {
        let r = only(&answers, &p, i).reply().clone();
        assert_eq!((r.id, r.status), (long_id(i), Status::Ok));
        assert_eq!(r.outputs, vec![checksum(&[tensor(i as u32, 4)])]);
    }
    let last_results = h
        .tap
        .seen
        .iter()
        .rposition(|m| m.subject.as_str() == to_gateway)
        .unwrap();
    let done_at = h.tap.position(|m| m.subject.as_str() == subjects::BATCH_DONE).unwrap();
    assert!(last_results < done_at, "every results message before the BatchDone");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_shape_is_a_bad_request_and_the_rest_of_the_batch_runs() {
    let mut h = start("sleep#1000,2000,0,0", |_| {}).await;
    h.wait_hello().await;
    let p = plan(3, 1_000_000);
    let good = [tensor(0, 4), tensor(2, 4)];
    h.send_plan(&p).await;
    h.send_input(&p, 0, vec![good[0].clone()]).await;
    h.send_input(&p, 1, vec![tensor(1, 5)]).await;
    h.send_input(&p, 2, vec![good[1].clone()]).await;
    let done = h.wait_done(p.batch_id).await;
    assert_eq!((done.batch_size, done.failed), (3, 1));
    // A plan for a model this worker does not serve.
    let mut other = plan(1, 1_000_000);
    other.model = "resnet".into();
    h.send_plan(&other).await;
    let done_other = h.wait_done(other.batch_id).await;
    assert_eq!((done_other.batch_size, done_other.failed), (1, 1));
    h.shutdown().await;

    let answers = h.tap.answers();
    assert_eq!(answers.len(), 4);
    assert_eq!(only_reply(&answers, &p, 0).outputs, vec![checksum(&[good[0].clone()])]);
    assert_eq!(only_reply(&answers, &p, 2).outputs, vec![checksum(&[good[1].clone()])]);
    let bad = only_reply(&answers, &p, 1);
    assert_eq!(bad.status, Status::Rejected);
    assert_eq!(bad.reason, Some(RejectReason::BadRequest));
    let msg = bad.error.unwrap();
    assert!(msg.contains("[4]") && msg.contains("[5]"), "{msg}");
    // Declined before any input: the gateway answers it from the reason and message.
    let unknown = only(&answers, &other, 0);
    assert_eq!(unknown.failed().reason, RejectReason::UnknownModel);
    assert!(unknown.failed().message.contains("`resnet`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_whose_inputs_never_come_is_answered_with_errors_after_its_budget() {
    let mut h = start("sleep#1000,2000,0,0", |c| c.assembly.grace = Duration::from_millis(20)).await;
    h.wait_hello().await;
    let p = plan(2, 30_000);
    let sent = Instant::now();
    h.send_plan(&p).await;
    h.send_input(&p, 1, vec![tensor(1, 4)]).await;
    let done = h.wait_done(p.batch_id).await;
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(50),
        "answered after {waited:?}, before budget + grace"
    );
    assert_eq!((done.batch_size, done.failed, done.exec_us), (2, 2, 0));
    assert!(done.wait_us >= 50_000, "{done:?}");
    // Its late input is dropped, not kept.
    h.send_input(&p, 0, vec![tensor(0, 4)]).await;
    h.shutdown().await;

    let answers = h.tap.answers();
    assert_eq!(answers.len(), 2);
    let (missing, came) = (item(&p, 0), item(&p, 1));
    let names = |msg: &str| {
        assert!(msg.contains(&format!("{}:{}", missing.0, missing.1)), "{msg}");
        assert!(
            !msg.contains(&format!("{}:{}", came.0, came.1)),
            "only the missing input is named: {msg}"
        );
    };
    // The worker never had item 0's client id: a failed item for its gateway to answer.
    let failed = only(&answers, &p, 0);
    assert_eq!(failed.failed().reason, RejectReason::WorkerLost);
    names(&failed.failed().message);
    // Item 1's inputs came: an error reply to its client.
    let r = only_reply(&answers, &p, 1);
    assert_eq!(r.status, Status::Error);
    names(r.error.as_deref().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_running_batch_then_says_goodbye() {
    // Every batch takes 400 ms.
    let mut h = start("sleep#0,400000,0,0", |_| {}).await;
    h.wait_hello().await;
    let p = plan(2, 1_000_000);
    let inputs = [tensor(0, 4), tensor(1, 4)];
    h.send_plan(&p).await;
    h.send_inputs(&p, vec![(0, vec![inputs[0].clone()]), (1, vec![inputs[1].clone()])])
        .await;
    // The worker reports the batch as pending before we stop it.
    h.wait_pending(1).await;
    h.stop.take().unwrap().send(()).unwrap();
    let draining = h
        .tap
        .wait_for("a draining heartbeat", |m| {
            m.subject.as_str() == subjects::WORKER_HEARTBEAT
                && decode::<Heartbeat>(&m.payload).unwrap().state == WorkerState::Draining
        })
        .await;
    assert_eq!(decode::<Heartbeat>(&draining.payload).unwrap().pending_batches, 1);
    // A plan arriving while draining is declined.
    let late = plan(1, 1_000_000);
    h.send_plan(&late).await;
    h.tap.wait_subject(subjects::WORKER_GOODBYE).await;
    tokio::time::timeout(WAIT, &mut h.worker)
        .await
        .expect("worker exits after goodbye")
        .unwrap()
        .expect("worker exits cleanly");

    let answers = h.tap.answers();
    for (i, input) in inputs.iter().enumerate() {
        let r = only_reply(&answers, &p, i);
        assert_eq!(r.status, Status::Ok);
        assert_eq!(r.outputs, vec![checksum(std::slice::from_ref(input))]);
    }
    let declined = only(&answers, &late, 0);
    assert_eq!(declined.failed().reason, RejectReason::ShuttingDown);
    let goodbye_at = h
        .tap
        .position(|m| m.subject.as_str() == subjects::WORKER_GOODBYE)
        .unwrap();
    let last_results = h
        .tap
        .seen
        .iter()
        .rposition(|m| results_gateway(m.subject.as_str()).is_some())
        .unwrap();
    assert!(last_results < goodbye_at);
    // Every heartbeat after the draining one says draining.
    let beats = h.tap.on(subjects::WORKER_HEARTBEAT);
    let first_draining = beats
        .iter()
        .position(|m| decode::<Heartbeat>(&m.payload).unwrap().state == WorkerState::Draining)
        .unwrap();
    assert!(beats[first_draining..]
        .iter()
        .all(|m| decode::<Heartbeat>(&m.payload).unwrap().state == WorkerState::Draining));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_revoked_before_its_inputs_come_is_never_run_nor_answered() {
    let mut h = start("sleep#1000,2000,0,0", |_| {}).await;
    h.wait_hello().await;
    // The dispatcher declared the worker dead and re-planned this batch: plan, revoke, then the
    // inputs (as after a NATS stall), and a plan repeated after the revoke.
    let revoked = plan(2, 1_000_000);
    h.send_plan(&revoked).await;
    h.send_revoke(&[revoked.batch_id, BatchUuid::random()]).await;
    h.send_inputs(&revoked, vec![(0, vec![tensor(0, 4)]), (1, vec![tensor(1, 4)])])
        .await;
    h.send_plan(&revoked).await;
    // The worker serves on: a batch sent after them runs (and, through one connection, proves
    // the worker has handled everything before it).
    let next = plan(1, 1_000_000);
    h.send_plan(&next).await;
    h.send_input(&next, 0, vec![tensor(2, 4)]).await;
    let done = h.wait_done(next.batch_id).await;
    assert_eq!((done.batch_size, done.failed), (1, 0));
    // Nothing is pending: the revoked batch's state is gone.
    h.wait_pending(0).await;
    h.shutdown().await;

    let answers = h.tap.answers();
    for i in 0..revoked.len() {
        assert!(
            !answers.contains_key(&item(&revoked, i)),
            "revoked request answered: {answers:?}"
        );
    }
    assert!(h.tap.results().iter().all(|(_, r)| r.batch_id != revoked.batch_id));
    assert_eq!(h.dones_of(revoked.batch_id), 0, "no BatchDone for a revoked batch");
    assert_eq!(only_reply(&answers, &next, 0).status, Status::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_batch_waiting_for_the_device_is_dropped_and_the_running_one_finishes() {
    revoked_while_waiting_for_the_device(Exec::Thread).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_worker_drops_a_revoked_batch_waiting_for_its_timer() {
    revoked_while_waiting_for_the_device(Exec::Timer).await;
}

async fn revoked_while_waiting_for_the_device(exec: Exec) {
    // Every batch takes 300 ms.
    let mut h = start_as(exec, "sleep#0,300000,0,0", |_| {}).await;
    h.wait_hello().await;
    let running = plan(1, 1_000_000);
    let queued = plan(1, 1_000_000);
    h.send_plan(&running).await;
    h.send_input(&running, 0, vec![tensor(0, 4)]).await;
    // Both held once the first is running and the second complete, waiting for the device.
    h.wait_pending(1).await;
    h.send_plan(&queued).await;
    h.send_input(&queued, 0, vec![tensor(1, 4)]).await;
    h.wait_pending(2).await;
    // Too late for the running one (answered as usual), in time for the queued one.
    h.send_revoke(&[running.batch_id, queued.batch_id]).await;
    let done = h.wait_done(running.batch_id).await;
    assert_eq!(done.failed, 0);
    h.wait_pending(0).await;
    h.shutdown().await;

    let answers = h.tap.answers();
    assert_eq!(only_reply(&answers, &running, 0).status, Status::Ok);
    assert!(!answers.contains_key(&item(&queued, 0)), "{answers:?}");
    assert_eq!(h.dones_of(queued.batch_id), 0);
}
