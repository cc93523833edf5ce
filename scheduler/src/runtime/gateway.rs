//! The gateway: holds the requests and is the only process that answers clients.
//!
//! ```text
//!  intake ──Incoming──▶ Gateway ──Arrivals (metadata, batched)──▶ dispatcher
//!                         │  ◀──GatewayOrders (ship / reject)──────┘
//!                         ├──BatchInputs (one message per batch, or as few as fit)──▶ worker
//!  clients ◀──reply──────┘  ◀──BatchResults────────────────────────────────────────── worker
//! ```
//!
//! Requests arrive decoded and validated by the intake (`intake.rs`). The gateway numbers each
//! one, holds its tensors within a byte budget that also charges a fixed overhead per request,
//! and tells the dispatcher only its metadata: model, remaining budget, the gateway's number
//! for it. Arrivals are batched: a message goes out when `gateway.arrival_batch` have gathered,
//! when the intake has nothing more queued (so an idle gateway adds nothing), or at the latest
//! `gateway.arrival_flush_us` after the first of them.
//!
//! When the dispatcher orders a batch shipped, the gateway sends its requests' inputs straight
//! to the worker; the worker sends the answers back here, and the gateway publishes them to the
//! clients. A request is forgotten when it is answered, and **the first answer wins**: one that
//! comes later (a worker declared dead that was only slow, a batch re-planned after a revoke) is
//! dropped and counted. A held request nobody answers (its plan, inputs, results or the
//! dispatcher itself were lost) is answered by the gateway `gateway.orphan_after_ms` after its
//! deadline, so no request is left silent.
//!
//! The same actor runs in `baton gateway` processes and, for the one-laptop set-up, inside
//! `baton scheduler`; it talks to the dispatcher over NATS either way.

use std::collections::HashMap;

use actix::prelude::*;
use async_nats::Subject;
use baton_common::control::{
    ArrivalItem, Arrivals, BatchInputs, BatchResults, GatewayBeat, GatewayOrders, InputItem, ShipOrder,
};
use baton_common::ids::{ClientRequestId, GatewayName};
use baton_common::settings::GatewaySettings;
use baton_common::subjects;
use baton_common::wire::{self, InferReply, RejectReason, Tensor};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::clock::Clock;
use super::outbox::Outbox;
use super::telemetry;
use crate::core::{Time, MS};

#[derive(Debug)]
struct Held {
    client_id: ClientRequestId,
    reply_to: Subject,
    inputs: Vec<Tensor>,
    /// Bytes charged to the budget: the body plus the per-request overhead.
    charged: usize,
    received: Time,
    deadline: Time,
    model: String,
}

/// A validated request from a client.
#[derive(Debug)]
pub struct Incoming {
    pub model: String,
    pub reply_to: Subject,
    pub client_id: Option<ClientRequestId>,
    pub inputs: Vec<Tensor>,
    pub slo: Time,
    pub bytes: usize,
    pub received: Time,
}

/// Requests from the intake, in arrival order; `flush`: the intake has nothing more queued,
/// send the arrivals gathered so far.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct IncomingBatch {
    pub requests: Vec<Incoming>,
    pub flush: bool,
}

/// Orders from the dispatcher.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Orders(pub GatewayOrders);

/// Answers from a worker.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Results(pub BatchResults);

/// The gateway's state, for `baton status` and the tests.
#[derive(Debug, Message)]
#[rtype(result = "GatewayState")]
pub struct GetState;

/// What one gateway holds and has done.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewayState {
    pub id: String,
    pub held_requests: u64,
    pub held_bytes: u64,
    pub answered: u64,
    pub duplicates_dropped: u64,
    pub orphans_answered: u64,
    pub arrival_messages: u64,
    pub arrivals: u64,
}

