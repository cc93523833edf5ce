//! `baton scheduler`: the production shell around the scheduling core.
//!
//! `baton scheduler` is the dispatcher (control plane) and `baton gateway` the data plane;
//! for one laptop, `baton scheduler` also runs a gateway in its process
//! (`scheduler.embedded_gateway`, on by default), which still talks to the dispatcher over NATS.
//!
//! ```text
//!  clients ─ baton.infer.<model> ─▶ intake ─▶ Gateway ──Arrivals (metadata)──▶ Dispatcher (core)
//!     ▲                          (shed, then   (holds    ◀──GatewayOrders──────┘ │ plans   ▲
//!     │                           decode)      tensors)──BatchInputs──▶ worker ◀─┘         │
//!     └──────── reply ──────────────────────── Gateway ◀──BatchResults── worker ─BatchDone─┤
//!  workers ── hello / heartbeat / goodbye ──▶ Registry ──WorkerUp/Down────────────────────┘
//! ```
//!
//! Actors run in one actix `System` on a multi-thread tokio runtime; the dispatcher has an
//! arbiter (thread) of its own so that decoding requests never delays a timer. Every NATS
//! subscription is drained by a task that waits for room in its actor's bounded mailbox
//! ([`pump`]). Requests are taken in by `intake.rs`, which sheds overload before decoding
//! anything (the controller is in `admission.rs`) and answers a shed request `overloaded` there
//! and then; a slow-consumer event from the NATS client is logged and counted — nothing is
//! dropped silently.

pub mod admission;
pub mod cli;
pub mod clock;
pub mod dispatcher;
pub mod gateway;
pub mod intake;
pub mod messages;
pub mod outbox;
pub mod registry;
pub mod status;
pub mod telemetry;
pub mod timer;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use anyhow::Result;
use baton_common::control::BatchDone;
use baton_common::ids::GatewayName;
use baton_common::settings::Settings;
use baton_common::subjects;
use baton_common::wire;
use futures::StreamExt;

use crate::core::CoreConfig;
use admission::AdmissionConfig;
use clock::Clock;
use dispatcher::{ArrivalBatch, Dispatcher, Done, GatewayAlive, GetStatus, InflightByWorker};
use gateway::{Gateway, GetState, Leaving, Orders, Results};
use intake::{Intake, IntakeStats};
use outbox::publisher;
use registry::{Beat, Bye, Hello, ListWorkers, Registry};

/// Connects to NATS with the `[nats]` settings (credentials, TLS) under connection name
/// `name`, waiting while the server comes up (and saying so in the log), and reconnecting
/// forever after. A rejected credential ends it at once with an error naming the settings.
/// Slow-consumer events (messages the client dropped) are logged and counted in `slow_consumer`.
pub async fn connect(settings: &Settings, name: &str, slow_consumer: Arc<IntakeStats>) -> Result<async_nats::Client> {
    let nats = baton_common::settings::NatsSettings {
        name: name.to_string(),
        ..settings.nats.clone()
    };
    let client = baton_common::nats::connect(&nats, baton_common::nats::Retry::Forever, |o| {
        let stats = slow_consumer.clone();
        o.subscription_capacity(intake::SUBSCRIPTION_CAPACITY)
            .event_callback(move |event| {
                let stats = stats.clone();
                async move {
                    match event {
                        async_nats::Event::SlowConsumer(sid) => {
                            stats.slow_consumer.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            metrics::counter!(telemetry::SLOW_CONSUMER, "where" => "nats").increment(1);
                            tracing::warn!(
                                sid,
                                "NATS slow consumer: the client dropped messages for a subscription"
                            );
                        }
                        async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
                        async_nats::Event::Connected => tracing::info!("connected to NATS"),
                        other => tracing::warn!("NATS: {other}"),
                    }
                }
            })
    })
    .await?;
    Ok(client)
}

