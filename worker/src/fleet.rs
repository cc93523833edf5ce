//! A fleet: many emulated workers in one process (`baton-worker fleet --count N`), to measure the
//! scheduler with a thousand or ten thousand workers on one machine.
//!
//! Each of them is a real worker — [`runtime::start_on`], the same runtime loop, assembler,
//! answers, heartbeats, rehello, revoke and drain as `baton-worker run` — with its own worker id
//! (`<prefix><index>`), instance id and subscription, so the scheduler sees exactly the traffic
//! that many real workers make, and a change to the protocol reaches the fleet with the runtime.
//! What a fleet shares is what would not fit ten thousand times:
//!
//! - **NATS connections**: one per [`FleetConfig::per_connection`] workers rather than one each;
//! - **threads**: a worker's batches take their profiled latency on a tokio timer
//!   ([`Execution::Timer`]) instead of on an execution thread of its own, so the whole fleet runs
//!   on the tokio runtime's threads;
//! - **the backend**: one [`EmulatedBackend`] (models and profiles) behind an `Arc`.
//!
//! Each worker's memory is bounded by its inbox and pending-batch limits, set lower here than for
//! a real worker ([`FleetConfig::inbox_capacity`], [`FleetConfig::max_pending_batches`]).
//!
//! Start-up staggers the hellos at [`FleetConfig::start_rate`] per second rather than sending
//! them all at once, and spreads the heartbeats evenly over the period: worker `i` of `N` beats at
//! `t0 + i·P/N + k·P`. A shutdown (SIGTERM) drains every worker as `run` does, also one that
//! comes during start-up (the workers not yet started are not started).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Client;
use baton_common::settings::NatsSettings;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::emulated::EmulatedBackend;
use crate::executor::Execution;
use crate::inbox::InboxStats;
use crate::runtime::{self, WorkerConfig, WorkerError};

/// How a fleet runs. [`FleetConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// How many workers.
    pub count: usize,
    /// Worker `i` is named `<id_prefix><i>`, `i` from 0.
    pub id_prefix: String,
    /// How to reach NATS (Baton's `[nats]` settings).
    pub nats: NatsSettings,
    /// Hardware class every worker announces.
    pub hardware: String,
    /// Heartbeat period of every worker (default 250 ms).
    pub heartbeat: Duration,
    /// Workers sharing one NATS connection (default 1,000).
    pub per_connection: usize,
    /// Hellos per second at start-up (default 5,000).
    pub start_rate: f64,
    /// Each worker's inbox (default 256 decoded messages).
    pub inbox_capacity: usize,
    /// Batches each worker holds at once before it answers `overloaded` (default 64).
    pub max_pending_batches: usize,
}

impl FleetConfig {
    pub fn new(nats_url: impl Into<String>, count: usize, id_prefix: impl Into<String>) -> Self {
        FleetConfig {
            count,
            id_prefix: id_prefix.into(),
            nats: NatsSettings {
                url: nats_url.into(),
                ..NatsSettings::default()
            },
            hardware: "cpu".into(),
            heartbeat: Duration::from_millis(250),
            per_connection: 1000,
            start_rate: 5000.0,
            inbox_capacity: 256,
            max_pending_batches: 64,
        }
    }

    /// The id of worker `index`.
    pub fn worker_id(&self, index: usize) -> String {
        format!("{}{index}", self.id_prefix)
    }

    fn connections(&self) -> usize {
        self.count.div_ceil(self.per_connection.max(1))
    }
}

/// The fleet is up: every worker has subscribed and said hello.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetUp {
    pub workers: usize,
    pub connections: usize,
    /// From the first connection attempt to the last hello.
    pub took: Duration,
}

/// How a fleet ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSummary {
    /// Workers that were started (fewer than asked if shutdown came during start-up).
    pub started: usize,
    /// Workers that drained and said goodbye.
    pub drained: usize,
}

/// Runs a fleet of emulated workers serving `backend`'s models until `shutdown` resolves and
/// every worker has drained and said goodbye. Calls `up` once, when all of them have said hello
/// (not at all if shutdown comes first).
pub async fn run(
    config: FleetConfig,
    backend: Arc<EmulatedBackend>,
    shutdown: impl Future<Output = ()>,
    up: impl FnOnce(&FleetUp),
) -> Result<FleetSummary, WorkerError> {
    let t0 = Instant::now();
    let mut shutdown = std::pin::pin!(shutdown.fuse());
    let (stop, stopped) = watch::channel(false);
    let mut workers = JoinSet::new();
    let mut clients = Vec::new();
    let started = tokio::select! {
        started = start(&config, &backend, &stopped, &mut workers, &mut clients) => Some(started?),
        () = &mut shutdown => None,
    };
    match started {
        Some(n) => {
            let summary = FleetUp {
                workers: n,
                connections: clients.len(),
                took: t0.elapsed(),
            };
            up(&summary);
            shutdown.await;
        }
        None => info!(started = workers.len(), "shut down during start-up"),
    }
    let started = workers.len();
    info!(workers = started, "shutting down: draining every worker");
    let _ = stop.send(true);
    let mut drained = 0;
    while let Some(result) = workers.join_next().await {
        if result.is_ok() {
            drained += 1;
        }
    }
    // Each worker flushed its goodbye, but a flush may resolve while the connection's write
    // buffer still holds it, and dropping the last handle of a connection drops that buffer: so
    // before letting go of the connections, wait until the server has read everything on them.
    for client in &clients {
        if tokio::time::timeout(FAREWELL, round_trip(client)).await.is_err() {
            warn!("NATS did not echo the fleet's last message within {FAREWELL:?}; some goodbyes may be lost");
        }
    }
    info!(drained, "every worker drained and said goodbye");
    Ok(FleetSummary { started, drained })
}

