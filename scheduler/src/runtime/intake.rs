//! The intake: drains the `baton.infer.>` subscription, sheds overload *before decoding*, and
//! decodes and validates only what it admitted, for the gateway.
//!
//! ```text
//!  NATS sub ──▶ intake task ──admit──▶ bounded queue ──▶ decode task ──batches of ≤ 64──▶ gateway
//!                   │ shed: pre-encoded `overloaded` reply, published at once
//! ```
//!
//! The intake task does the least it can per message, so that it keeps up with the
//! subscription at any rate the machine can deliver and the NATS client never has to drop a
//! message for a slow consumer (a dropped request is one that is never answered): read the
//! reply subject, ask the [`Admission`] controller, then either move the undecoded message into
//! the queue or publish the one `overloaded` reply encoded at start-up. A shed request is not
//! decoded, so its reply's `id` is `""` (docs/protocol.md §4): clients match replies by inbox.
//!
//! Every queue on this path is bounded: the subscription's channel (`SUBSCRIPTION_CAPACITY`,
//! and its overflows are logged and counted), the intake queue (the controller's bound, at most
//! `AdmissionConfig::max_queue`), and the gateway's actix mailbox, which holds at most one
//! batch from the decode task (below), so a slow gateway backs the intake queue up and the
//! controller sees it.
//!
//! The decode task hands the gateway what it has decoded, up to 64 requests at a time, and
//! waits for the gateway to take them before decoding more: the gateway's mailbox holds at most
//! one such batch, so orders and results never queue behind a flood of new requests. When the
//! intake queue is empty it asks the gateway to flush the arrivals it has gathered, so
//! batching arrivals for the dispatcher adds no latency when the gateway is not busy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use async_nats::Subject;
use baton_common::ids::ClientRequestId;
use baton_common::settings::GatewaySettings;
use baton_common::subjects;
use baton_common::wire::{self, InferReply, InferRequest, RejectReason};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::admission::{Admission, AdmissionConfig, Verdict};
use super::clock::Clock;
use super::gateway::{rejection, Gateway, Incoming, IncomingBatch};
use super::outbox::Outbox;
use super::telemetry;
use crate::core::Time;

/// Messages the NATS client buffers for one subscription before it drops them as a slow
/// consumer: about a second at the highest rate the loadgen reaches on two cores (~130k req/s).
/// The intake drains far faster than it fills; this only absorbs scheduling hiccups.
pub const SUBSCRIPTION_CAPACITY: usize = 1 << 17;

/// What the intake did, for `baton status` and the metrics.
#[derive(Debug, Default)]
pub struct IntakeStats {
    pub admitted: AtomicU64,
    pub shed: AtomicU64,
    /// Requests without a reply subject (they cannot be answered).
    pub unanswerable: AtomicU64,
    /// NATS slow-consumer events on this connection (messages the client dropped).
    pub slow_consumer: AtomicU64,
    /// The controller's queue bound and measured throughput (req/s), refreshed per interval.
    pub limit: AtomicU64,
    pub throughput_rps: AtomicU64,
}

/// The intake's part of the status snapshot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IntakeStatus {
    pub admitted: u64,
    pub shed: u64,
    pub unanswerable: u64,
    pub slow_consumer_events: u64,
    pub queue_limit: u64,
    pub throughput_rps: u64,
}

impl IntakeStats {
    pub fn snapshot(&self) -> IntakeStatus {
        IntakeStatus {
            admitted: self.admitted.load(Ordering::Relaxed),
            shed: self.shed.load(Ordering::Relaxed),
            unanswerable: self.unanswerable.load(Ordering::Relaxed),
            slow_consumer_events: self.slow_consumer.load(Ordering::Relaxed),
            queue_limit: self.limit.load(Ordering::Relaxed),
            throughput_rps: self.throughput_rps.load(Ordering::Relaxed),
        }
    }
}

/// A request taken in, not yet decoded.
struct Raw {
    subject: Subject,
    reply_to: Subject,
    payload: Bytes,
    received: Time,
}

/// What the intake needs from its process.
#[derive(Debug)]
pub struct Intake {
    pub nats: async_nats::Client,
    pub clock: Clock,
    pub limits: GatewaySettings,
    pub admission: AdmissionConfig,
    pub gateway: Addr<Gateway>,
    /// For rejections of admitted requests that fail validation.
    pub out: Outbox,
    pub stats: Arc<IntakeStats>,
}