/// The reply to a request rejected before it was held (by the intake or the gateway).
pub fn rejection(
    reply_to: &str,
    client_id: Option<ClientRequestId>,
    reason: RejectReason,
    message: String,
) -> (String, Bytes) {
    let r = InferReply::rejected(client_id.map(String::from).unwrap_or_default(), reason, message);
    (reply_to.to_string(), Bytes::from(wire::encode(&r)))
}

/// Messages are kept this far under the server's `max_payload`, for the envelope.
const PAYLOAD_MARGIN: usize = 4096;

#[derive(Debug)]
pub struct Gateway {
    name: GatewayName,
    instance: Uuid,
    out: Outbox,
    clock: Clock,
    limits: GatewaySettings,
    /// The NATS server's `max_payload`: inputs are packed into messages up to this size.
    max_payload: usize,
    held: HashMap<u64, Held>,
    held_bytes: usize,
    next: u64,
    /// Arrivals not yet sent, and the model table they index.
    pending: Vec<ArrivalItem>,
    pending_models: Vec<String>,
    flush_armed: bool,
    state: GatewayState,
    leaving: bool,
}

impl Gateway {
    pub fn new(name: GatewayName, out: Outbox, clock: Clock, limits: GatewaySettings, max_payload: usize) -> Self {
        Self {
            state: GatewayState {
                id: name.to_string(),
                ..Default::default()
            },
            name,
            instance: Uuid::new_v4(),
            out,
            clock,
            limits,
            max_payload,
            held: HashMap::new(),
            held_bytes: 0,
            next: 1,
            pending: Vec::new(),
            pending_models: Vec::new(),
            flush_armed: false,
            leaving: false,
        }
    }

    pub fn name(&self) -> &GatewayName {
        &self.name
    }

    fn publish(&self, subject: impl Into<String>, body: Vec<u8>) {
        let _ = self.out.send((subject.into(), Bytes::from(body)));
    }

    fn reject_now(&self, reply_to: &Subject, client_id: Option<ClientRequestId>, reason: RejectReason, msg: String) {
        let _ = self.out.send(rejection(reply_to, client_id, reason, msg));
    }

    fn forget(&mut self, request: u64) -> Option<Held> {
        let h = self.held.remove(&request)?;
        self.held_bytes -= h.charged;
        Some(h)
    }

    /// Answers a held request with `body` (an encoded reply) and forgets it; a request no
    /// longer held was answered already, and this answer is dropped and counted.
    fn answer(&mut self, request: u64, body: Bytes) -> bool {
        let Some(h) = self.forget(request) else {
            self.state.duplicates_dropped += 1;
            metrics::counter!(telemetry::DUPLICATES_DROPPED).increment(1);
            return false;
        };
        self.state.answered += 1;
        let _ = self.out.send((h.reply_to.to_string(), body));
        true
    }

