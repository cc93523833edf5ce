//! `baton bench dispatcher`: the real dispatcher alone, over real NATS, on the wall clock.
//!
//! `baton bench core` measures the scheduling core in virtual time; this measures what is
//! around it too — decoding batched arrivals, the actors, the timers, encoding plans and
//! orders, NATS — with nothing else in the way. It starts a nats-server (unless given one) and
//! `baton scheduler` without its embedded gateway as a child process, then plays everybody
//! else from this one process, at no more cost than the protocol requires:
//!
//! - N emulated workers ([`workers`]): hello, heartbeats, and a `BatchDone` for every plan
//!   when its profiled latency has passed; no inputs, no results.
//! - K emulated gateways ([`gateways`]): open-loop `Arrivals` at the offered rate, heartbeats,
//!   and a [`ledger`] of the orders that come back.
//!
//! A run warms up (1 s), measures (`--duration`), stops offering and drains (up to 2 s, until
//! every request sent was shipped or rejected). Over the measured window it reads the
//! dispatcher's timer lag from its status (before and after), its CPU time from `/proc`, and
//! counts what the gateways and workers saw; a request neither shipped nor rejected after the
//! drain is `unaccounted`. Each run has a fresh dispatcher, fleet and gateways, so that one
//! run's backlog cannot spill into the next.
//!
//! The timer lag alone cannot say whether the dispatcher keeps up: its timer fires only for a
//! batch that waits for its deadline, and at high per-model rates every batch fills up first
//! and is sent at once. So the workers also time every full batch, from its last request
//! leaving its gateway to the plan reaching them: the dispatcher's reaction, timer or not.
//!
//! Without `--rate`, [`search`] finds the highest rate that passes ([`Criteria`]): timer lag
//! p99 ≤ 2 ms and full-batch delay p99 ≤ 10 ms (each over 100 samples at least), nothing
//! unaccounted, duplicated or revoked, at most 1% rejected, and the offered rate really sent
//! (the benchmark itself not the bottleneck).
//!
//! Everything shares the machine: on two cores the dispatcher, nats-server and this process
//! compete, and the result says how much CPU each took.

pub mod cli;
pub mod gateways;
pub mod ledger;
pub mod pacing;
pub mod processes;
pub mod search;
pub mod workers;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use async_nats::Client;
use baton_common::nats::{self as nats_connect, Retry};
use baton_common::profile::Profile;
use baton_common::settings::Settings;
use baton_common::subjects;
use serde::Serialize;
use tokio::runtime::Runtime;
use tokio::sync::watch;

use crate::runtime::status::{LagHistogram, Status};
use gateways::{Gateway, Offer, OfferClock};
use ledger::Counts;
use processes::{NatsServer, Process};
use search::RateSearch;
use workers::{FleetSpec, FleetStats};

/// The latency profile every emulated model has by default: l(b) = 0.05·b + 2 ms up to batches
/// of 64 (5.2 ms), ~12,000 req/s per worker at full batches: far more than the offered rate
/// with a thousand workers.
pub const DEFAULT_PROFILE: &str = "sleep#50,2000,0,0";
pub const DEFAULT_MAX_BATCH: u32 = 64;

/// One benchmark setting (every run of a search shares it).
#[derive(Debug, Clone)]
pub struct DispatcherBench {
    /// The `baton` binary whose `scheduler` subcommand is the dispatcher.
    pub baton: PathBuf,
    /// A running nats-server to use instead of starting one.
    pub nats: Option<String>,
    pub workers: usize,
    pub models: usize,
    pub gateways: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// The longest the drain waits for the last orders.
    pub drain: Duration,
    /// Every request's remaining budget when its gateway sends it.
    pub budget: Duration,
    pub profile: Profile,
    /// Items per `Arrivals` message at most (`gateway.arrival_batch`).
    pub arrival_batch: usize,
    pub seed: u64,
}

impl DispatcherBench {
    /// The defaults of `baton bench dispatcher` for `workers` workers and `models` models.
    pub fn new(baton: PathBuf, workers: usize, models: usize) -> Self {
        DispatcherBench {
            baton,
            nats: None,
            workers,
            models,
            gateways: 2,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(5),
            drain: Duration::from_secs(2),
            budget: Duration::from_millis(100),
            profile: Profile::from_spec(DEFAULT_PROFILE, DEFAULT_MAX_BATCH).expect("a valid spec"),
            arrival_batch: 256,
            seed: 1,
        }
    }

