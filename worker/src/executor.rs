//! Where a worker's batches run: the one place its backend executes.
//!
//! A forward pass blocks for milliseconds to seconds, so for a real device it runs on a dedicated
//! OS thread that owns the backend (and, for torch, the device), never on the async runtime that
//! talks to NATS ([`Execution::Thread`]). An emulated worker of a fleet (`baton-worker fleet`)
//! has no forward pass to block on, and ten thousand threads would not fit: it awaits its
//! profile's latency on a tokio timer in a task of its own ([`Execution::Timer`]), so a fleet's
//! workers share the runtime's few threads. Both run one batch at a time, like one device, and
//! look the same to the worker runtime.
//!
//! Batches reach the executor through a small bounded channel and [`Executor::try_submit`] never
//! waits: when the channel is full the runtime keeps the batch in its own queue and offers it
//! again when a batch finishes. Results come back on an unbounded tokio channel; it cannot grow
//! past the channel's capacity plus the batch in progress.
//!
//! A panicking backend is caught and turned into a failed batch, so its requests are still
//! answered and the thread lives on.
//!
//! A batch the dispatcher revoked while it waited in the channel is not run: the executor checks
//! [`Executor::revoke`]'s set as it takes each batch, and hands it back as
//! [`Executed::revoked`] (to be dropped without an answer).

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use baton_common::control::BatchPlanMsg;
use baton_common::ids::BatchUuid;
use tokio::sync::mpsc::UnboundedSender;

use crate::assembly::{ItemMeta, ReadyBatch};
use crate::backend::{Backend, BackendError, ItemResult, ModelInfo};
use crate::emulated::EmulatedBackend;

/// What runs a worker's batches, and how.
pub enum Execution {
    /// A backend on a dedicated OS thread (`baton-worker run`: one device per worker).
    Thread(Box<dyn Backend>),
    /// The emulated backend on a tokio timer (`baton-worker fleet`): the batch takes its profiled
    /// latency (to tokio's millisecond timer resolution) without a thread of its own. One backend
    /// may serve any number of workers.
    Timer(Arc<EmulatedBackend>),
}

impl std::fmt::Debug for Execution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Execution::Thread(backend) => f.debug_tuple("Thread").field(&backend.kind()).finish(),
            Execution::Timer(backend) => f.debug_tuple("Timer").field(backend).finish(),
        }
    }
}

impl Execution {
    /// The backend's name, as announced in the worker's hello.
    pub fn kind(&self) -> &'static str {
        match self {
            Execution::Thread(backend) => backend.kind(),
            Execution::Timer(backend) => backend.kind(),
        }
    }

    /// The models the backend serves.
    pub fn models(&self) -> Vec<ModelInfo> {
        match self {
            Execution::Thread(backend) => backend.models(),
            Execution::Timer(backend) => backend.models(),
        }
    }
}

/// A batch the backend ran (or failed to run).
#[derive(Debug)]
pub struct Executed {
    pub plan: BatchPlanMsg,
    /// When the plan arrived at the worker.
    pub received: Instant,
    /// `items[i]` describes item `i` of the plan: whose request it is, for its reply.
    pub items: Vec<ItemMeta>,
    pub started: Instant,
    pub finished: Instant,
    /// One result per plan item, or the whole batch's failure.
    pub results: Result<Vec<ItemResult>, BackendError>,
    /// Revoked before it started: it did not run, and must not be answered.
    pub revoked: bool,
}

/// Why a batch was not handed to the execution thread; either way the batch comes back (boxed:
/// a batch is large for an error, and these are the uncommon paths).
#[derive(Debug)]
pub enum SubmitError {
    /// The queue is full; try again after a batch finishes.
    Full(Box<ReadyBatch>),
    /// The execution thread is gone; the batch cannot run.
    Gone(Box<ReadyBatch>),
}

/// Handle to the executor. Dropping it closes the queue (the executor finishes the batches
/// already submitted, then ends, detached); [`Executor::join`] also waits for that.
#[derive(Debug)]
pub struct Executor {
    jobs: Option<Jobs>,
    thread: Option<JoinHandle<()>>,
    /// Batches submitted and revoked since: skipped if the executor has not started them.
    revoked: Revoked,
}

/// The executor's queue.
#[derive(Debug)]
enum Jobs {
    Thread(SyncSender<ReadyBatch>),
    Timer(tokio::sync::mpsc::Sender<ReadyBatch>),
}

