//! The worker runtime: one task that owns a worker's state and talks to NATS.
//!
//! ```text
//!  NATS baton.worker.<id>.>  ──drain task──▶ bounded inbox ──▶ ┌──────────────┐
//!  (plans, revokes: dispatcher;                                 │ runtime loop │──▶ BatchResults to each
//!   inputs: gateways)                                           │  (this file) │    gateway, BatchDone,
//!  execution thread (Backend) ──────────── Executed ──────────▶ │              │    hello, heartbeat,
//!  heartbeat tick, assembly timers, shutdown signal ──────────▶ └──────────────┘    goodbye
//! ```
//!
//! The loop is the worker "actor": a single owner of the [`Assembler`], the queue of ready
//! batches and the execution thread's handle, fed by channels, so no state is shared or locked.
//! It is a plain tokio task rather than an actix actor because every step ends in async NATS
//! publishes whose order matters (a batch's results before its `BatchDone`, everything before
//! `Goodbye`): awaiting them in sequence in one task gives that order for free, while an actix
//! handler would have to spawn them or block its own mailbox. A plain `async fn run` is also
//! `Send`, so tests and other binaries run a worker on any tokio runtime.
//!
//! [`run`] is one worker with its own NATS connection and execution thread. [`start_on`] is the
//! same worker on a connection it is given, with an [`Execution`] of the caller's choice: how
//! `baton-worker fleet` runs thousands of emulated workers in one process (`crate::fleet`)
//! with exactly the protocol code of a real one.
//!
//! Answers: the worker never talks to clients. Each batch's answers go to the gateways holding
//! its requests, each gateway its own as `BatchResults` on `baton.gateway.<gw>.results`
//! ([`crate::answer`]), then the `BatchDone` to the dispatcher.
//!
//! Revokes (`baton.worker.<id>.revoke`, from the dispatcher on the connection of its plans): the
//! dispatcher declared this worker dead and re-planned or rejected the named batches' requests.
//! A revoked batch still assembling, waiting in the runtime's queue or in the execution thread's
//! channel is dropped without results or `BatchDone`; one already running is finished and
//! answered (the dispatcher ignores its `BatchDone`, the gateways drop answers to requests already
//! answered). Because a stall delivers a plan, its inputs and its revoke in one burst, the loop
//! handles every message already in the inbox before it hands newly complete batches to the
//! execution thread.
//!
//! Shutdown (the `shutdown` future resolving, e.g. on SIGTERM): the heartbeat state becomes
//! `draining`, plans that still arrive are answered `shutting_down`, batches already received
//! are finished (or expire), then `Goodbye` is published, the connection flushed, and
//! [`run`] returns.
//!
//! Longer than ~600 lines on purpose: the loop (`Worker`, about 300 lines) is one state machine
//! with one owner, and the start-up code beside it (config, hello, connection, `start_on` for
//! the fleet) is what builds it; split, either half would only make sense read with the other.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Client, ConnectOptions, Event};
use baton_common::control::{Goodbye, Heartbeat, WorkerHello, WorkerModel, WorkerState};
use baton_common::ids::{BatchUuid, WorkerName};
use baton_common::nats::{NatsConnectError, Retry};
use baton_common::settings::NatsSettings;
use baton_common::subjects;
use baton_common::wire::{encode, RejectReason};
use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::answer::{self, Answer};
use crate::assembly::{
    Assembler, AssemblyLimits, DeclineOutcome, DropReason, InputOutcome, PlanOutcome, ReadyBatch, RevokeOutcome,
};
use crate::backend::Backend;
use crate::executor::{Executed, Execution, Executor, SubmitError};
use crate::inbox::{self, Inbound, InboxStats};

/// How long, after draining, the worker waits for messages already on their way to it.
const LAST_CALLS: Duration = Duration::from_secs(2);

/// At most this many messages already in the inbox are handled before complete batches go to
/// the execution thread (so a revoke in the same burst as its batch's inputs is seen first).
const BURST: usize = 256;

/// How long the goodbye may take on the way out.
const FAREWELL: Duration = Duration::from_secs(2);