    fn check(&self) -> Result<()> {
        if self.models == 0 || self.workers < self.models {
            bail!(
                "every model needs a worker: --workers ({}) must be at least --models ({}), which must be at least 1",
                self.workers,
                self.models
            );
        }
        if self.gateways == 0 {
            bail!("--gateways must be at least 1");
        }
        if self.duration.is_zero() {
            bail!("--duration must be positive");
        }
        Ok(())
    }
}

/// What a run must show to pass.
#[derive(Debug, Clone, Copy)]
pub struct Criteria {
    /// Timer lag p99 over the measured window, ms at most (when the timer fired at all).
    pub max_lag_ms: f64,
    /// Full-batch delay p99 over the measured window, ms at most: the measure of the
    /// dispatcher's reaction when its timer does not fire, because every batch fills up first.
    pub max_delay_ms: f64,
    /// Rejected requests, as a fraction of those sent, at most.
    pub max_rejected: f64,
}

impl Default for Criteria {
    fn default() -> Self {
        Criteria {
            max_lag_ms: 2.0,
            max_delay_ms: 10.0,
            max_rejected: 0.01,
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunResult {
    /// The rate asked for, req/s.
    pub offered_rps: f64,
    /// The rate really sent during the measured window.
    pub sent_rps: f64,
    /// Requests shipped or rejected per second of the measured window.
    pub achieved_rps: f64,
    /// Whole run (warm-up, window and drain).
    pub sent: u64,
    pub shipped: u64,
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Sent and neither shipped nor rejected after the drain.
    pub unaccounted: u64,
    /// Orders for a request already answered, for one never sent, or for another gateway
    /// instance: all bugs.
    pub duplicates: u64,
    pub unknown_orders: u64,
    pub stray_orders: u64,
    /// Whether the dispatcher answered status at both ends of the window.
    pub status_answered: bool,
    /// The dispatcher's timer lag p99 over the window (the top of its power-of-two bucket),
    /// `None` if its timer never fired (every batch filled up before its deadline came near)
    /// or it did not answer status.
    pub lag_p99_ms: Option<f64>,
    pub lag_max_ms: Option<f64>,
    pub lag_samples: u64,
    /// For full batches, from the last request leaving its gateway to the plan reaching its
    /// worker: p99 (the top of its power-of-two bucket, as the lag) and how many. The dispatcher's
    /// reaction time (plus two NATS hops), whether its timer fires or not.
    pub full_batch_delay_p99_ms: Option<f64>,
    pub full_batches: u64,
    /// How late `Arrivals` messages left, from their first request being due: p99 (bucket top).
    /// A gateway's flush wait, and the offering thread's own lateness on a busy machine.
    pub send_lateness_p99_ms: Option<f64>,
    pub workers: usize,
    pub models: usize,
    pub gateways: usize,
    pub budget_ms: f64,
    pub warmup_s: f64,
    pub duration_s: f64,
    /// How long the drain took.
    pub drain_s: f64,
    /// `Arrivals` messages sent during the window, and items per message.
    pub arrival_messages: u64,
    pub items_per_message: f64,
    /// What the dispatcher counted over the window (its status).
    pub dispatcher_arrivals: u64,
    pub dispatcher_arrival_messages: u64,
    /// The dispatcher's CPU time over the window, per request sent and in cores.
    pub dispatcher_cpu_us_per_req: f64,
    pub dispatcher_cpu_cores: f64,
    /// nats-server's (when this benchmark started it) and this process's.
    pub nats_cpu_cores: Option<f64>,
    pub bench_cpu_cores: f64,
    /// Plans the workers received during the window, and requests per plan.
    pub batches: u64,
    pub mean_batch: f64,
    /// Batches the dispatcher withdrew (it declared a worker dead), and rehellos it asked for.
    pub revoked_batches: u64,
    pub rehellos: u64,
    /// Sent less than 95% of the offered rate: the benchmark, not the dispatcher, was the limit.
    pub bench_limited: bool,
    pub pass: bool,
    /// The dispatcher's log (warnings and errors), kept when the run failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dispatcher_log: Option<String>,
    /// The best run of a search (printed again, last).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub best: bool,
}

impl RunResult {
    /// A one-line human rendering.
    pub fn render(&self) -> String {
        let lag = match self.lag_p99_ms {
            Some(l) => format!("< {l} ms of {}", self.lag_samples),
            None if self.status_answered => "- (never fired)".to_string(),
            None => "unknown (no status)".to_string(),
        };
        let delay = self
            .full_batch_delay_p99_ms
            .map_or("-".to_string(), |d| format!("< {d} ms of {}", self.full_batches));
        let late = self
            .send_lateness_p99_ms
            .map_or("-".to_string(), |d| format!("< {d} ms"));
        let reasons = if self.rejected_by_reason.is_empty() {
            String::new()
        } else {
            format!(" {:?}", self.rejected_by_reason)
        };
        format!(
            "{:>9.0} req/s offered ({:.0} sent, {:.0} answered /s): shipped {}, rejected {}{reasons}, unaccounted {}; \
             timer lag p99 {lag}, full-batch delay p99 {delay} (sent late by {late}); dispatcher {:.2} cores, {:.1} µs/req; {} batches (mean {:.1}); {} arrival messages \
             ({:.1} items each){}{} — {}",
            self.offered_rps,
            self.sent_rps,
            self.achieved_rps,
            self.shipped,
            self.rejected,
            self.unaccounted,
            self.dispatcher_cpu_cores,
            self.dispatcher_cpu_us_per_req,
            self.batches,
            self.mean_batch,
            self.arrival_messages,
            self.items_per_message,
            if self.bench_limited { "; bench-limited" } else { "" },
            if self.duplicates + self.unknown_orders + self.stray_orders + self.revoked_batches > 0 {
                format!(
                    "; {} duplicate, {} unknown, {} stray orders, {} revoked batches",
                    self.duplicates, self.unknown_orders, self.stray_orders, self.revoked_batches
                )
            } else {
                String::new()
            },
            if self.pass { "pass" } else { "FAIL" },
        )
    }
}

impl Criteria {
    /// A p99 counts from this many samples: the p99 of fewer is their maximum, and one hiccup of
    /// a shared machine would decide the run.
    pub const MIN_SAMPLES: u64 = 100;

    /// Whether `r` passes.
    pub fn passes(&self, r: &RunResult) -> bool {
        let within =
            |p99: Option<f64>, samples: u64, max: f64| samples < Self::MIN_SAMPLES || p99.is_some_and(|p| p <= max);
        !r.bench_limited
            && r.unaccounted == 0
            && r.duplicates + r.unknown_orders + r.stray_orders + r.revoked_batches == 0
            && r.status_answered
            && within(r.lag_p99_ms, r.lag_samples, self.max_lag_ms)
            && within(r.full_batch_delay_p99_ms, r.full_batches, self.max_delay_ms)
            && r.rejected as f64 <= self.max_rejected * r.sent as f64
    }
}

/// Everything read at one instant of a run, to subtract.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    at_s: f64,
    counts: Counts,
    messages: u64,
    plans: u64,
    items: u64,
    status: Option<Status>,
    full_batch_delay: LagHistogram,
    send_lateness: LagHistogram,
    dispatcher_cpu_s: f64,
    nats_cpu_s: Option<f64>,
    own_cpu_s: f64,
}

/// The sum of two histograms.
fn add(a: &LagHistogram, b: &LagHistogram) -> LagHistogram {
    let mut sum = a.clone();
    for (s, n) in sum.counts.iter_mut().zip(&b.counts) {
        *s += n;
    }
    sum
}

/// The measured window's numbers from its two ends, and the whole run's counts after the drain.
fn measure(rate: f64, a: &Snapshot, b: &Snapshot, end: &Counts) -> RunResult {
    let secs = (b.at_s - a.at_s).max(1e-9);
    let sent = b.counts.sent - a.counts.sent;
    let messages = b.messages - a.messages;
    let plans = b.plans - a.plans;
    let (lag, from_status) = match (&a.status, &b.status) {
        (Some(sa), Some(sb)) => {
            let lag = sb.timer_lag.since(&sa.timer_lag);
            (
                Some(lag),
                (
                    sb.arrivals_total - sa.arrivals_total,
                    sb.arrival_messages_total - sa.arrival_messages_total,
                ),
            )
        }
        _ => (None, (0, 0)),
    };
    let dispatcher_cpu = b.dispatcher_cpu_s - a.dispatcher_cpu_s;
    let delay = b.full_batch_delay.since(&a.full_batch_delay);
    let late = b.send_lateness.since(&a.send_lateness);
    let sent_rps = sent as f64 / secs;
    RunResult {
        offered_rps: rate,
        sent_rps,
        achieved_rps: (b.counts.answered() - a.counts.answered()) as f64 / secs,
        sent: end.sent,
        shipped: end.shipped,
        rejected: end.rejected,
        unaccounted: end.unaccounted(),
        duplicates: end.duplicates,
        unknown_orders: end.unknown,
        status_answered: lag.is_some(),
        lag_p99_ms: lag.as_ref().and_then(|l| l.quantile_ms(0.99)),
        lag_max_ms: lag.as_ref().and_then(|l| l.quantile_ms(1.0)),
        lag_samples: lag.as_ref().map_or(0, |l| l.samples()),
        full_batch_delay_p99_ms: delay.quantile_ms(0.99),
        full_batches: delay.samples(),
        send_lateness_p99_ms: late.quantile_ms(0.99),
        duration_s: secs,
        arrival_messages: messages,
        items_per_message: sent as f64 / messages.max(1) as f64,
        dispatcher_arrivals: from_status.0,
        dispatcher_arrival_messages: from_status.1,
        dispatcher_cpu_us_per_req: dispatcher_cpu * 1e6 / sent.max(1) as f64,
        dispatcher_cpu_cores: dispatcher_cpu / secs,
        nats_cpu_cores: a.nats_cpu_s.zip(b.nats_cpu_s).map(|(x, y)| (y - x) / secs),
        bench_cpu_cores: (b.own_cpu_s - a.own_cpu_s) / secs,
        batches: plans,
        mean_batch: (b.items - a.items) as f64 / plans.max(1) as f64,
        bench_limited: sent_rps < 0.95 * rate,
        ..RunResult::default()
    }
}

/// A benchmark session: the runtime, the NATS server, and where logs go; runs one rate at a time.
#[derive(Debug)]
pub struct Session {
    bench: DispatcherBench,
    runtime: Runtime,
    nats: Option<NatsServer>,
    url: String,
    scratch: PathBuf,
    runs: usize,
}

impl Session {
    /// Starts the nats-server (unless the setting names one).
    pub fn start(bench: DispatcherBench) -> Result<Self> {
        bench.check()?;
        let scratch = std::env::temp_dir().join(format!("baton-bench-dispatcher-{}", std::process::id()));
        std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
        let (nats, url) = match &bench.nats {
            Some(url) => (None, url.clone()),
            None => {
                let server = NatsServer::start()?;
                let url = server.url.clone();
                (Some(server), url)
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("starting the tokio runtime")?;
        Ok(Session {
            bench,
            runtime,
            nats,
            url,
            scratch,
            runs: 0,
        })
    }

    /// One run at `rate` req/s, judged by `criteria`.
    pub fn run(&mut self, rate: f64, criteria: &Criteria) -> Result<RunResult> {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("the rate must be positive (got {rate})");
        }
        self.runs += 1;
        let log = self.scratch.join(format!("dispatcher-{}.log", self.runs));
        let dispatcher = processes::start_dispatcher(&self.bench.baton, &self.url, &log)?;
        let nats_pid = self.nats.as_ref().map(|n| n.process.pid());
        let result = self
            .runtime
            .block_on(one_run(&self.bench, &self.url, rate, dispatcher, nats_pid));
        let mut r = result.map_err(|e| {
            anyhow!(
                "{e:#}\nthe dispatcher's log ({}) ends:\n{}",
                log.display(),
                processes::log_tail(&log, 20)
            )
        })?;
        r.pass = criteria.passes(&r);
        if r.pass {
            let _ = std::fs::remove_file(&log);
        } else {
            r.dispatcher_log = Some(log.display().to_string());
        }
        Ok(r)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The logs of failed runs stay (their results name them), and so does the directory.
        let _ = std::fs::remove_dir(&self.scratch);
    }
}

/// Connects to the server at `url` with the `[nats]` settings of the environment (credentials).
async fn connect(url: &str, name: &str) -> Result<Client> {
    let mut settings = Settings::load(None)?.nats;
    settings.url = url.to_string();
    settings.name = name.to_string();
    Ok(nats_connect::connect(&settings, Retry::For(Duration::from_secs(10)), |o| o).await?)
}

/// The dispatcher's status, `None` if it does not answer within `patience`.
async fn status(ops: &Client, patience: Duration) -> Option<Status> {
    let reply = tokio::time::timeout(patience, ops.request(subjects::OPS_STATUS, "".into()))
        .await
        .ok()?
        .ok()?;
    serde_json::from_slice::<Option<Status>>(&reply.payload).ok().flatten()
}

/// Stops the tasks of a run when dropped (also on an early error).
struct StopOnDrop(watch::Sender<bool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(true);
    }
}

async fn one_run(
    b: &DispatcherBench,
    url: &str,
    rate: f64,
    mut dispatcher: Process,
    nats_pid: Option<u32>,
) -> Result<RunResult> {
    let ops = connect(url, "bench-dispatcher-ops").await?;
    let start = Instant::now();
    while status(&ops, Duration::from_millis(500)).await.is_none() {
        dispatcher.check_running()?;
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the dispatcher did not answer {} within 30 s", subjects::OPS_STATUS);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (stop_tx, stop) = watch::channel(false);
    let _stop = StopOnDrop(stop_tx);
    let models: Arc<[String]> = (0..b.models).map(|i| format!("bench-m{i}")).collect();
    let fleet_stats = Arc::new(FleetStats::default());
    let emulated: Vec<Arc<Gateway>> = (0..b.gateways).map(|i| Arc::new(Gateway::new(i))).collect();
    let fleet = FleetSpec {
        count: b.workers,
        models: models.to_vec(),
        profile: b.profile.clone(),
        heartbeat: Duration::from_millis(250),
        gateways: emulated.clone(),
    };
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(workers::run(
        connect(url, "bench-dispatcher-workers").await?,
        fleet,
        fleet_stats.clone(),
        stop.clone(),
    ));
    let registering = Instant::now();
    let patience = Duration::from_secs(30) + Duration::from_millis(b.workers as u64 * 2);
    loop {
        // The counts cover every worker, also when the list is cut to fit in one NATS message.
        let ready = status(&ops, Duration::from_secs(2))
            .await
            .map_or(0, |s| s.worker_counts.ready);
        if ready >= b.workers {
            break;
        }
        dispatcher.check_running()?;
        if let Some(Ok(Err(e))) = futures::FutureExt::now_or_never(tasks.join_next()).flatten() {
            return Err(e.context("the emulated workers stopped"));
        }
        if registering.elapsed() > patience {
            bail!("only {ready} of {} workers registered within {patience:?}", b.workers);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut gws = Vec::new();
    for g in emulated {
        let client = connect(url, &format!("bench-dispatcher-{}", g.name)).await?;
        // Subscribed before the first arrival leaves on the same connection.
        let orders = client.subscribe(subjects::gateway_orders(&g.name)).await?;
        client.flush().await?;
        tasks.spawn(gateways::take_orders(orders, g.clone(), stop.clone()));
        gws.push((g, client));
    }
    tasks.spawn(gateways::beat(gws.clone(), Duration::from_millis(250), stop.clone()));

    let offer = Offer {
        rate,
        models,
        budget_us: b.budget.as_micros() as u64,
        max_items: b.arrival_batch,
        seed: b.seed,
    };
    let offering = StopFlag(Arc::new(AtomicBool::new(false)));
    let t0 = Instant::now();
    let clock = OfferClock {
        t0,
        rate,
        gateways: b.gateways,
    };
    let thread = {
        let (handle, gws, stop) = (tokio::runtime::Handle::current(), gws.clone(), offering.0.clone());
        std::thread::Builder::new()
            .name("bench-offer".into())
            .spawn(move || gateways::offer(&handle, &gws, &offer, clock, &stop))?
    };
    let probe = Probe {
        ops: &ops,
        t0,
        gateways: &gws,
        fleet: &fleet_stats,
        dispatcher: dispatcher.pid(),
        nats: nats_pid,
    };
    tokio::time::sleep_until((t0 + b.warmup).into()).await;
    check_tasks(&mut tasks)?;
    let a = probe.snapshot().await;
    tokio::time::sleep_until((t0 + b.warmup + b.duration).into()).await;
    let z = probe.snapshot().await;
    offering.0.store(true, Relaxed);
    tokio::task::spawn_blocking(move || thread.join())
        .await?
        .map_err(|_| anyhow!("the offering thread panicked"))?
        .context("offering arrivals")?;

    let drained = Instant::now();
    let total = |gws: &[(Arc<Gateway>, Client)]| {
        let mut c = Counts::default();
        for (g, _) in gws {
            c.add(&g.ledger().counts());
        }
        c
    };
    while total(&gws).unaccounted() > 0 && drained.elapsed() < b.drain {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain_s = drained.elapsed().as_secs_f64();
    check_tasks(&mut tasks)?;
    dispatcher.check_running()?;

    let end = total(&gws);
    let mut r = measure(rate, &a, &z, &end);
    for (g, _) in &gws {
        for (reason, n) in g.ledger().rejected_by_reason() {
            *r.rejected_by_reason.entry(reason.to_string()).or_default() += n;
        }
        r.stray_orders += g.stray_orders.load(Relaxed);
    }
    r.workers = b.workers;
    r.models = b.models;
    r.gateways = b.gateways;
    r.budget_ms = b.budget.as_secs_f64() * 1e3;
    r.warmup_s = b.warmup.as_secs_f64();
    r.drain_s = drain_s;
    r.revoked_batches = fleet_stats.revoked.load(Relaxed);
    r.rehellos = fleet_stats.rehellos.load(Relaxed);
    Ok(r)
}

/// Sets its flag when dropped: the offering thread stops even if the run ends in an error.
struct StopFlag(Arc<AtomicBool>);

impl Drop for StopFlag {
    fn drop(&mut self) {
        self.0.store(true, Relaxed);
    }
}

/// An error if a task of the run has ended: they only end when told to, or on an error.
fn check_tasks(tasks: &mut tokio::task::JoinSet<Result<()>>) -> Result<()> {
    match tasks.try_join_next() {
        None => Ok(()),
        Some(Ok(Ok(()))) => bail!("an emulated worker or gateway task ended early"),
        Some(Ok(Err(e))) => Err(e.context("an emulated worker or gateway failed")),
        Some(Err(e)) => Err(anyhow!("an emulated worker or gateway task panicked: {e}")),
    }
}

/// What a snapshot reads.
struct Probe<'a> {
    ops: &'a Client,
    t0: Instant,
    gateways: &'a [(Arc<Gateway>, Client)],
    fleet: &'a FleetStats,
    dispatcher: u32,
    nats: Option<u32>,
}

impl Probe<'_> {
    /// The counters and CPU times now, then the dispatcher's status (which takes a moment).
    async fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot {
            at_s: self.t0.elapsed().as_secs_f64(),
            plans: self.fleet.plans.load(Relaxed),
            items: self.fleet.items.load(Relaxed),
            full_batch_delay: self.fleet.full_batch_delay(),
            dispatcher_cpu_s: processes::cpu_seconds(self.dispatcher).unwrap_or(0.0),
            nats_cpu_s: self.nats.and_then(processes::cpu_seconds),
            own_cpu_s: processes::own_cpu_seconds().unwrap_or(0.0),
            ..Snapshot::default()
        };
        for (g, _) in self.gateways {
            s.counts.add(&g.ledger().counts());
            s.messages += g.messages.load(Relaxed);
            s.send_lateness = add(&s.send_lateness, &g.lateness());
        }
        s.status = status(self.ops, Duration::from_secs(3)).await;
        s
    }
}

/// Searches the highest rate that passes `criteria` ([`RateSearch`] from `start` req/s, up to
/// `max_rate`, bisecting `bisect_steps` times); calls `on_run` after each run. Returns the
/// best run, if any passed.
pub fn search(
    session: &mut Session,
    criteria: &Criteria,
    start: f64,
    max_rate: f64,
    bisect_steps: usize,
    mut on_run: impl FnMut(&RunResult),
) -> Result<Option<RunResult>> {
    let mut s = RateSearch::new(start, max_rate, bisect_steps);
    let mut best: Option<RunResult> = None;
    while let Some(rate) = s.next() {
        let r = session.run(rate, criteria)?;
        on_run(&r);
        s.record(rate, r.pass);
        if r.pass && best.as_ref().is_none_or(|b| b.offered_rps < r.offered_rps) {
            best = Some(r);
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_measured_over_its_window() {
        let status = |arrivals: u64, lags_us: &[u64]| {
            let mut s = Status {
                arrivals_total: arrivals,
                arrival_messages_total: arrivals / 10,
                ..Status::default()
            };
            for &l in lags_us {
                s.timer_lag.record(l);
            }
            s
        };
        let counts = |sent, shipped, rejected| Counts {
            sent,
            shipped,
            rejected,
            ..Counts::default()
        };
        // The window runs from 1 s to 3 s; 200,000 requests are sent in it at 100,000/s.
        let a = Snapshot {
            at_s: 1.0,
            counts: counts(100_000, 99_000, 0),
            messages: 10_000,
            plans: 1_000,
            items: 99_000,
            status: Some(status(100_000, &[10; 100])),
            full_batch_delay: LagHistogram::default(),
            send_lateness: LagHistogram::default(),
            dispatcher_cpu_s: 0.5,
            nats_cpu_s: Some(0.25),
            own_cpu_s: 0.5,
        };
        let z = Snapshot {
            at_s: 3.0,
            counts: counts(300_000, 297_000, 1_000),
            messages: 30_000,
            plans: 9_000,
            items: 299_000,
            // One of the window's 100 wake-ups took 1.5 ms: p99 is still the top of [8, 16) µs.
            status: Some(status(299_000, &[&[10; 100][..], &[10; 99][..], &[1500]].concat())),
            full_batch_delay: {
                let mut h = LagHistogram::default();
                (0..100).for_each(|_| h.record(700));
                h
            },
            send_lateness: add(&LagHistogram::default(), &{
                let mut h = LagHistogram::default();
                h.record(100);
                h
            }),
            dispatcher_cpu_s: 2.5,
            nats_cpu_s: Some(0.75),
            own_cpu_s: 1.0,
        };
        let end = counts(300_000, 299_000, 1_000);
        let r = measure(100_000.0, &a, &z, &end);
        assert_eq!(r.sent_rps, 100_000.0);
        assert_eq!(r.achieved_rps, 99_500.0); // (297,000 + 1,000 − 99,000) / 2 s
        assert_eq!(
            (r.sent, r.shipped, r.rejected, r.unaccounted),
            (300_000, 299_000, 1_000, 0)
        );
        assert_eq!(r.lag_samples, 100);
        assert_eq!((r.lag_p99_ms, r.lag_max_ms), (Some(0.016), Some(2.048)));
        assert_eq!((r.full_batch_delay_p99_ms, r.full_batches), (Some(1.024), 100));
        assert_eq!(r.send_lateness_p99_ms, Some(0.128));
        assert_eq!(r.dispatcher_arrivals, 199_000);
        assert_eq!(r.dispatcher_arrival_messages, 19_900);
        assert_eq!((r.arrival_messages, r.items_per_message), (20_000, 10.0));
        assert_eq!(r.dispatcher_cpu_us_per_req, 10.0); // 2 s of CPU for 200,000 requests
        assert_eq!(r.dispatcher_cpu_cores, 1.0);
        assert_eq!(r.nats_cpu_cores, Some(0.25));
        assert_eq!(r.bench_cpu_cores, 0.25);
        assert_eq!((r.batches, r.mean_batch), (8_000, 25.0));
        assert!(!r.bench_limited);
        assert!(Criteria::default().passes(&r));

        // One request short, a slow timer, too many rejections, or too little sent: each fails.
        let fails = |f: &dyn Fn(&mut RunResult)| {
            let mut bad = r.clone();
            f(&mut bad);
            !Criteria::default().passes(&bad)
        };
        assert!(fails(&|r| r.unaccounted = 1));
        assert!(fails(&|r| r.lag_p99_ms = Some(2.048)));
        assert!(fails(&|r| r.full_batch_delay_p99_ms = Some(16.384)));
        assert!(fails(&|r| r.status_answered = false));
        assert!(fails(&|r| r.rejected = 3_001));
        assert!(fails(&|r| r.duplicates = 1));
        assert!(fails(&|r| r.revoked_batches = 1));
        // A timer that never fired is no failure (every batch filled up before its deadline), nor
        // is a slow one in fewer than 100 wake-ups.
        let mut no_timer = r.clone();
        (no_timer.lag_p99_ms, no_timer.lag_samples) = (None, 0);
        assert!(Criteria::default().passes(&no_timer));
        let mut few = r.clone();
        (few.lag_p99_ms, few.lag_samples) = (Some(32.768), 99);
        assert!(Criteria::default().passes(&few));
        assert!(fails(&|r| r.full_batch_delay_p99_ms = None));
        let short = measure(110_000.0, &a, &z, &end);
        assert!(short.bench_limited); // 100,000/s sent of 110,000 asked
        assert!(!Criteria::default().passes(&short));
    }
}