type Revoked = Arc<Mutex<HashSet<BatchUuid>>>;

/// Takes batch `id` out of the revoked set: true if it was there, and must not run.
fn take_revoked(revoked: &Revoked, id: &BatchUuid) -> bool {
    revoked.lock().unwrap_or_else(|e| e.into_inner()).remove(id)
}

/// A revoked batch, handed back unrun.
fn skipped(batch: ReadyBatch, started: Instant) -> Executed {
    Executed {
        plan: batch.plan,
        received: batch.received,
        items: batch.items,
        started,
        finished: started,
        results: Ok(Vec::new()),
        revoked: true,
    }
}

/// A batch that ran from `started` until now, with one result per item or the whole batch's
/// failure (also when the backend returned the wrong number of results).
fn finished(batch: ReadyBatch, started: Instant, results: Result<Vec<ItemResult>, BackendError>) -> Executed {
    let results = results.and_then(|r| {
        if r.len() == batch.inputs.len() {
            Ok(r)
        } else {
            Err(BackendError::Failed(format!(
                "backend returned {} results for a batch of {}",
                r.len(),
                batch.inputs.len()
            )))
        }
    });
    Executed {
        plan: batch.plan,
        received: batch.received,
        items: batch.items,
        started,
        finished: Instant::now(),
        results,
        revoked: false,
    }
}

impl Executor {
    /// Starts the executor for `execution`: a thread, or a tokio task (so this must then be
    /// called within a tokio runtime). Capacity and results as in [`Executor::spawn`].
    pub fn start(execution: Execution, capacity: usize, done: UnboundedSender<Executed>) -> std::io::Result<Executor> {
        match execution {
            Execution::Thread(backend) => Executor::spawn(backend, capacity, done),
            Execution::Timer(backend) => Ok(Executor::spawn_timer(backend, capacity, done)),
        }
    }

