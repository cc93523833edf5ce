//! `baton scheduler`: the production shell around the scheduling core.
//!
//! ```text
//!  clients ── baton.infer.<model> ──▶ ingest ──▶ Gateway ──Arrive──▶ Dispatcher (core)
//!                                      (decode,   (holds     ◀─Ship/Reject─┘   ▲
//!                                       validate)  tensors)                    │ Done
//!  workers ◀── plan + inputs ─────────────────────┘                            │
//!  workers ── hello / heartbeat / goodbye ──▶ Registry ──WorkerUp/Down─────────┤
//!  workers ── batch_done ───────────────────────────────────────────────────────┘
//! ```
//!
//! Actors run in one actix `System` on a multi-thread tokio runtime; the
//! dispatcher has an arbiter (thread) of its own so that decoding requests
//! never delays a timer. Every NATS subscription is drained at once into
//! our own bounded queue: when that queue is full a request is answered
//! `overloaded` there and then, and a slow-consumer event from the NATS
//! client is logged and counted — nothing is dropped silently.

pub mod cli;
pub mod clock;
pub mod dispatcher;
pub mod gateway;
pub mod messages;
pub mod outbox;
pub mod registry;
pub mod status;
pub mod telemetry;
pub mod timer;

use std::future::Future;
use std::time::Duration;

use actix::prelude::*;
use anyhow::Result;
use baton_common::control::{BatchDone, Goodbye, Heartbeat, WorkerHello};
use baton_common::ids::ClientRequestId;
use baton_common::settings::Settings;
use baton_common::subjects;
use baton_common::wire::{self, InferRequest, RejectReason};
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::core::{CoreConfig, Time};
use clock::Clock;
use dispatcher::{Dispatcher, Done, GetStatus, InflightByWorker};
use gateway::{rejection, Gateway, HeldCount, Incoming};
use outbox::publisher;
use registry::{Beat, Bye, Hello, ListWorkers, Registry};

/// Requests decoded but not yet taken by the gateway, at most: about a
/// tenth of a second at the highest rate this machine sustains (30k req/s),
/// so a full queue means overload and is answered `overloaded` at once.
const INGEST_QUEUE: usize = 4_096;

/// Connects to NATS with the `[nats]` settings (credentials, TLS) under connection name
/// `name`, waiting while the server comes up (and saying so in the log), and reconnecting
/// forever after. A rejected credential ends it at once with an error naming the settings.
pub async fn connect(settings: &Settings, name: &str) -> Result<async_nats::Client> {
    let nats = baton_common::settings::NatsSettings {
        name: name.to_string(),
        ..settings.nats.clone()
    };
    let client = baton_common::nats::connect(&nats, baton_common::nats::Retry::Forever, |o| {
        o.event_callback(|event| async move {
            match event {
                async_nats::Event::SlowConsumer(sid) => {
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
    // Waiting for NATS must not make the scheduler deaf to SIGTERM.
    let nats = tokio::select! {
        nats = connect(&settings, &settings.nats.name) => nats?,
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
    // Data plane: drain the subscription into our bounded queue at once.
    let mut infer = nats
        .queue_subscribe(subjects::INFER_WILDCARD, subjects::GATEWAY_QUEUE_GROUP.to_string())
        .await?;
    // Status last: a scheduler that answers it is serving.
    let mut status = nats.subscribe(subjects::OPS_STATUS).await?;
    let (disp, reg, gw, st_nats) = (dispatcher.clone(), registry.clone(), gateway.clone(), nats.clone());
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
                Some(s)
            }
            .await;
            let body = serde_json::to_vec(&snapshot).unwrap_or_default();
            let _ = st_nats.publish(reply, body.into()).await;
        }
    });

    let (tx, mut rx) = mpsc::channel::<Incoming>(INGEST_QUEUE);
    let limits = settings.gateway.clone();
    let ingest_out = out.clone();
    let intake = tokio::spawn(async move {
        while let Some(m) = infer.next().await {
            let received = clock.now();
            let Some(reply_to) = m.reply.map(|r| r.to_string()) else {
                metrics::counter!(telemetry::REJECTED, "model" => "unknown", "reason" => "no_reply_subject")
                    .increment(1);
                continue;
            };
            match admit(&m.subject, &m.payload, &limits, received) {
                Ok(mut inc) => {
                    inc.reply_to = reply_to;
                    if let Err(mpsc::error::TrySendError::Full(inc)) = tx.try_send(inc) {
                        metrics::counter!(telemetry::SLOW_CONSUMER, "where" => "ingest").increment(1);
                        let _ = ingest_out.send(rejection(
                            &inc.reply_to,
                            inc.client_id,
                            RejectReason::Overloaded,
                            "the gateway's intake queue is full; retry later".into(),
                        ));
                    }
                }
                Err((id, reason, msg)) => {
                    metrics::counter!(telemetry::REJECTED, "model" => "unknown", "reason" => reason.as_str())
                        .increment(1);
                    let _ = ingest_out.send(rejection(&reply_to, id, reason, msg));
                }
            }
        }
    });
    let gw = gateway.clone();
    tokio::spawn(async move {
        while let Some(inc) = rx.recv().await {
            if gw.send(inc).await.is_err() {
                break;
            }
        }
    });
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

/// Checks one request: subject, size, decoding, tensors, SLO. On failure,
/// the client's id (if readable), the reason and a message saying what to fix.
pub fn admit(
    subject: &str,
    payload: &[u8],
    limits: &baton_common::settings::GatewaySettings,
    received: Time,
) -> std::result::Result<Incoming, (Option<ClientRequestId>, RejectReason, String)> {
    let Some(model) = subjects::model_from_infer_subject(subject) else {
        return Err((
            None,
            RejectReason::BadRequest,
            format!("subject `{subject}` is not baton.infer.<model> with a single-token model name"),
        ));
    };
    if payload.len() as u64 > limits.max_payload_bytes {
        return Err((
            None,
            RejectReason::PayloadTooLarge,
            format!(
                "request body is {} bytes; the limit (gateway.max_payload_bytes) is {}",
                payload.len(),
                limits.max_payload_bytes
            ),
        ));
    }
    let req: InferRequest = wire::decode(payload).map_err(|e| (None, RejectReason::BadRequest, e.to_string()))?;
    if let Err(e) = req.validate() {
        return Err((
            req.id.map(ClientRequestId::from),
            RejectReason::BadRequest,
            e.to_string(),
        ));
    }
    let slo_ms = req.slo_ms.unwrap_or(limits.default_slo_ms);
    Ok(Incoming {
        model: model.to_string(),
        reply_to: String::new(),
        client_id: req.id.map(ClientRequestId::from),
        bytes: payload.len(),
        inputs: req.inputs,
        slo: (slo_ms * 1e6) as Time,
        received,
    })
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