/// The core's knobs from the `[scheduler]` settings (microseconds and milliseconds there,
/// nanoseconds in the core).
pub fn core_config(s: &baton_common::settings::SchedulerSettings) -> CoreConfig {
    let us = |v: u64| v as crate::core::Time * crate::core::US;
    let ms = |v: u64| v as crate::core::Time * crate::core::MS;
    CoreConfig {
        deltas: crate::core::Deltas {
            ctrl: us(s.delta_ctrl_us),
            data: us(s.delta_data_us),
            resp: us(s.delta_resp_us),
            epsilon: us(s.epsilon_us),
        },
        drop_policy: s.drop_policy,
        condition: s.condition,
        gpu_choice: s.gpu_choice,
        rate_bucket: ms(s.rate_bucket_ms),
        rate_window: ms(s.rate_window_ms),
        profile_ewma: s.profile_ewma,
    }
}

/// Hands `m` to an actor, waiting while its mailbox is full (so the queue in front of it stays
/// bounded); `false` once the actor is gone.
async fn forward<M>(to: &Recipient<M>, m: M) -> bool
where
    M: Message + Send + 'static,
    M::Result: Send,
{
    match to.try_send(m) {
        Ok(()) => true,
        Err(SendError::Full(m)) => to.send(m).await.is_ok(),
        Err(SendError::Closed(_)) => false,
    }
}

/// Decodes every message of `sub` as `T` and hands it to `to` as `wrap(T)`, in order; a
/// message that does not decode is logged (`what` names it) and dropped.
fn pump<T, M>(mut sub: async_nats::Subscriber, what: &'static str, to: Recipient<M>, wrap: fn(T) -> M)
where
    T: serde::de::DeserializeOwned + Send + 'static,
    M: Message + Send + 'static,
    M::Result: Send,
{
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            match wire::decode::<T>(&m.payload) {
                Ok(t) => {
                    if !forward(&to, wrap(t)).await {
                        break;
                    }
                }
                Err(e) => tracing::warn!("bad {what}: {e}"),
            }
        }
    });
}

/// This machine's name, for default process ids.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && subjects::validate_token(h).is_ok())
        .unwrap_or_else(|| "localhost".to_string())
}

/// A running gateway: its actor, its intake task and its control connection.
#[derive(Debug)]
pub struct GatewayHandle {
    pub addr: Addr<Gateway>,
    pub intake: tokio::task::JoinHandle<()>,
    /// The connection orders, results, inputs and replies travel on (the intake has its own).
    pub control: async_nats::Client,
}

impl GatewayHandle {
    /// Stops taking requests and waits (at most `within`) until every held request is answered.
    pub async fn drain(&self, within: Duration) {
        self.intake.abort();
        let _ = self.addr.send(Leaving).await;
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            match self.addr.send(GetState).await {
                Ok(s) if s.held_requests > 0 => tokio::time::sleep(Duration::from_millis(20)).await,
                _ => break,
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.control.flush()).await;
    }
}