/// How a worker runs. [`WorkerConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How to reach NATS: URL(s), credentials, TLS (Baton's `[nats]` settings). The
    /// connection is named `baton-worker-<id>` unless `nats.name` is changed from the default.
    pub nats: NatsSettings,
    /// Unique worker id; one NATS subject token.
    pub id: WorkerName,
    /// Hardware class announced to the scheduler (`cpu`, `t4`, `a100`…).
    pub hardware: String,
    /// Heartbeat period (default 250 ms).
    pub heartbeat: Duration,
    /// When the periodic heartbeats begin (default: one period after the hello). A fleet sets it
    /// to spread its workers' heartbeats evenly over the period.
    pub heartbeat_start: Option<Instant>,
    /// This process's instance id (new for every `WorkerConfig::new`).
    pub instance: uuid::Uuid,
    /// Bounds and timeouts for pairing plans with inputs.
    pub assembly: AssemblyLimits,
    /// Decoded messages waiting for the runtime loop (default 4096).
    pub inbox_capacity: usize,
    /// Batches queued on the execution thread beyond the one running (default 1; more wait in
    /// the runtime's own queue).
    pub exec_queue: usize,
    /// At most this many batches are held at once (assembling, queued or running); further
    /// plans are answered `overloaded` (default 256).
    pub max_pending_batches: usize,
}

impl WorkerConfig {
    /// A worker on an open NATS server at `nats_url` (set [`WorkerConfig::nats`] for
    /// credentials and TLS).
    pub fn new(nats_url: impl Into<String>, id: impl Into<WorkerName>, hardware: impl Into<String>) -> Self {
        WorkerConfig {
            nats: NatsSettings {
                url: nats_url.into(),
                ..NatsSettings::default()
            },
            id: id.into(),
            hardware: hardware.into(),
            heartbeat: Duration::from_millis(250),
            heartbeat_start: None,
            instance: uuid::Uuid::new_v4(),
            assembly: AssemblyLimits::default(),
            inbox_capacity: 4096,
            exec_queue: 1,
            max_pending_batches: 256,
        }
    }
}

/// Why a worker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerError {
    #[error("worker id `{id}` cannot be used in NATS subjects: {problem}")]
    InvalidId { id: String, problem: String },
    #[error("the backend serves no models; give the worker at least one model")]
    NoModels,
    #[error(transparent)]
    Connect(#[from] NatsConnectError),
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe {
        subject: String,
        source: async_nats::SubscribeError,
    },
    #[error("cannot start the execution thread: {0}")]
    ExecThread(std::io::Error),
}

/// Runs a worker until `shutdown` resolves and everything it accepted has been answered.
///
/// Connects to NATS (waiting as long as it takes: the server may start after the worker; a
/// rejected credential is an error at once), announces the backend's models, then serves plans.
/// Returns `Ok(())` after a clean drain, or at once if `shutdown` resolves before NATS answers.
pub async fn run(
    config: WorkerConfig,
    backend: Box<dyn Backend>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    let execution = Execution::Thread(backend);
    let hello = hello(&config, &execution)?;
    let stats = Arc::new(InboxStats::default());
    let mut shutdown = std::pin::pin!(shutdown);
    let client = tokio::select! {
        client = connect(&config.nats, config.id.as_str(), stats.clone()) => client?,
        () = &mut shutdown => {
            info!(worker = %config.id, "shut down before NATS answered");
            return Ok(());
        }
    };
    Started::start(client, config, execution, hello, stats)
        .await?
        .serve(shutdown)
        .await;
    Ok(())
}

/// Starts a worker on a NATS connection it is given, which other workers may share (a fleet's
/// emulated workers do): subscribes to `baton.worker.<id>.>`, starts the executor, and says
/// hello. Then [`Started::serve`] serves plans until shutdown, exactly as [`run`] does.
pub async fn start_on(client: Client, config: WorkerConfig, execution: Execution) -> Result<Started, WorkerError> {
    let hello = hello(&config, &execution)?;
    Started::start(client, config, execution, hello, Arc::new(InboxStats::default())).await
}

/// The hello a worker announces itself with; refuses an id that is not a subject token, and a
/// backend without models.
fn hello(config: &WorkerConfig, execution: &Execution) -> Result<WorkerHello, WorkerError> {
    subjects::validate_token(config.id.as_str()).map_err(|problem| WorkerError::InvalidId {
        id: config.id.to_string(),
        problem,
    })?;
    let models = execution.models();
    if models.is_empty() {
        return Err(WorkerError::NoModels);
    }
    Ok(WorkerHello {
        worker_id: config.id.clone(),
        instance: config.instance,
        hardware: config.hardware.clone(),
        backend: execution.kind().to_string(),
        models: models
            .into_iter()
            .map(|m| WorkerModel {
                name: m.name,
                profile: m.profile,
            })
            .collect(),
    })
}