impl Intake {
    /// Starts the intake and decode tasks on `infer`. Aborting the returned handle stops taking
    /// requests; the decode task then finishes what was admitted and ends.
    pub fn spawn(self, mut infer: async_nats::Subscriber) -> JoinHandle<()> {
        let (tx, rx) = mpsc::channel::<Raw>(self.admission.max_queue);
        let Intake {
            nats,
            clock,
            limits,
            admission,
            gateway,
            out,
            stats,
        } = self;
        tokio::spawn(decode_loop(rx, limits, gateway, out));
        tokio::spawn(async move {
            let shed_reply = overloaded_reply();
            let mut control = Admission::new(admission, clock.now());
            let (mut admitted, mut shed, mut unanswerable) = (0u64, 0u64, 0u64);
            let mut interval_start = clock.now();
            loop {
                // When nothing is waiting, bring the counters up to date before sleeping, so
                // that `baton status` is exact once a load is over.
                let next = match infer.next().now_or_never() {
                    Some(next) => next,
                    None => {
                        publish_stats(&stats, &control, &mut admitted, &mut shed, &mut unanswerable);
                        infer.next().await
                    }
                };
                let Some(m) = next else { break };
                let received = clock.now();
                let queue_len = tx.max_capacity() - tx.capacity();
                let Some(reply_to) = m.reply else {
                    unanswerable += 1;
                    continue;
                };
                let raw = Raw {
                    subject: m.subject,
                    reply_to,
                    payload: m.payload,
                    received,
                };
                let verdict = match control.offer(received, queue_len) {
                    Verdict::Admit => tx.try_send(raw).map_err(|e| e.into_inner()),
                    Verdict::Shed => Err(raw),
                };
                match verdict {
                    Ok(()) => admitted += 1,
                    Err(raw) => {
                        shed += 1;
                        if let Err(e) = nats.publish(raw.reply_to, shed_reply.clone()).await {
                            tracing::warn!("publishing an `overloaded` reply failed: {e}");
                        }
                    }
                }
                // Counters and gauges once per interval, not per message.
                if received - interval_start >= admission.interval {
                    interval_start = received;
                    publish_stats(&stats, &control, &mut admitted, &mut shed, &mut unanswerable);
                }
            }
        })
    }
}

fn publish_stats(stats: &IntakeStats, control: &Admission, admitted: &mut u64, shed: &mut u64, unanswerable: &mut u64) {
    if *admitted + *shed + *unanswerable == 0 {
        return;
    }
    metrics::counter!(telemetry::INTAKE, "verdict" => "admitted").increment(*admitted);
    metrics::counter!(telemetry::INTAKE, "verdict" => "shed").increment(*shed);
    metrics::counter!(telemetry::REJECTED, "model" => "unknown", "reason" => "overloaded").increment(*shed);
    metrics::counter!(telemetry::REJECTED, "model" => "unknown", "reason" => "no_reply_subject")
        .increment(*unanswerable);
    stats.admitted.fetch_add(*admitted, Ordering::Relaxed);
    stats.shed.fetch_add(*shed, Ordering::Relaxed);
    stats.unanswerable.fetch_add(*unanswerable, Ordering::Relaxed);
    (*admitted, *shed, *unanswerable) = (0, 0, 0);
    let throughput = control.throughput().unwrap_or(0.0);
    stats.limit.store(control.limit() as u64, Ordering::Relaxed);
    stats.throughput_rps.store(throughput as u64, Ordering::Relaxed);
    metrics::gauge!(telemetry::INTAKE_LIMIT).set(control.limit() as f64);
    metrics::gauge!(telemetry::INTAKE_THROUGHPUT).set(throughput);
}

/// The one reply every shed request gets, encoded once.
fn overloaded_reply() -> Bytes {
    let reply = InferReply::rejected(
        "",
        RejectReason::Overloaded,
        "the gateway is at capacity and shed this request before reading it; back off and retry",
    );
    Bytes::from(wire::encode(&reply))
}

/// Decodes and validates admitted requests in arrival order and hands them to the gateway in
/// batches, one batch at a time.
async fn decode_loop(mut rx: mpsc::Receiver<Raw>, limits: GatewaySettings, gateway: Addr<Gateway>, out: Outbox) {
    while let Some(first) = rx.recv().await {
        let mut batch = Vec::with_capacity(INCOMING_BATCH);
        let mut next = Some(first);
        while let Some(raw) = next.take() {
            match decode(&raw.subject, &raw.payload, &limits, raw.received) {
                Ok(mut inc) => {
                    inc.reply_to = raw.reply_to;
                    batch.push(inc);
                }
                Err((id, reason, msg)) => {
                    metrics::counter!(telemetry::REJECTED, "model" => "unknown", "reason" => reason.as_str())
                        .increment(1);
                    let _ = out.send(rejection(&raw.reply_to, id, reason, msg));
                }
            }
            if batch.len() < INCOMING_BATCH {
                next = rx.try_recv().ok();
            }
        }
        // Wait until the gateway has handled the batch: the gateway's mailbox then never holds
        // more than one batch of new requests, so the orders and results that finish requests
        // already held wait behind at most that much, however hard clients push. The backlog
        // stays in the intake queue, where the admission controller sees it.
        let flush = rx.is_empty();
        if gateway.send(IncomingBatch { requests: batch, flush }).await.is_err() {
            break;
        }
    }
}

/// Requests handed to the gateway in one message at most.
const INCOMING_BATCH: usize = 64;

/// Checks one request: subject, size, decoding, tensors, SLO. On failure, the client's id (if
/// readable), the reason and a message saying what to fix.
pub fn decode(
    subject: &str,
    payload: &[u8],
    limits: &GatewaySettings,
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
        reply_to: Subject::from_static(""),
        client_id: req.id.map(ClientRequestId::from),
        bytes: payload.len(),
        inputs: req.inputs,
        slo: (slo_ms * 1e6) as Time,
        received,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shed_reply_is_an_overloaded_rejection_without_an_id() {
        let r: InferReply = wire::decode(&overloaded_reply()).unwrap();
        assert_eq!(r.id, "");
        assert_eq!(r.status, wire::Status::Rejected);
        assert_eq!(r.reason, Some(RejectReason::Overloaded));
        assert!(r.error.unwrap().contains("retry"));
    }
}