/// Starts a gateway named `name`: its actor, its subscriptions (orders and results addressed to
/// it, `baton.ops.gateway_status`) on a connection of its own, and the intake on
/// `baton.infer.>` on `nats`, which should carry nothing else.
pub async fn start_gateway(
    settings: &Settings,
    nats: async_nats::Client,
    clock: Clock,
    stats: Arc<IntakeStats>,
    name: GatewayName,
) -> Result<GatewayHandle> {
    subjects::validate_token(name.as_str()).map_err(|e| anyhow::anyhow!("gateway id: {e}"))?;
    // A connection of its own for everything but the intake: nats-server writes to a connection
    // in order, so on the intake's connection orders and results would queue behind every
    // request a flood of clients has sent.
    let control = connect(
        settings,
        &format!("{}-gateway-{name}", settings.nats.name),
        stats.clone(),
    )
    .await?;
    let max_payload = control.server_info().max_payload;
    let out = publisher(control.clone());
    let addr = Gateway::new(name.clone(), out.clone(), clock, settings.gateway.clone(), max_payload).start();
    pump(
        control.subscribe(subjects::gateway_orders(&name)).await?,
        "gateway orders",
        addr.clone().recipient(),
        Orders,
    );
    pump(
        control.subscribe(subjects::gateway_results(&name)).await?,
        "batch results",
        addr.clone().recipient(),
        Results,
    );
    let mut status = control.subscribe(subjects::OPS_GATEWAY_STATUS).await?;
    let (gw, st_nats) = (addr.clone(), control.clone());
    tokio::spawn(async move {
        while let Some(m) = status.next().await {
            let Some(reply) = m.reply else { continue };
            let Ok(state) = gw.send(GetState).await else { break };
            let _ = st_nats
                .publish(reply, serde_json::to_vec(&state).unwrap_or_default().into())
                .await;
        }
    });
    let infer = nats
        .queue_subscribe(subjects::INFER_WILDCARD, subjects::GATEWAY_QUEUE_GROUP.to_string())
        .await?;
    let intake = Intake {
        nats: nats.clone(),
        clock,
        limits: settings.gateway.clone(),
        admission: AdmissionConfig::default(),
        gateway: addr.clone(),
        out,
        stats: stats.clone(),
    }
    .spawn(infer);
    tracing::info!(gateway = %name, max_payload, "gateway serving");
    Ok(GatewayHandle { addr, intake, control })
}

/// Runs a gateway process (`baton gateway`) until `shutdown` resolves. Must be called inside an
/// actix `System`.
pub async fn serve_gateway(settings: Settings, name: GatewayName, shutdown: impl Future<Output = ()>) -> Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    let stats = Arc::new(IntakeStats::default());
    let nats = tokio::select! {
        nats = connect(&settings, &settings.nats.name, stats.clone()) => nats?,
        () = &mut shutdown => return Ok(()),
    };
    let gateway = start_gateway(&settings, nats.clone(), Clock::new(), stats, name).await?;
    shutdown.await;
    tracing::info!("shutting down: no new requests; waiting for those held");
    gateway.drain(Duration::from_secs(5)).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), nats.flush()).await;
    Ok(())
}