    fn answer_rejected(&mut self, request: u64, reason: RejectReason, message: String) {
        let Some(h) = self.forget(request) else {
            self.state.duplicates_dropped += 1;
            metrics::counter!(telemetry::DUPLICATES_DROPPED).increment(1);
            return;
        };
        self.state.answered += 1;
        metrics::counter!(telemetry::REJECTED, "model" => h.model.clone(), "reason" => reason.as_str()).increment(1);
        let r = InferReply::rejected(h.client_id, reason, message);
        self.publish(h.reply_to.to_string(), wire::encode(&r));
    }

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let msg = Arrivals {
            gateway: self.name.clone(),
            instance: self.instance,
            models: std::mem::take(&mut self.pending_models),
            items: std::mem::take(&mut self.pending),
        };
        self.state.arrival_messages += 1;
        self.state.arrivals += msg.items.len() as u64;
        metrics::histogram!(telemetry::ARRIVALS_PER_MESSAGE).record(msg.items.len() as f64);
        self.publish(subjects::ARRIVALS, wire::encode(&msg));
    }

    fn ship(&mut self, order: ShipOrder) {
        let now = self.clock.now();
        let subject = subjects::worker_inputs(&order.worker);
        let limit = self.max_payload.saturating_sub(PAYLOAD_MARGIN).max(1);
        let mut msg = BatchInputs {
            batch_id: order.batch_id,
            items: Vec::new(),
        };
        let mut size = 64;
        for (i, request) in order.requests.iter().enumerate() {
            let index = order.offset + i as u32;
            let Some(h) = self.held.get(request) else {
                // Answered already (say, as an orphan): an item without inputs keeps the rest of
                // the batch from waiting for it; the worker refuses it, and that answer is dropped
                // here as a duplicate.
                msg.items.push(InputItem {
                    index,
                    id: ClientRequestId::new(""),
                    queued_us: 0,
                    inputs: Vec::new(),
                });
                size += 64;
                continue;
            };
            let item_size = 64 + h.client_id.as_str().len() + h.inputs.iter().map(|t| t.data.len() + 32).sum::<usize>();
            if !msg.items.is_empty() && size + item_size > limit {
                self.publish(subject.clone(), wire::encode(&msg));
                msg.items.clear();
                size = 64;
            }
            size += item_size;
            metrics::histogram!(telemetry::QUEUE_TIME, "model" => h.model.clone())
                .record((now - h.received) as f64 * 1e-9);
            msg.items.push(InputItem {
                index,
                id: h.client_id.clone(),
                queued_us: ((now - h.received).max(0) / 1000) as u64,
                inputs: h.inputs.clone(),
            });
        }
        if !msg.items.is_empty() {
            self.publish(subject, wire::encode(&msg));
        }
    }

    /// Answers requests held `orphan_after_ms` past their deadline: whatever was to answer
    /// them was lost.
    fn sweep(&mut self) {
        let now = self.clock.now();
        let grace = self.limits.orphan_after_ms as Time * MS;
        let lost: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, h)| now > h.deadline.saturating_add(grace))
            .map(|(&r, _)| r)
            .collect();
        for r in lost {
            self.state.orphans_answered += 1;
            self.answer_rejected(
                r,
                RejectReason::WorkerLost,
                format!(
                    "no answer came for this request within gateway.orphan_after_ms ({} ms) after its deadline: \
                     its batch, its worker or the dispatcher was lost; retry",
                    self.limits.orphan_after_ms
                ),
            );
        }
    }

    fn beat(&self) {
        let beat = GatewayBeat {
            gateway: self.name.clone(),
            instance: self.instance,
            held_requests: self.held.len() as u64,
            held_bytes: self.held_bytes as u64,
            duplicates_dropped: self.state.duplicates_dropped,
            leaving: self.leaving,
        };
        self.publish(subjects::GATEWAY_HEARTBEAT, wire::encode(&beat));
        metrics::gauge!(telemetry::HELD_BYTES, "gateway" => self.name.to_string()).set(self.held_bytes as f64);
        metrics::gauge!(telemetry::HELD_REQUESTS, "gateway" => self.name.to_string()).set(self.held.len() as f64);
    }

    fn snapshot(&self) -> GatewayState {
        GatewayState {
            held_requests: self.held.len() as u64,
            held_bytes: self.held_bytes as u64,
            ..self.state.clone()
        }
    }
}

impl Actor for Gateway {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(1024);
        self.beat();
        let every = std::time::Duration::from_millis(self.limits.heartbeat_ms);
        ctx.run_interval(every, |g, _| {
            g.sweep();
            g.beat();
        });
    }
}

/// Starting the gateway's shutdown: it says so in its heartbeats.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Leaving;

impl Handler<Leaving> for Gateway {
    type Result = ();

    fn handle(&mut self, _: Leaving, _: &mut Context<Self>) {
        self.leaving = true;
        self.flush();
        self.beat();
    }
}

impl Handler<IncomingBatch> for Gateway {
    type Result = ();

    fn handle(&mut self, b: IncomingBatch, ctx: &mut Context<Self>) {
        for m in b.requests {
            self.take(m, ctx);
        }
        if b.flush {
            self.flush();
        }
    }
}