/// A worker that has subscribed and said hello, ready to [`serve`](Started::serve).
#[derive(Debug)]
pub struct Started {
    worker: Worker,
    inbox: mpsc::Receiver<Inbound>,
    done: mpsc::UnboundedReceiver<Executed>,
    stop_inbox: oneshot::Sender<()>,
    drain: tokio::task::JoinHandle<()>,
}

impl Started {
    async fn start(
        client: Client,
        config: WorkerConfig,
        execution: Execution,
        hello: WorkerHello,
        stats: Arc<InboxStats>,
    ) -> Result<Started, WorkerError> {
        let subject = subjects::worker_all(&config.id);
        let subscriber = client
            .subscribe(subject.clone())
            .await
            .map_err(|source| WorkerError::Subscribe { subject, source })?;

        let (inbox_tx, inbox) = mpsc::channel(config.inbox_capacity.max(1));
        let (stop_inbox, inbox_stop) = oneshot::channel();
        let drain = tokio::spawn(inbox::drain(
            subscriber,
            inbox_tx,
            client.clone(),
            config.id.clone(),
            stats.clone(),
            inbox_stop,
        ));
        let (done_tx, done) = mpsc::unbounded_channel();
        let executor =
            Executor::start(execution, config.exec_queue.max(1), done_tx).map_err(WorkerError::ExecThread)?;

        info!(
            worker = %config.id,
            hardware = config.hardware,
            backend = hello.backend,
            models = ?hello.models.iter().map(|m| &m.name).collect::<Vec<_>>(),
            "worker started"
        );
        let worker = Worker {
            assembler: Assembler::new(config.assembly.clone()),
            ready: VecDeque::new(),
            running: 0,
            in_exec: HashMap::new(),
            hold: false,
            draining: false,
            models: hello.models.iter().map(|m| m.name.clone()).collect(),
            executor,
            client,
            hello,
            config,
            stats,
        };
        worker.publish_hello().await;
        worker.publish_heartbeat().await;
        Ok(Started {
            worker,
            inbox,
            done,
            stop_inbox,
            drain,
        })
    }

    /// Serves plans until `shutdown` resolves and everything accepted has been answered, then
    /// says goodbye (see the module docs).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let Started {
            mut worker,
            mut inbox,
            mut done,
            stop_inbox,
            drain,
        } = self;
        worker.serve(&mut inbox, &mut done, shutdown).await;

        // Drained. Unsubscribe, and answer what was still on its way (plans: `shutting_down`).
        let _ = stop_inbox.send(());
        let last_calls = async {
            while let Some(msg) = inbox.recv().await {
                worker.on_inbound(msg).await;
            }
        };
        if tokio::time::timeout(LAST_CALLS, last_calls).await.is_err() {
            warn!("the NATS subscription did not close after unsubscribing; leaving without it");
        }
        drain.abort();
        let Worker {
            executor,
            client,
            config,
            stats,
            ..
        } = worker;
        executor.join();
        let goodbye = Goodbye {
            worker_id: config.id.clone(),
        };
        // Bounded: when NATS itself is going away (Ctrl-C reaches every process
        // of a demo at once) a flush would wait for a server that never answers.
        let farewell = async {
            if let Err(e) = client.publish(subjects::WORKER_GOODBYE, encode(&goodbye).into()).await {
                warn!(error = %e, "could not publish goodbye");
            }
            if let Err(e) = client.flush().await {
                warn!(error = %e, "could not flush the NATS connection");
            }
        };
        if tokio::time::timeout(FAREWELL, farewell).await.is_err() {
            warn!("NATS did not take the goodbye within {FAREWELL:?}; leaving anyway");
        }
        info!(
            worker = %config.id,
            slow_consumer_events = stats.slow_consumer_events.load(std::sync::atomic::Ordering::Relaxed),
            malformed = stats.malformed.load(std::sync::atomic::Ordering::Relaxed),
            plans_overflowed = stats.plans_overflowed.load(std::sync::atomic::Ordering::Relaxed),
            inputs_overflowed = stats.inputs_overflowed.load(std::sync::atomic::Ordering::Relaxed),
            revoked_dropped = stats.revoked_dropped.load(std::sync::atomic::Ordering::Relaxed),
            revoked_too_late = stats.revoked_too_late.load(std::sync::atomic::Ordering::Relaxed),
            "worker drained and said goodbye"
        );
    }
}

