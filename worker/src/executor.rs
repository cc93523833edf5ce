//! The execution thread: the one place a worker's [`Backend`] runs.
//!
//! A forward pass blocks for milliseconds to seconds, so it runs on a dedicated OS thread that
//! owns the backend (and, for torch, the device), never on the async runtime that talks to NATS.
//! Batches reach it through a small bounded channel and [`Executor::try_submit`] never waits: when
//! the channel is full the runtime keeps the batch in its own queue and offers it again when a
//! batch finishes. Results come back on an unbounded tokio channel; it cannot grow past the
//! channel's capacity plus the batch in progress.
//!
//! A panicking backend is caught and turned into a failed batch, so its requests are still
//! answered and the thread lives on.
//!
//! A batch the scheduler revoked while it waited in the channel is not run: the thread checks
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

use crate::assembly::ReadyBatch;
use crate::backend::{Backend, BackendError, ItemResult};

/// A batch the backend ran (or failed to run).
#[derive(Debug)]
pub struct Executed {
    pub plan: BatchPlanMsg,
    /// When the plan arrived at the worker.
    pub received: Instant,
    pub started: Instant,
    pub finished: Instant,
    /// One result per plan item, or the whole batch's failure.
    pub results: Result<Vec<ItemResult>, BackendError>,
    /// Revoked before it started: it did not run, and must not be answered.
    pub revoked: bool,
}

/// Why a batch was not handed to the execution thread.
#[derive(Debug)]
pub enum SubmitError {
    /// The queue is full; try again after a batch finishes.
    Full(ReadyBatch),
    /// The execution thread is gone; the batch cannot run.
    Gone(ReadyBatch),
}

/// Handle to the execution thread. Dropping it closes the queue (the thread finishes the batches
/// already submitted, then exits, detached); [`Executor::join`] also waits for that.
#[derive(Debug)]
pub struct Executor {
    jobs: Option<SyncSender<ReadyBatch>>,
    thread: Option<JoinHandle<()>>,
    /// Batches submitted and revoked since: skipped if the thread has not started them.
    revoked: Arc<Mutex<HashSet<BatchUuid>>>,
}

impl Executor {
    /// Starts the thread. It runs at most `capacity` queued batches beyond the current one and
    /// sends each result on `done`.
    pub fn spawn(
        mut backend: Box<dyn Backend>,
        capacity: usize,
        done: UnboundedSender<Executed>,
    ) -> std::io::Result<Executor> {
        let (jobs, rx) = sync_channel::<ReadyBatch>(capacity);
        let revoked = Arc::new(Mutex::new(HashSet::new()));
        let skip = revoked.clone();
        let thread = std::thread::Builder::new()
            .name(format!("baton-exec-{}", backend.kind()))
            .spawn(move || {
                while let Ok(batch) = rx.recv() {
                    let started = Instant::now();
                    let id = batch.plan.batch_id;
                    if skip.lock().unwrap_or_else(|e| e.into_inner()).remove(&id) {
                        let skipped = Executed {
                            plan: batch.plan,
                            received: batch.received,
                            started,
                            finished: started,
                            results: Ok(Vec::new()),
                            revoked: true,
                        };
                        if done.send(skipped).is_err() {
                            break;
                        }
                        continue;
                    }
                    let results =
                        catch_unwind(AssertUnwindSafe(|| backend.run_batch(&batch.plan.model, &batch.inputs)))
                            .unwrap_or_else(|panic| Err(BackendError::Failed(panic_message(&panic))))
                            .and_then(|r| {
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
                    let executed = Executed {
                        plan: batch.plan,
                        received: batch.received,
                        started,
                        finished: Instant::now(),
                        results,
                        revoked: false,
                    };
                    if done.send(executed).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Executor {
            jobs: Some(jobs),
            thread: Some(thread),
            revoked,
        })
    }

    /// Asks the thread not to run batch `id`, submitted earlier, if it has not started it yet;
    /// it then comes back with [`Executed::revoked`] set. Call [`Executor::forget`] for it
    /// when it comes back either way.
    pub fn revoke(&self, id: BatchUuid) {
        self.revoked.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
    }

    /// Forgets a revoke for batch `id`, which has come back (run or not).
    pub fn forget(&self, id: &BatchUuid) {
        self.revoked.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    /// Hands a batch to the thread without waiting.
    pub fn try_submit(&self, batch: ReadyBatch) -> Result<(), SubmitError> {
        let Some(jobs) = &self.jobs else {
            return Err(SubmitError::Gone(batch));
        };
        jobs.try_send(batch).map_err(|e| match e {
            TrySendError::Full(b) => SubmitError::Full(b),
            TrySendError::Disconnected(b) => SubmitError::Gone(b),
        })
    }

    /// Closes the queue and waits for the thread to finish what it was given. Blocks.
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
    use baton_common::control::{BatchPlanMsg, PlanItem};
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
                items: (0..n)
                    .map(|i| PlanItem {
                        request_id: format!("r{i}").into(),
                        reply_to: format!("_INBOX.{i}"),
                        queued_us: 0,
                    })
                    .collect(),
                budget_us: 1000,
                late: false,
            },
            received: Instant::now(),
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