impl Gateway {
    /// Holds one request and queues its metadata for the dispatcher (or rejects it).
    fn take(&mut self, m: Incoming, ctx: &mut Context<Self>) {
        // Under overload a request can spend its whole SLO in the intake
        // queue; answer it now rather than let it time out at the client.
        let now = self.clock.now();
        let waited = now - m.received;
        if waited >= m.slo {
            metrics::counter!(telemetry::REJECTED, "model" => m.model.clone(), "reason" => "overloaded").increment(1);
            let msg = format!(
                "the request waited {} ms in the gateway's intake, its whole SLO; the gateway is overloaded",
                waited / MS
            );
            self.reject_now(&m.reply_to, m.client_id, RejectReason::Overloaded, msg);
            return;
        }
        let charged = m.bytes + self.limits.per_request_overhead_bytes as usize;
        if self.held_bytes + charged > self.limits.held_bytes_budget as usize {
            metrics::counter!(telemetry::REJECTED, "model" => m.model.clone(), "reason" => "overloaded").increment(1);
            let msg = format!(
                "the gateway holds {} requests, {} bytes counting {} per request (gateway.per_request_overhead_bytes); \
                 its budget (gateway.held_bytes_budget) is {}; retry later",
                self.held.len(),
                self.held_bytes,
                self.limits.per_request_overhead_bytes,
                self.limits.held_bytes_budget
            );
            self.reject_now(&m.reply_to, m.client_id, RejectReason::Overloaded, msg);
            return;
        }
        let request = self.next;
        self.next += 1;
        self.held_bytes += charged;
        let model = match self.pending_models.iter().position(|n| *n == m.model) {
            Some(i) => i as u32,
            None => {
                self.pending_models.push(m.model.clone());
                (self.pending_models.len() - 1) as u32
            }
        };
        let budget_us = ((m.slo - waited).max(0) / 1000) as u64;
        self.pending.push(ArrivalItem(request, model, budget_us));
        self.held.insert(
            request,
            Held {
                client_id: m
                    .client_id
                    .unwrap_or_else(|| ClientRequestId::new(format!("b{request}"))),
                reply_to: m.reply_to,
                inputs: m.inputs,
                charged,
                received: m.received,
                deadline: m.received.saturating_add(m.slo),
                model: m.model,
            },
        );
        if self.pending.len() as u64 >= self.limits.arrival_batch {
            self.flush();
        } else if !self.flush_armed {
            self.flush_armed = true;
            let after = std::time::Duration::from_micros(self.limits.arrival_flush_us);
            ctx.run_later(after, |g, _| {
                g.flush_armed = false;
                g.flush();
            });
        }
    }
}

impl Handler<Orders> for Gateway {
    type Result = ();

    fn handle(&mut self, Orders(o): Orders, _: &mut Context<Self>) {
        if o.instance != self.instance {
            // Orders for this gateway's predecessor of the same name.
            return;
        }
        for ship in o.ships {
            self.ship(ship);
        }
        for r in o.rejects {
            self.answer_rejected(r.request, r.reason, r.message);
        }
    }
}

impl Handler<Results> for Gateway {
    type Result = ();

    fn handle(&mut self, Results(r): Results, _: &mut Context<Self>) {
        // A batch is of one model: count its answers once.
        let model = r
            .replies
            .iter()
            .find_map(|i| self.held.get(&i.request))
            .map(|h| h.model.clone());
        let mut answered = 0;
        for item in r.replies {
            answered += u64::from(self.answer(item.request, Bytes::from(item.reply)));
        }
        if let Some(model) = model {
            metrics::counter!(telemetry::REQUESTS, "model" => model, "outcome" => "answered").increment(answered);
        }
        for f in r.failed {
            self.answer_rejected(f.request, f.reason, f.message);
        }
    }
}

impl Handler<GetState> for Gateway {
    type Result = MessageResult<GetState>;