/// Connects to NATS for one worker, or for a fleet's workers sharing the connection, named
/// `name` in logs and (unless `nats.name` is set) `baton-worker-<name>` on the server. Retries
/// until the server answers; reconnects quickly after a drop; slow-consumer events are counted
/// in `stats`.
pub async fn connect(nats: &NatsSettings, name: &str, stats: Arc<InboxStats>) -> Result<Client, WorkerError> {
    let mut nats = nats.clone();
    if nats.name == NatsSettings::default().name {
        nats.name = format!("baton-worker-{name}");
    }
    let options = |o: ConnectOptions| {
        let id = name.to_string();
        let stats = stats.clone();
        o.reconnect_delay_callback(|attempts| {
            // 0, 50, 100, 200 ms … capped at 2 s.
            let exp = attempts.min(6) as u32;
            let ms = if attempts == 0 {
                0
            } else {
                50u64 << exp.saturating_sub(1)
            };
            Duration::from_millis(ms.min(2000))
        })
        .event_callback(move |event| {
            let id = id.clone();
            let stats = stats.clone();
            async move {
                match event {
                    Event::Connected => info!(worker = %id, "connected to NATS"),
                    Event::Disconnected => warn!(worker = %id, "disconnected from NATS; reconnecting"),
                    Event::Closed => info!(worker = %id, "NATS connection closed"),
                    Event::SlowConsumer(sid) => {
                        let n = InboxStats::bump(&stats.slow_consumer_events);
                        error!(
                            worker = %id,
                            sid,
                            total = n,
                            "NATS dropped messages for this slow consumer"
                        );
                    }
                    other => warn!(worker = %id, event = %other, "NATS event"),
                }
            }
        })
    };
    Ok(baton_common::nats::connect(&nats, Retry::Forever, options).await?)
}

/// The runtime loop's state.
struct Worker {
    assembler: Assembler,
    /// Complete batches the execution thread has no room for yet.
    ready: VecDeque<ReadyBatch>,
    /// Batches handed to the execution thread and not yet back.
    running: usize,
    /// Those batches by id, with whether the dispatcher has revoked them since.
    in_exec: HashMap<BatchUuid, bool>,
    /// Complete batches stay in `ready` while a burst of inbound messages is handled.
    hold: bool,
    draining: bool,
    models: Vec<String>,
    executor: Executor,
    client: Client,
    hello: WorkerHello,
    config: WorkerConfig,
    stats: Arc<InboxStats>,
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

impl Worker {
    /// Batches received and not yet answered.
    fn pending(&self) -> usize {
        self.assembler.assembling() + self.ready.len() + self.running
    }

    async fn serve(
        &mut self,
        inbox: &mut mpsc::Receiver<Inbound>,
        done: &mut mpsc::UnboundedReceiver<Executed>,
        shutdown: impl Future<Output = ()>,
    ) {
        let shutdown = shutdown.fuse();
        tokio::pin!(shutdown);
        // One heartbeat went with the hello; the next come one period on, or from when asked.
        let first = self
            .config
            .heartbeat_start
            .unwrap_or_else(|| Instant::now() + self.config.heartbeat);
        let mut heartbeat = tokio::time::interval_at(first.into(), self.config.heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.draining && self.pending() == 0 {
                return;
            }
            let timer = self.assembler.poll_timeout();
            tokio::select! {
                () = &mut shutdown, if !self.draining => {
                    info!(worker = %self.config.id, pending = self.pending(), "shutting down: draining");
                    self.draining = true;
                    self.publish_heartbeat().await;
                }
                Some(executed) = done.recv() => {
                    self.running -= 1;
                    let id = executed.plan.batch_id;
                    let revoke_asked = self.in_exec.remove(&id).unwrap_or(false);
                    if revoke_asked {
                        self.executor.forget(&id);
                    }
                    self.feed_executor().await;
                    if executed.revoked {
                        let n = InboxStats::bump(&self.stats.revoked_dropped);
                        info!(batch = %id, total = n, "revoked batch dropped before it ran (the dispatcher re-planned it)");
                        continue;
                    }
                    if revoke_asked {
                        let n = InboxStats::bump(&self.stats.revoked_too_late);
                        warn!(batch = %id, total = n,
                            "revoked batch had already started: answered anyway (its gateways drop answers already given)");
                    }
                    answer::executed(&self.config.id, executed).publish(&self.client).await;
                }
                Some(msg) = inbox.recv() => {
                    // Handle what else is already here before starting what became complete.
                    // The drain task may still be decoding the rest of a burst NATS delivered at
                    // once: yield once to it when the inbox looks empty, then look again.
                    self.hold = true;
                    self.on_inbound(msg).await;
                    let mut yielded = false;
                    for _ in 0..BURST {
                        match inbox.try_recv() {
                            Ok(msg) => self.on_inbound(msg).await,
                            Err(_) if !yielded && !self.ready.is_empty() => {
                                yielded = true;
                                tokio::task::yield_now().await;
                            }
                            Err(_) => break,
                        }
                    }
                    self.hold = false;
                    self.feed_executor().await;
                }
                _ = heartbeat.tick() => self.publish_heartbeat().await,
                () = sleep_until(timer) => self.on_timeout().await,
            }
        }
    }