/// Runs the scheduler until `shutdown` resolves. Must be called inside an
/// actix `System` (see [`run`]).
pub async fn serve(settings: Settings, shutdown: impl Future<Output = ()>) -> Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    let intake_stats = Arc::new(IntakeStats::default());
    // Waiting for NATS must not make the scheduler deaf to SIGTERM.
    let nats = tokio::select! {
        nats = connect(&settings, &settings.nats.name, intake_stats.clone()) => nats?,
        () = &mut shutdown => {
            tracing::info!("shut down before NATS answered");
            return Ok(());
        }
    };
    let clock = Clock::new();
    let out = publisher(nats.clone());
    let cfg = core_config(&settings.scheduler);
    let gateway_dead_after = Duration::from_millis(settings.scheduler.gateway_dead_after_ms);
    let dispatcher = Dispatcher::start_in_arbiter(&Arbiter::new().handle(), {
        let out = out.clone();
        move |_| Dispatcher::new(cfg, clock, out, gateway_dead_after)
    });
    let dead_after = Duration::from_millis(settings.scheduler.worker_dead_after_ms);
    let registry = Registry::new(out.clone(), dispatcher.clone(), dead_after).start();

    // Control plane: every subscription is drained into an actor's bounded mailbox.
    pump(
        nats.subscribe(subjects::WORKER_HELLO).await?,
        "worker hello",
        registry.clone().recipient(),
        Hello,
    );
    pump(
        nats.subscribe(subjects::WORKER_HEARTBEAT).await?,
        "heartbeat",
        registry.clone().recipient(),
        Beat,
    );
    pump(
        nats.subscribe(subjects::WORKER_GOODBYE).await?,
        "goodbye",
        registry.clone().recipient(),
        Bye,
    );
    pump(
        nats.subscribe(subjects::BATCH_DONE).await?,
        "batch_done",
        dispatcher.clone().recipient(),
        |d: BatchDone| Done {
            batch: d.batch_id,
            exec_us: d.exec_us,
            wait_us: d.wait_us,
        },
    );
    pump(
        nats.subscribe(subjects::ARRIVALS).await?,
        "arrivals",
        dispatcher.clone().recipient(),
        ArrivalBatch,
    );
    pump(
        nats.subscribe(subjects::GATEWAY_HEARTBEAT).await?,
        "gateway heartbeat",
        dispatcher.clone().recipient(),
        GatewayAlive,
    );
    // The one-laptop set-up: a gateway in this process, talking to the dispatcher over NATS.
    let gateway = if settings.scheduler.embedded_gateway {
        let name = GatewayName::new(format!("{}-{}", host_name(), std::process::id()));
        // Not the dispatcher's connection: a flood of requests must not delay its control messages.
        let intake = connect(
            &settings,
            &format!("{}-intake", settings.nats.name),
            intake_stats.clone(),
        )
        .await?;
        Some(start_gateway(&settings, intake, clock, intake_stats.clone(), name).await?)
    } else {
        None
    };
    // Status last: a scheduler that answers it is serving.
    let mut status = nats.subscribe(subjects::OPS_STATUS).await?;
    let (disp, reg, st_nats) = (dispatcher.clone(), registry.clone(), nats.clone());
    let st_intake = intake_stats.clone();
    tokio::spawn(async move {
        while let Some(m) = status.next().await {
            let Some(reply) = m.reply else { continue };
            let snapshot = async {
                let mut s = disp.send(GetStatus).await.ok()?;
                let inflight = disp.send(InflightByWorker).await.ok()?;
                s.workers = reg.send(ListWorkers).await.ok()?;
                for w in &mut s.workers {
                    w.inflight_batches = inflight.get(&w.id).copied().unwrap_or(0);
                }
                s.intake = st_intake.snapshot();
                Some(s)
            }
            .await;
            let body = status::Status::reply(snapshot, st_nats.server_info().max_payload);
            let _ = st_nats.publish(reply, body.into()).await;
        }
    });
    tracing::info!(nats = %settings.nats.url, embedded_gateway = gateway.is_some(), "baton scheduler serving");

    shutdown.await;
    tracing::info!("shutting down: no new requests; waiting for those in flight");
    if let Some(g) = &gateway {
        g.drain(Duration::from_secs(5)).await;
    }
    // Bounded: NATS may be going away too (Ctrl-C reaches every process at once).
    let _ = tokio::time::timeout(Duration::from_secs(2), nats.flush()).await;
    Ok(())
}

/// Waits for SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}

/// Runs the scheduler in its own actix system on a multi-thread tokio
/// runtime until SIGINT/SIGTERM.
pub fn run(settings: Settings) -> Result<()> {
    let system = actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    });
    system.block_on(async move {
        if let Err(e) = telemetry::install(&settings.metrics.listen) {
            tracing::warn!("metrics endpoint disabled: {e:#}");
        }
        serve(settings, shutdown_signal()).await
    })
}

/// Runs a gateway process in its own actix system until SIGINT/SIGTERM. Its metrics are
/// served on `metrics.listen` like the scheduler's (give each process its own port).
pub fn run_gateway(settings: Settings, name: GatewayName) -> Result<()> {
    let system = actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    });
    system.block_on(async move {
        if let Err(e) = telemetry::install(&settings.metrics.listen) {
            tracing::warn!("metrics endpoint disabled: {e:#}");
        }
        serve_gateway(settings, name, shutdown_signal()).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cores_defaults_are_the_settings_defaults() {
        let settings = baton_common::settings::SchedulerSettings::default();
        assert_eq!(core_config(&settings), CoreConfig::default());
    }
}