    fn handle(&mut self, _: GetState, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.snapshot())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_common::ids::BatchUuid;
    use baton_common::wire::DType;

    fn gateway(max_payload: usize) -> (Gateway, tokio::sync::mpsc::UnboundedReceiver<(String, Bytes)>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let g = Gateway::new("g".into(), tx, Clock::new(), GatewaySettings::default(), max_payload);
        (g, rx)
    }

    fn hold(g: &mut Gateway, request: u64, bytes: usize) {
        g.held_bytes += bytes;
        g.held.insert(
            request,
            Held {
                client_id: ClientRequestId::new(format!("c{request}")),
                reply_to: Subject::from(format!("_INBOX.{request}")),
                inputs: vec![Tensor {
                    dtype: DType::U8,
                    shape: vec![bytes as u64],
                    data: vec![1; bytes],
                }],
                charged: bytes,
                received: 0,
                deadline: 100 * MS,
                model: "m".into(),
            },
        );
    }

    fn shipped(rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, Bytes)>) -> Vec<BatchInputs> {
        let mut out = Vec::new();
        while let Ok((subject, body)) = rx.try_recv() {
            assert_eq!(subject, "baton.worker.w.input");
            out.push(wire::decode::<BatchInputs>(&body).unwrap());
        }
        out
    }

    fn order(requests: Vec<u64>) -> ShipOrder {
        ShipOrder {
            batch_id: BatchUuid::from_u128(1),
            worker: "w".into(),
            offset: 3,
            requests,
        }
    }

    /// A batch's inputs go in one message; a request answered already goes as an item without
    /// inputs, so the rest of its batch does not wait for it.
    #[test]
    fn a_batch_ships_in_one_message_and_an_answered_request_as_an_empty_item() {
        let (mut g, mut rx) = gateway(1 << 20);
        hold(&mut g, 1, 16);
        hold(&mut g, 3, 16);
        g.ship(order(vec![1, 2, 3]));
        let msgs = shipped(&mut rx);
        assert_eq!(msgs.len(), 1);
        let items = &msgs[0].items;
        assert_eq!(items.iter().map(|i| i.index).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(items[0].id.as_str(), "c1");
        assert!(items[1].inputs.is_empty() && items[1].id.as_str().is_empty());
        assert_eq!(items[2].inputs[0].data.len(), 16);
    }

    /// Inputs larger than one message are split, each message under the server's max_payload.
    #[test]
    fn inputs_split_at_max_payload() {
        let max_payload = 3 * PAYLOAD_MARGIN;
        let (mut g, mut rx) = gateway(max_payload);
        for r in 0..10 {
            hold(&mut g, r, 1500);
        }
        g.ship(order((0..10).collect()));
        let msgs = shipped(&mut rx);
        assert!(msgs.len() > 1, "{}", msgs.len());
        let mut indices: Vec<u32> = msgs.iter().flat_map(|m| m.items.iter().map(|i| i.index)).collect();
        indices.sort_unstable();
        assert_eq!(indices, (3..13).collect::<Vec<_>>());
        for m in &msgs {
            assert!(wire::encode(m).len() <= max_payload);
        }
    }

    /// The first answer wins; a later one for the same request is dropped and counted.
    #[test]
    fn a_second_answer_is_dropped_and_counted() {
        let (mut g, mut rx) = gateway(1 << 20);
        hold(&mut g, 7, 16);
        assert!(g.answer(7, Bytes::from_static(b"first")));
        assert!(!g.answer(7, Bytes::from_static(b"second")));
        g.answer_rejected(7, RejectReason::WorkerLost, "late".into());
        assert_eq!(g.state.duplicates_dropped, 2);
        assert_eq!((g.held.len(), g.held_bytes), (0, 0));
        let (to, body) = rx.try_recv().unwrap();
        assert_eq!((to.as_str(), &body[..]), ("_INBOX.7", &b"first"[..]));
        assert!(rx.try_recv().is_err());
    }
}
