//! The worker runtime end to end, against a real nats-server: a test plays the scheduler and the
//! gateway with a plain async-nats client, runs a worker in-process with the emulated backend
//! (on its execution thread as `run` does, or for some tests also on a timer and a connection it
//! is given, as a fleet's workers do), and watches every message on the server through one
//! ordered tap (a subscription on `>`).
//! Because every test ends with the worker's `Goodbye` — its last message — the tap has then
//! seen everything the worker sent, so "exactly one reply per request" is checked without sleeps.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Client, Message, Subscriber};
use baton_common::control::{
    BatchDone, BatchInput, BatchPlanMsg, Goodbye, Heartbeat, PlanItem, Revoke, WorkerHello, WorkerState,
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
const REPLY_PREFIX: &str = "test.reply";

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

    /// Every reply seen, by request id.
    fn replies(&self) -> HashMap<String, Vec<InferReply>> {
        let mut out: HashMap<String, Vec<InferReply>> = HashMap::new();
        for m in &self.seen {
            if m.subject.as_str().starts_with(REPLY_PREFIX) {
                let r: InferReply = decode(&m.payload).unwrap();
                out.entry(r.id.clone()).or_default().push(r);
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

/// Starts nats-server, the tap, and a worker `w1` serving model `m` (input f32 [4]).
async fn start(sleep_spec: &str, tune: impl FnOnce(&mut WorkerConfig)) -> Harness {
    start_as(Exec::Thread, sleep_spec, tune).await
}

async fn start_as(exec: Exec, sleep_spec: &str, tune: impl FnOnce(&mut WorkerConfig)) -> Harness {
    let server = NatsServer::start().unwrap_or_else(|e| panic!("cannot start nats-server for the test: {e}"));
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

    async fn send_plan(&self, plan: &BatchPlanMsg) {
        self.client
            .publish(subjects::worker_plans(&self.id), encode(plan).into())
            .await
            .unwrap();
    }

    async fn send_input(&self, batch_id: BatchUuid, index: u32, inputs: Vec<Tensor>) {
        let msg = BatchInput {
            batch_id,
            index,
            inputs,
        };
        self.client
            .publish(subjects::worker_inputs(&self.id), encode(&msg).into())
            .await
            .unwrap();
    }

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

fn plan(n: usize, budget_us: u64) -> BatchPlanMsg {
    let batch_id = BatchUuid::random();
    BatchPlanMsg {
        batch_id,
        model: "m".into(),
        items: (0..n)
            .map(|i| PlanItem {
                request_id: format!("{batch_id}-r{i}").into(),
                reply_to: format!("{REPLY_PREFIX}.{batch_id}.{i}"),
                queued_us: 1000 + i as u64,
            })
            .collect(),
        budget_us,
        late: false,
    }
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
    h.send_input(p.batch_id, 2, vec![inputs[2].clone()]).await;
    h.send_input(p.batch_id, 0, vec![inputs[0].clone()]).await;
    h.send_plan(&p).await;
    h.send_input(p.batch_id, 3, vec![inputs[3].clone()]).await;
    h.send_input(p.batch_id, 1, vec![inputs[1].clone()]).await;

    let done = h.wait_done(p.batch_id).await;
    assert_eq!(done.worker_id.as_str(), "w1");
    assert_eq!(done.batch_size, 4);
    assert_eq!(done.failed, 0);
    assert!(done.exec_us >= 6000, "{done:?}");
    h.shutdown().await;

    let replies = h.tap.replies();
    assert_eq!(replies.len(), 4);
    let done_at = h.tap.position(|m| m.subject.as_str() == subjects::BATCH_DONE).unwrap();
    for (i, item) in p.items.iter().enumerate() {
        let r = &replies[item.request_id.as_str()];
        assert_eq!(r.len(), 1, "request {} must get exactly one reply", item.request_id);
        let r = &r[0];
        assert_eq!(r.status, Status::Ok, "{r:?}");
        assert_eq!(r.outputs, vec![checksum(&[inputs[i].clone()])]);
        assert!(!r.late);
        assert_eq!(r.timings.batch_size, 4);
        assert_eq!(r.timings.exec_us, done.exec_us);
        assert_eq!(r.timings.queued_us, item.queued_us + done.wait_us);
        // Replies reach their own inbox, before the BatchDone.
        let at = h.tap.position(|m| m.subject.as_str() == item.reply_to).unwrap();
        assert!(at < done_at);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_shape_is_a_bad_request_and_the_rest_of_the_batch_runs() {
    let mut h = start("sleep#1000,2000,0,0", |_| {}).await;
    h.wait_hello().await;
    let p = plan(3, 1_000_000);
    let good = [tensor(0, 4), tensor(2, 4)];
    h.send_plan(&p).await;
    h.send_input(p.batch_id, 0, vec![good[0].clone()]).await;
    h.send_input(p.batch_id, 1, vec![tensor(1, 5)]).await;
    h.send_input(p.batch_id, 2, vec![good[1].clone()]).await;
    let done = h.wait_done(p.batch_id).await;
    assert_eq!((done.batch_size, done.failed), (3, 1));
    // A plan for a model this worker does not serve.
    let mut other = plan(1, 1_000_000);
    other.model = "resnet".into();
    h.send_plan(&other).await;
    let done_other = h.wait_done(other.batch_id).await;
    assert_eq!((done_other.batch_size, done_other.failed), (1, 1));
    h.shutdown().await;

    let replies = h.tap.replies();
    assert_eq!(replies.len(), 4);
    let one = |i: usize| {
        let r = &replies[p.items[i].request_id.as_str()];
        assert_eq!(r.len(), 1);
        r[0].clone()
    };
    assert_eq!(one(0).outputs, vec![checksum(&[good[0].clone()])]);
    assert_eq!(one(2).outputs, vec![checksum(&[good[1].clone()])]);
    let bad = one(1);
    assert_eq!(bad.status, Status::Rejected);
    assert_eq!(bad.reason, Some(RejectReason::BadRequest));
    let msg = bad.error.unwrap();
    assert!(msg.contains("[4]") && msg.contains("[5]"), "{msg}");
    let unknown = &replies[other.items[0].request_id.as_str()];
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].reason, Some(RejectReason::UnknownModel));
    assert!(unknown[0].error.as_deref().unwrap().contains("`resnet`"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_whose_inputs_never_come_is_answered_with_errors_after_its_budget() {
    let mut h = start("sleep#1000,2000,0,0", |c| c.assembly.grace = Duration::from_millis(20)).await;
    h.wait_hello().await;
    let p = plan(2, 30_000);
    let sent = Instant::now();
    h.send_plan(&p).await;
    h.send_input(p.batch_id, 1, vec![tensor(1, 4)]).await;
    let done = h.wait_done(p.batch_id).await;
    let waited = sent.elapsed();
    assert!(
        waited >= Duration::from_millis(50),
        "answered after {waited:?}, before budget + grace"
    );
    assert_eq!((done.batch_size, done.failed, done.exec_us), (2, 2, 0));
    assert!(done.wait_us >= 50_000, "{done:?}");
    // Its late input is dropped, not kept.
    h.send_input(p.batch_id, 0, vec![tensor(0, 4)]).await;
    h.shutdown().await;

    let replies = h.tap.replies();
    assert_eq!(replies.len(), 2);
    for item in &p.items {
        let r = &replies[item.request_id.as_str()];
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, Status::Error);
        let msg = r[0].error.as_deref().unwrap();
        assert!(msg.contains(p.items[0].request_id.as_str()), "{msg}");
        assert!(
            !msg.contains(p.items[1].request_id.as_str()),
            "only the missing input is named: {msg}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_running_batch_then_says_goodbye() {
    // Every batch takes 400 ms.
    let mut h = start("sleep#0,400000,0,0", |_| {}).await;
    h.wait_hello().await;
    let p = plan(2, 1_000_000);
    let inputs = [tensor(0, 4), tensor(1, 4)];
    h.send_plan(&p).await;
    h.send_input(p.batch_id, 0, vec![inputs[0].clone()]).await;
    h.send_input(p.batch_id, 1, vec![inputs[1].clone()]).await;
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

    let replies = h.tap.replies();
    for (i, item) in p.items.iter().enumerate() {
        let r = &replies[item.request_id.as_str()];
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, Status::Ok);
        assert_eq!(r[0].outputs, vec![checksum(&[inputs[i].clone()])]);
    }
    let declined = &replies[late.items[0].request_id.as_str()];
    assert_eq!(declined.len(), 1);
    assert_eq!(declined[0].reason, Some(RejectReason::ShuttingDown));
    let goodbye_at = h
        .tap
        .position(|m| m.subject.as_str() == subjects::WORKER_GOODBYE)
        .unwrap();
    let last_reply = h
        .tap
        .seen
        .iter()
        .rposition(|m| m.subject.as_str().starts_with(REPLY_PREFIX))
        .unwrap();
    assert!(last_reply < goodbye_at);
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
    // The scheduler declared the worker dead and answered this batch itself: plan, revoke, then
    // the inputs (as after a NATS stall), and a plan repeated after the revoke.
    let revoked = plan(2, 1_000_000);
    h.send_plan(&revoked).await;
    h.send_revoke(&[revoked.batch_id, BatchUuid::random()]).await;
    h.send_input(revoked.batch_id, 0, vec![tensor(0, 4)]).await;
    h.send_input(revoked.batch_id, 1, vec![tensor(1, 4)]).await;
    h.send_plan(&revoked).await;
    // The worker serves on: a batch sent after them runs (and, through one connection, proves
    // the worker has handled everything before it).
    let next = plan(1, 1_000_000);
    h.send_plan(&next).await;
    h.send_input(next.batch_id, 0, vec![tensor(2, 4)]).await;
    let done = h.wait_done(next.batch_id).await;
    assert_eq!((done.batch_size, done.failed), (1, 0));
    // Nothing is pending: the revoked batch's state is gone.
    h.wait_pending(0).await;
    h.shutdown().await;

    let replies = h.tap.replies();
    for item in &revoked.items {
        assert!(
            !replies.contains_key(item.request_id.as_str()),
            "revoked request answered: {replies:?}"
        );
    }
    assert_eq!(h.dones_of(revoked.batch_id), 0, "no BatchDone for a revoked batch");
    assert_eq!(replies[next.items[0].request_id.as_str()].len(), 1);
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
    h.send_input(running.batch_id, 0, vec![tensor(0, 4)]).await;
    // Both held once the first is running and the second complete, waiting for the device.
    h.wait_pending(1).await;
    h.send_plan(&queued).await;
    h.send_input(queued.batch_id, 0, vec![tensor(1, 4)]).await;
    h.wait_pending(2).await;
    // Too late for the running one (answered as usual), in time for the queued one.
    h.send_revoke(&[running.batch_id, queued.batch_id]).await;
    let done = h.wait_done(running.batch_id).await;
    assert_eq!(done.failed, 0);
    h.wait_pending(0).await;
    h.shutdown().await;

    let replies = h.tap.replies();
    assert_eq!(replies[running.items[0].request_id.as_str()].len(), 1);
    assert!(
        !replies.contains_key(queued.items[0].request_id.as_str()),
        "{replies:?}"
    );
    assert_eq!(h.dones_of(queued.batch_id), 0);
}
