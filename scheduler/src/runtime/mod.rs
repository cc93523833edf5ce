//! `baton scheduler`: the production shell around the scheduling core.
//!
//! ```text
//!  clients ── baton.infer.<model> ──▶ intake ──▶ Gateway ──Arrive──▶ Dispatcher (core)
//!                                     (shed, then  (holds    ◀─Ship/Reject─┘   ▲
//!                                      decode)     tensors)                    │ Done
//!  workers ◀── plan + inputs ─────────────────────┘                            │
//!  workers ── hello / heartbeat / goodbye ──▶ Registry ──WorkerUp/Down─────────┤
//!  workers ── batch_done ───────────────────────────────────────────────────────┘
//! ```
//!
//! Actors run in one actix `System` on a multi-thread tokio runtime; the
//! dispatcher has an arbiter (thread) of its own so that decoding requests
//! never delays a timer. Requests are taken in by `intake.rs`, which sheds
//! overload before decoding anything (the controller is in `admission.rs`)
//! and answers a shed request `overloaded` there and then; a slow-consumer
//! event from the NATS client is logged and counted — nothing is dropped
//! silently.

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
use baton_common::control::{BatchDone, Goodbye, Heartbeat, WorkerHello};
use baton_common::settings::Settings;
use baton_common::subjects;
use baton_common::wire;
use futures::StreamExt;

use crate::core::CoreConfig;
use admission::AdmissionConfig;
use clock::Clock;
use dispatcher::{Dispatcher, Done, GetStatus, InflightByWorker};
use gateway::{Gateway, HeldCount};
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
    // The dispatcher orders the gateway about and the gateway feeds it arrivals: make the
    // gateway's address first, start the dispatcher with it, then the gateway.
    let gateway_ctx = Context::<Gateway>::new();
    let gateway_addr = gateway_ctx.address();
    let dispatcher = Dispatcher::start_in_arbiter(&Arbiter::new().handle(), move |_| {
        Dispatcher::new(cfg, clock, gateway_addr)
    });
    let gateway = gateway_ctx.run(Gateway::new(
        out.clone(),
        clock,
        dispatcher.clone().recipient(),
        settings.gateway.held_bytes_budget as usize,
    ));
    let dead_after = Duration::from_millis(settings.scheduler.worker_dead_after_ms);
    let registry = Registry::new(out.clone(), dispatcher.clone(), dead_after).start();

    // Control plane.
    let mut hello = nats.subscribe(subjects::WORKER_HELLO).await?;
    let mut beats = nats.subscribe(subjects::WORKER_HEARTBEAT).await?;
    let mut byes = nats.subscribe(subjects::WORKER_GOODBYE).await?;
    let mut dones = nats.subscribe(subjects::BATCH_DONE).await?;
    let reg = registry.clone();
    tokio::spawn(async move {
        while let Some(m) = hello.next().await {
            match wire::decode::<WorkerHello>(&m.payload) {
                Ok(h) => reg.do_send(Hello(h)),
                Err(e) => tracing::warn!("bad worker hello: {e}"),
            }
        }
    });
    let reg = registry.clone();
    tokio::spawn(async move {
        while let Some(m) = beats.next().await {
            if let Ok(b) = wire::decode::<Heartbeat>(&m.payload) {
                reg.do_send(Beat(b));
            }
        }
    });
    let reg = registry.clone();
    tokio::spawn(async move {
        while let Some(m) = byes.next().await {
            if let Ok(g) = wire::decode::<Goodbye>(&m.payload) {
                reg.do_send(Bye(g));
            }
        }
    });
    let disp = dispatcher.clone();
    tokio::spawn(async move {
        while let Some(m) = dones.next().await {
            match wire::decode::<BatchDone>(&m.payload) {
                Ok(d) => disp.do_send(Done {
                    batch: d.batch_id,
                    exec_us: d.exec_us,
                    wait_us: d.wait_us,
                }),
                Err(e) => tracing::warn!("bad batch_done: {e}"),
            }
        }
    });
    // Data plane: the intake drains the subscription (see intake.rs).
    let infer = nats
        .queue_subscribe(subjects::INFER_WILDCARD, subjects::GATEWAY_QUEUE_GROUP.to_string())
        .await?;
    // Status last: a scheduler that answers it is serving.
    let mut status = nats.subscribe(subjects::OPS_STATUS).await?;
    let (disp, reg, gw, st_nats) = (dispatcher.clone(), registry.clone(), gateway.clone(), nats.clone());
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
                s.held_requests = gw.send(HeldCount).await.ok()?;
                s.intake = st_intake.snapshot();
                Some(s)
            }
            .await;
            let body = serde_json::to_vec(&snapshot).unwrap_or_default();
            let _ = st_nats.publish(reply, body.into()).await;
        }
    });

    let intake = Intake {
        nats: nats.clone(),
        clock,
        limits: settings.gateway.clone(),
        admission: AdmissionConfig::default(),
        gateway: gateway.clone().recipient(),
        out: out.clone(),
        stats: intake_stats,
    }
    .spawn(infer);
    tracing::info!(nats = %settings.nats.url, "baton scheduler serving");

    shutdown.await;
    tracing::info!("shutting down: no new requests; waiting for those in flight");
    intake.abort();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if gateway.send(HeldCount).await.unwrap_or(0) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cores_defaults_are_the_settings_defaults() {
        let settings = baton_common::settings::SchedulerSettings::default();
        assert_eq!(core_config(&settings), CoreConfig::default());
    }
}