    async fn on_inbound(&mut self, msg: Inbound) {
        match msg {
            Inbound::Rehello => self.publish_hello().await,
            Inbound::Revoke(revoke) => self.on_revoke(&revoke.batch_ids),
            Inbound::Plan { plan, received } => {
                let reject = if self.draining {
                    Some((
                        RejectReason::ShuttingDown,
                        format!("worker `{}` is shutting down and takes no new batches", self.config.id),
                    ))
                } else if !self.models.contains(&plan.model) {
                    Some((
                        RejectReason::UnknownModel,
                        format!(
                            "worker `{}` does not serve model `{}`; it serves: {}",
                            self.config.id,
                            plan.model,
                            self.models.join(", ")
                        ),
                    ))
                } else if self.pending() >= self.config.max_pending_batches {
                    Some((
                        RejectReason::Overloaded,
                        format!(
                            "worker `{}` already holds {} batches (its limit)",
                            self.config.id,
                            self.pending()
                        ),
                    ))
                } else {
                    None
                };
                if let Some((reason, message)) = reject {
                    match self.assembler.decline(plan) {
                        DeclineOutcome::Declined(plan) => {
                            info!(batch = %plan.batch_id, %reason, "plan declined");
                            answer::rejected(&self.config.id, plan, reason, &message)
                                .publish(&self.client)
                                .await;
                        }
                        DeclineOutcome::Duplicate(plan) => {
                            warn!(batch = %plan.batch_id, "duplicate plan ignored (its requests are answered once)");
                        }
                        DeclineOutcome::Revoked(plan) => {
                            let n = InboxStats::bump(&self.stats.revoked_dropped);
                            info!(batch = %plan.batch_id, total = n, "plan of a revoked batch dropped unanswered");
                        }
                    }
                    return;
                }
                debug!(batch = %plan.batch_id, model = plan.model, size = plan.len(), "plan");
                match self.assembler.on_plan(plan, received) {
                    PlanOutcome::Ready(batch) => self.submit(batch).await,
                    PlanOutcome::Waiting => {}
                    PlanOutcome::Duplicate(plan) => {
                        warn!(batch = %plan.batch_id, "duplicate plan ignored (its requests are answered once)");
                    }
                    PlanOutcome::Revoked(plan) => {
                        let n = InboxStats::bump(&self.stats.revoked_dropped);
                        info!(batch = %plan.batch_id, total = n, "plan of a revoked batch dropped unanswered");
                    }
                }
            }
            Inbound::Inputs { inputs, received } => {
                let batch = inputs.batch_id;
                let mut late = 0;
                for item in inputs.items {
                    let index = item.index;
                    match self.assembler.on_input(batch, item, received) {
                        InputOutcome::Ready(ready) => self.submit(ready).await,
                        InputOutcome::Stored | InputOutcome::Orphan => {}
                        InputOutcome::Dropped(DropReason::Closed | DropReason::Revoked) => late += 1,
                        InputOutcome::Dropped(reason) => warn!(%batch, index, ?reason, "input dropped"),
                    }
                }
                if late > 0 {
                    debug!(%batch, inputs = late, "inputs for a closed or revoked batch dropped");
                }
            }
        }
    }