    /// Starts the thread. It runs at most `capacity` queued batches beyond the current one and
    /// sends each result on `done`.
    pub fn spawn(
        mut backend: Box<dyn Backend>,
        capacity: usize,
        done: UnboundedSender<Executed>,
    ) -> std::io::Result<Executor> {
        let (jobs, rx) = sync_channel::<ReadyBatch>(capacity);
        let revoked = Revoked::default();
        let skip = revoked.clone();
        let thread = std::thread::Builder::new()
            .name(format!("baton-exec-{}", backend.kind()))
            .spawn(move || {
                while let Ok(batch) = rx.recv() {
                    let started = Instant::now();
                    let executed = if take_revoked(&skip, &batch.plan.batch_id) {
                        skipped(batch, started)
                    } else {
                        let results =
                            catch_unwind(AssertUnwindSafe(|| backend.run_batch(&batch.plan.model, &batch.inputs)))
                                .unwrap_or_else(|panic| Err(BackendError::Failed(panic_message(&panic))));
                        finished(batch, started, results)
                    };
                    if done.send(executed).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Executor {
            jobs: Some(Jobs::Thread(jobs)),
            thread: Some(thread),
            revoked,
        })
    }

    /// Starts a task that awaits each batch's emulated latency on a tokio timer; otherwise as
    /// [`Executor::spawn`]. Must be called within a tokio runtime.
    pub fn spawn_timer(backend: Arc<EmulatedBackend>, capacity: usize, done: UnboundedSender<Executed>) -> Executor {
        let (jobs, mut rx) = tokio::sync::mpsc::channel::<ReadyBatch>(capacity.max(1));
        let revoked = Revoked::default();
        let skip = revoked.clone();
        tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                let started = Instant::now();
                let executed = if take_revoked(&skip, &batch.plan.batch_id) {
                    skipped(batch, started)
                } else {
                    let results = match backend.compute(&batch.plan.model, &batch.inputs) {
                        Ok((latency, results)) => {
                            tokio::time::sleep(latency).await;
                            Ok(results)
                        }
                        Err(e) => Err(e),
                    };
                    finished(batch, started, results)
                };
                if done.send(executed).is_err() {
                    break;
                }
            }
        });
        Executor {
            jobs: Some(Jobs::Timer(jobs)),
            thread: None,
            revoked,
        }
    }

    /// Asks the executor not to run batch `id`, submitted earlier, if it has not started it yet;
    /// it then comes back with [`Executed::revoked`] set. Call [`Executor::forget`] for it
    /// when it comes back either way.
    pub fn revoke(&self, id: BatchUuid) {
        self.revoked.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
    }

    /// Forgets a revoke for batch `id`, which has come back (run or not).
    pub fn forget(&self, id: &BatchUuid) {
        self.revoked.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    /// Hands a batch to the executor without waiting.
    pub fn try_submit(&self, batch: ReadyBatch) -> Result<(), SubmitError> {
        use tokio::sync::mpsc::error::TrySendError as TaskSendError;
        match &self.jobs {
            None => Err(SubmitError::Gone(Box::new(batch))),
            Some(Jobs::Thread(jobs)) => jobs.try_send(batch).map_err(|e| match e {
                TrySendError::Full(b) => SubmitError::Full(Box::new(b)),
                TrySendError::Disconnected(b) => SubmitError::Gone(Box::new(b)),
            }),
            Some(Jobs::Timer(jobs)) => jobs.try_send(batch).map_err(|e| match e {
                TaskSendError::Full(b) => SubmitError::Full(Box::new(b)),
                TaskSendError::Closed(b) => SubmitError::Gone(Box::new(b)),
            }),
        }
    }

    /// Closes the queue and waits for a thread to finish what it was given (blocks); a timer
    /// task finishes on its own.
    pub fn join(mut self) {
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".to_string());
    format!("backend panicked: {what}")
}

#[cfg(test)]
mod tests {
    use baton_common::control::{BatchPlanMsg, PlanPart};
    use baton_common::ids::BatchUuid;
    use baton_common::profile::Profile;
    use baton_common::wire::Tensor;

    use super::*;
    use crate::backend::ModelInfo;

    /// Panics on model `boom`, answers one empty output per request otherwise.
    struct Flaky;

    impl Backend for Flaky {
        fn kind(&self) -> &'static str {
            "flaky"
        }
        fn models(&self) -> Vec<ModelInfo> {
            vec![ModelInfo {
                name: "ok".into(),
                inputs: vec![],
                max_batch: 4,
                profile: Profile::from_spec("sleep#0,0,0,0", 4).unwrap(),
            }]
        }
        fn run_batch(&mut self, model: &str, inputs: &[Vec<Tensor>]) -> Result<Vec<ItemResult>, BackendError> {
            assert_ne!(model, "boom", "kaboom");
            Ok(inputs.iter().map(|_| Ok(vec![])).collect())
        }
    }

    fn batch(model: &str, n: usize) -> ReadyBatch {
        ReadyBatch {
            plan: BatchPlanMsg {
                batch_id: BatchUuid::random(),
                model: model.into(),
                parts: vec![PlanPart {
                    gateway: "g1".into(),
                    requests: (0..n as u64).collect(),
                }],
                budget_us: 1000,
                late: false,
            },
            received: Instant::now(),
            items: (0..n)
                .map(|i| ItemMeta {
                    id: format!("r{i}").into(),
                    queued_us: 0,
                })
                .collect(),
            inputs: vec![vec![]; n],
        }
    }

    #[test]
    fn a_panicking_backend_fails_its_batch_and_the_thread_lives_on() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let ex = Executor::spawn(Box::new(Flaky), 4, tx).unwrap();
        ex.try_submit(batch("boom", 2)).unwrap();
        ex.try_submit(batch("ok", 3)).unwrap();
        let first = rx.blocking_recv().unwrap();
        let err = first.results.unwrap_err().to_string();
        assert!(err.contains("backend panicked") && err.contains("kaboom"), "{err}");
        let second = rx.blocking_recv().unwrap();
        assert_eq!(second.results.unwrap().len(), 3);
        assert!(second.started <= second.finished);
        ex.join();
        assert!(rx.blocking_recv().is_none(), "the thread exits once joined");
    }

    /// Runs a batch only when the test lets it.
    struct Gated(std::sync::mpsc::Receiver<()>);

    impl Backend for Gated {
        fn kind(&self) -> &'static str {
            "gated"
        }
        fn models(&self) -> Vec<ModelInfo> {
            Flaky.models()
        }
        fn run_batch(&mut self, _: &str, inputs: &[Vec<Tensor>]) -> Result<Vec<ItemResult>, BackendError> {
            self.0.recv().map_err(|_| BackendError::Failed("gate closed".into()))?;
            Ok(inputs.iter().map(|_| Ok(vec![])).collect())
        }
    }

    #[test]
    fn a_batch_revoked_while_queued_is_not_run() {
        let (gate, gated) = std::sync::mpsc::channel();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let ex = Executor::spawn(Box::new(Gated(gated)), 2, tx).unwrap();
        let first = batch("ok", 1);
        let second = batch("ok", 2);
        let (first_id, second_id) = (first.plan.batch_id, second.plan.batch_id);
        ex.try_submit(first).unwrap();
        ex.try_submit(second).unwrap();
        // The first is held at the gate (or about to be); the second waits in the queue.
        ex.revoke(second_id);
        gate.send(()).unwrap();
        let a = rx.blocking_recv().unwrap();
        assert_eq!((a.plan.batch_id, a.revoked), (first_id, false));
        let b = rx.blocking_recv().unwrap();
        assert_eq!((b.plan.batch_id, b.revoked), (second_id, true));
        ex.forget(&second_id);
        ex.join();
    }

    fn timed_backend() -> Arc<EmulatedBackend> {
        Arc::new(EmulatedBackend::new([crate::emulated::EmulatedModel {
            name: "ok".into(),
            // mean(b) = 1000·b + 4000 µs: 6 ms for two requests.
            profile: Profile::from_spec("sleep#1000,4000,0,0", 4).unwrap(),
            inputs: vec![],
        }]))
    }

    #[tokio::test]
    async fn a_timer_takes_the_profiled_latency_without_a_thread() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let ex = Executor::start(Execution::Timer(timed_backend()), 1, tx).unwrap();
        assert!(ex.thread.is_none());
        ex.try_submit(batch("ok", 2)).unwrap();
        let done = rx.recv().await.unwrap();
        let took = done.finished - done.started;
        assert!(took >= std::time::Duration::from_millis(6), "{took:?}");
        assert_eq!(done.results.unwrap().len(), 2);
        assert!(!done.revoked);
        ex.try_submit(batch("nope", 1)).unwrap();
        let err = rx.recv().await.unwrap().results.unwrap_err();
        assert!(matches!(err, BackendError::UnknownModel(m) if m == "nope"));
        ex.join();
        assert!(rx.recv().await.is_none(), "the task ends once its queue closes");
    }

    #[tokio::test]
    async fn a_timer_skips_a_batch_revoked_while_queued_and_says_when_full() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let ex = Executor::start(Execution::Timer(timed_backend()), 1, tx).unwrap();
        let (first, second) = (batch("ok", 1), batch("ok", 2));
        let (first_id, second_id) = (first.plan.batch_id, second.plan.batch_id);
        ex.try_submit(first).unwrap();
        // The task has not run yet (this test's runtime is single-threaded): the queue of one
        // is full.
        assert!(matches!(ex.try_submit(batch("ok", 3)), Err(SubmitError::Full(_))));
        tokio::task::yield_now().await;
        // Now the first is sleeping and the second waits in the queue; revoke it there.
        ex.try_submit(second).unwrap();
        ex.revoke(second_id);
        let a = rx.recv().await.unwrap();
        assert_eq!((a.plan.batch_id, a.revoked), (first_id, false));
        let b = rx.recv().await.unwrap();
        assert_eq!((b.plan.batch_id, b.revoked), (second_id, true));
        ex.forget(&second_id);
    }

    #[test]
    fn a_full_queue_gives_the_batch_back() {
        let (gate, gated) = std::sync::mpsc::channel();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let ex = Executor::spawn(Box::new(Gated(gated)), 1, tx).unwrap();
        // One batch running (blocked at the gate) and one queued fill it; wait until the thread
        // has taken the first, then the queue holds exactly one more.
        ex.try_submit(batch("ok", 1)).unwrap();
        let mut queued = 0;
        let mut refused = None;
        for _ in 0..1000 {
            match ex.try_submit(batch("ok", 2)) {
                Ok(()) => queued += 1,
                Err(SubmitError::Full(b)) => {
                    refused = Some(b);
                    if queued == 1 {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(SubmitError::Gone(_)) => panic!("thread gone"),
            }
        }
        assert_eq!(queued, 1);
        assert_eq!(refused.expect("the second extra batch is refused").inputs.len(), 2);
        for _ in 0..2 {
            gate.send(()).unwrap();
            assert!(rx.blocking_recv().unwrap().results.is_ok());
        }
        ex.join();
    }
}