/// How long the goodbyes may take to reach the server on the way out.
const FAREWELL: Duration = Duration::from_secs(2);

/// Sends `client` a message of its own and waits for it: the server handles a connection's
/// messages in order, so once it comes back everything sent before it has reached the server.
async fn round_trip(client: &Client) {
    let inbox = client.new_inbox();
    let Ok(mut echo) = client.subscribe(inbox.clone()).await else {
        return;
    };
    if client.publish(inbox, "".into()).await.is_ok() {
        echo.next().await;
    }
}

/// Connects and starts the workers one by one at the configured rate; returns how many.
async fn start(
    config: &FleetConfig,
    backend: &Arc<EmulatedBackend>,
    stopped: &watch::Receiver<bool>,
    workers: &mut JoinSet<()>,
    clients: &mut Vec<Client>,
) -> Result<usize, WorkerError> {
    let stats = Arc::new(InboxStats::default());
    for k in 0..config.connections() {
        let first = k * config.per_connection;
        let last = (first + config.per_connection).min(config.count) - 1;
        let name = format!("{}[{first}-{last}]", config.id_prefix);
        clients.push(runtime::connect(&config.nats, &name, stats.clone()).await?);
    }
    let t0 = Instant::now();
    let gap = Duration::from_secs_f64(1.0 / config.start_rate.max(1e-3));
    let n = config.count;
    for i in 0..n {
        let at = t0 + gap.mul_f64(i as f64);
        tokio::time::sleep_until(at.into()).await;
        let mut worker = WorkerConfig::new(String::new(), config.worker_id(i), config.hardware.clone());
        worker.nats = config.nats.clone();
        worker.heartbeat = config.heartbeat;
        worker.heartbeat_start = Some(heartbeat_start(t0, i, n, config.heartbeat, Instant::now()));
        worker.inbox_capacity = config.inbox_capacity;
        worker.max_pending_batches = config.max_pending_batches;
        let client = clients[i / config.per_connection.max(1)].clone();
        let started = runtime::start_on(client, worker, Execution::Timer(backend.clone())).await?;
        let mut stopped = stopped.clone();
        workers.spawn(started.serve(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }));
    }
    Ok(n)
}

/// Worker `i` of `n` beats at `t0 + i·period/n + k·period`: the first such time after `now`.
fn heartbeat_start(t0: Instant, i: usize, n: usize, period: Duration, now: Instant) -> Instant {
    let phase = t0 + period.mul_f64(i as f64 / n.max(1) as f64);
    if phase > now {
        return phase;
    }
    let behind = now.duration_since(phase).as_nanos();
    let periods = behind / period.as_nanos().max(1) + 1;
    phase + period * u32::try_from(periods).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeats_are_spread_evenly_over_the_period_and_come_after_the_hello() {
        let t0 = Instant::now();
        let p = Duration::from_millis(250);
        // Four workers, all started by t0 + 10 ms: phases 0, 62.5, 125, 187.5 ms.
        let now = t0 + Duration::from_millis(10);
        let starts: Vec<Duration> = (0..4)
            .map(|i| heartbeat_start(t0, i, 4, p, now).duration_since(t0))
            .collect();
        assert_eq!(starts, [250_000, 62_500, 125_000, 187_500].map(Duration::from_micros));
        // Started two and a half periods late: the next tick of its phase.
        let late = t0 + Duration::from_millis(625);
        assert_eq!(
            heartbeat_start(t0, 1, 4, p, late).duration_since(t0),
            Duration::from_micros(812_500)
        );
        // Exactly on its phase: the next one (the hello carried a heartbeat just now).
        assert_eq!(heartbeat_start(t0, 0, 1, p, t0).duration_since(t0), p);
    }

    #[test]
    fn ids_and_connections() {
        let mut c = FleetConfig::new("nats://x", 2500, "fleet-");
        assert_eq!(c.worker_id(0), "fleet-0");
        assert_eq!(c.worker_id(2499), "fleet-2499");
        assert_eq!(c.connections(), 3);
        c.per_connection = 2500;
        assert_eq!(c.connections(), 1);
        c.count = 0;
        assert_eq!(c.connections(), 0);
    }
}