    /// The dispatcher took these batches back: drop those that have not started, unanswered.
    fn on_revoke(&mut self, ids: &[BatchUuid]) {
        let now = Instant::now();
        for &id in ids {
            match self.assembler.revoke(id, now) {
                RevokeOutcome::Dropped(plan) => {
                    let n = InboxStats::bump(&self.stats.revoked_dropped);
                    info!(batch = %id, size = plan.len(), total = n,
                        "revoked batch dropped while assembling (the dispatcher re-planned it)");
                    continue;
                }
                RevokeOutcome::OrphansDropped => {
                    debug!(batch = %id, "revoked: its inputs dropped (the plan had not come)");
                    continue;
                }
                RevokeOutcome::NotAssembling => {}
            }
            if let Some(at) = self.ready.iter().position(|b| b.plan.batch_id == id) {
                let batch = self.ready.remove(at).expect("position is in range");
                let n = InboxStats::bump(&self.stats.revoked_dropped);
                info!(batch = %id, size = batch.plan.len(), total = n,
                    "revoked batch dropped from the queue (the dispatcher re-planned it)");
            } else if let Some(asked) = self.in_exec.get_mut(&id) {
                // Skipped if the execution thread has not taken it yet; see the `done` arm.
                *asked = true;
                self.executor.revoke(id);
            } else {
                debug!(batch = %id, "revoke for a batch not held here (finished, declined or unknown) ignored");
            }
        }
    }

    async fn on_timeout(&mut self) {
        let now = Instant::now();
        let timeouts = self.assembler.handle_timeout(now);
        for id in timeouts.orphans_dropped {
            warn!(batch = %id, "inputs dropped: their plan never arrived");
        }
        for expired in timeouts.expired {
            warn!(batch = %expired.plan.batch_id, missing = ?expired.missing(), "batch expired waiting for inputs");
            answer::expired(&self.config.id, expired, self.config.assembly.grace, now)
                .publish(&self.client)
                .await;
        }
    }

    /// Queues a complete batch for the execution thread.
    async fn submit(&mut self, batch: ReadyBatch) {
        self.ready.push_back(batch);
        if !self.hold {
            self.feed_executor().await;
        }
    }

    /// Moves ready batches to the execution thread while it has room.
    async fn feed_executor(&mut self) {
        while let Some(batch) = self.ready.pop_front() {
            let id = batch.plan.batch_id;
            match self.executor.try_submit(batch) {
                Ok(()) => {
                    self.running += 1;
                    self.in_exec.insert(id, false);
                }
                Err(SubmitError::Full(batch)) => {
                    self.ready.push_front(*batch);
                    return;
                }
                Err(SubmitError::Gone(batch)) => {
                    let batch = *batch;
                    error!(batch = %batch.plan.batch_id, "the execution thread is gone; batch answered with an error");
                    let now = Instant::now();
                    let executed = Executed {
                        plan: batch.plan,
                        received: batch.received,
                        items: batch.items,
                        started: now,
                        finished: now,
                        results: Err(crate::backend::BackendError::Failed(
                            "the worker's execution thread has stopped".into(),
                        )),
                        revoked: false,
                    };
                    let a: Answer = answer::executed(&self.config.id, executed);
                    a.publish(&self.client).await;
                }
            }
        }
    }

    async fn publish_hello(&self) {
        if let Err(e) = self
            .client
            .publish(subjects::WORKER_HELLO, encode(&self.hello).into())
            .await
        {
            warn!(error = %e, "could not publish hello");
        }
    }

    async fn publish_heartbeat(&self) {
        let hb = Heartbeat {
            worker_id: self.config.id.clone(),
            instance: self.config.instance,
            state: if self.draining {
                WorkerState::Draining
            } else {
                WorkerState::Ready
            },
            pending_batches: u32::try_from(self.pending()).unwrap_or(u32::MAX),
        };
        if let Err(e) = self
            .client
            .publish(subjects::WORKER_HEARTBEAT, encode(&hb).into())
            .await
        {
            warn!(error = %e, "could not publish heartbeat");
        }
    }
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.config.id)
            .field("pending", &self.pending())
            .field("draining", &self.draining)
            .finish_non_exhaustive()
    }
}
