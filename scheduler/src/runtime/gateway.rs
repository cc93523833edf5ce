//! The gateway: owns the request payloads and every conversation with
//! clients and with workers about data.
//!
//! Requests arrive already decoded and validated by the ingest task (see
//! `admit` in `mod.rs`); the gateway holds their tensors, within a byte budget,
//! from arrival until their worker has answered them, and hands the
//! dispatcher only their metadata. When the dispatcher plans a batch the
//! gateway sends the plan and then each request's inputs to the worker;
//! the payloads stay held until the batch is done, so a batch lost with
//! its worker can be sent again. Rejections the dispatcher decides are
//! answered here.
//!
//! The gateway knows the dispatcher only as the `Recipient<Arrive>` it hands
//! metadata to: the messages the two exchange live in `messages.rs`.

use std::collections::HashMap;

use actix::prelude::*;
use baton_common::control::{BatchInput, BatchPlanMsg, PlanItem, Revoke};
use baton_common::ids::ClientRequestId;
use baton_common::subjects;
use baton_common::wire::{self, InferReply, RejectReason, Tensor};
use bytes::Bytes;

use super::clock::Clock;
use super::messages::{Arrive, Reject, Release, RevokeBatches, ServedModels, Ship};
use super::outbox::Outbox;
use super::telemetry;
use crate::core::{ModelId, RequestId, Time};

#[derive(Debug)]
struct Held {
    client_id: ClientRequestId,
    reply_to: String,
    inputs: Vec<Tensor>,
    bytes: usize,
    received: Time,
    model: String,
}

/// A validated request from a client.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Incoming {
    pub model: String,
    pub reply_to: String,
    pub client_id: Option<ClientRequestId>,
    pub inputs: Vec<Tensor>,
    pub slo: Time,
    pub bytes: usize,
    pub received: Time,
}

/// Requests held right now.
#[derive(Debug, Message)]
#[rtype(result = "usize")]
pub struct HeldCount;

#[derive(Debug)]
pub struct Gateway {
    out: Outbox,
    clock: Clock,
    dispatcher: Recipient<Arrive>,
    budget: usize,
    held_bytes: usize,
    held: HashMap<RequestId, Held>,
    served: HashMap<String, ModelId>,
    next_id: u64,
}

impl Gateway {
    pub fn new(out: Outbox, clock: Clock, dispatcher: Recipient<Arrive>, budget: usize) -> Self {
        Self {
            out,
            clock,
            dispatcher,
            budget,
            held_bytes: 0,
            held: HashMap::new(),
            served: HashMap::new(),
            next_id: 1,
        }
    }

    fn reply(&self, to: &str, reply: &InferReply) {
        let _ = self.out.send((to.to_string(), Bytes::from(wire::encode(reply))));
    }

    fn forget(&mut self, id: RequestId) -> Option<Held> {
        let h = self.held.remove(&id)?;
        self.held_bytes -= h.bytes;
        metrics::gauge!(telemetry::HELD_BYTES).set(self.held_bytes as f64);
        Some(h)
    }
}

impl Actor for Gateway {
    type Context = Context<Self>;
}

/// The reply to a request rejected before it was held.
pub fn rejection(
    reply_to: &str,
    client_id: Option<ClientRequestId>,
    reason: RejectReason,
    message: String,
) -> (String, Bytes) {
    let r = InferReply::rejected(client_id.map(String::from).unwrap_or_default(), reason, message);
    (reply_to.to_string(), Bytes::from(wire::encode(&r)))
}

impl Handler<Incoming> for Gateway {
    type Result = ();

    fn handle(&mut self, m: Incoming, _: &mut Context<Self>) {
        // Under overload a request can spend its whole SLO in the intake
        // queue; answer it now rather than let it time out at the client.
        let waited = self.clock.now() - m.received;
        if waited >= m.slo {
            metrics::counter!(telemetry::REJECTED, "model" => m.model.clone(), "reason" => "overloaded").increment(1);
            let msg = format!(
                "the request waited {} ms in the gateway's intake, its whole SLO; the scheduler is overloaded",
                waited / 1_000_000
            );
            let _ = self
                .out
                .send(rejection(&m.reply_to, m.client_id, RejectReason::Overloaded, msg));
            return;
        }
        let Some(&model) = self.served.get(&m.model) else {
            let mut known: Vec<&str> = self.served.keys().map(String::as_str).collect();
            known.sort_unstable();
            let msg = if known.is_empty() {
                format!("model `{}` is not served: no worker is registered yet", m.model)
            } else {
                format!(
                    "model `{}` is not served by any worker; served models: {}",
                    m.model,
                    known.join(", ")
                )
            };
            metrics::counter!(telemetry::REJECTED, "model" => "unknown", "reason" => "unknown_model").increment(1);
            let _ = self
                .out
                .send(rejection(&m.reply_to, m.client_id, RejectReason::UnknownModel, msg));
            return;
        };
        if self.held_bytes + m.bytes > self.budget {
            metrics::counter!(telemetry::REJECTED, "model" => m.model.clone(), "reason" => "overloaded").increment(1);
            let msg = format!(
                "the gateway holds {} bytes of requests, its budget (gateway.held_bytes_budget) is {}; retry later",
                self.held_bytes, self.budget
            );
            let _ = self
                .out
                .send(rejection(&m.reply_to, m.client_id, RejectReason::Overloaded, msg));
            return;
        }
        let id = RequestId(self.next_id);
        self.next_id += 1;
        self.held_bytes += m.bytes;
        metrics::gauge!(telemetry::HELD_BYTES).set(self.held_bytes as f64);
        self.held.insert(
            id,
            Held {
                client_id: m.client_id.unwrap_or_else(|| ClientRequestId::new(format!("b{id}"))),
                reply_to: m.reply_to,
                inputs: m.inputs,
                bytes: m.bytes,
                received: m.received,
                model: m.model,
            },
        );
        self.dispatcher.do_send(Arrive {
            id,
            model,
            slo: m.slo,
            received: m.received,
        });
    }
}

impl Handler<ServedModels> for Gateway {
    type Result = ();

    fn handle(&mut self, m: ServedModels, _: &mut Context<Self>) {
        self.served = m.0;
    }
}

impl Handler<Ship> for Gateway {
    type Result = ();

    fn handle(&mut self, s: Ship, _: &mut Context<Self>) {
        let now = self.clock.now();
        let mut items = Vec::with_capacity(s.requests.len());
        for id in &s.requests {
            // The dispatcher only plans requests the gateway holds.
            let Some(h) = self.held.get(id) else { continue };
            items.push(PlanItem {
                request_id: h.client_id.clone(),
                reply_to: h.reply_to.clone(),
                queued_us: ((now - h.received).max(0) / 1000) as u64,
            });
            metrics::histogram!(telemetry::QUEUE_TIME, "model" => h.model.clone())
                .record((now - h.received) as f64 * 1e-9);
        }
        let plan = BatchPlanMsg {
            batch_id: s.batch,
            model: s.model,
            items,
            budget_us: ((s.deadline - now).max(0) / 1000) as u64,
            late: s.late,
        };
        let _ = self
            .out
            .send((subjects::worker_plans(&s.worker), Bytes::from(wire::encode(&plan))));
        let inputs = subjects::worker_inputs(&s.worker);
        let mut index = 0u32;
        for id in &s.requests {
            let Some(h) = self.held.get(id) else { continue };
            let msg = BatchInput {
                batch_id: s.batch,
                index,
                inputs: h.inputs.clone(),
            };
            index += 1;
            let _ = self.out.send((inputs.clone(), Bytes::from(wire::encode(&msg))));
        }
    }
}

impl Handler<RevokeBatches> for Gateway {
    type Result = ();

    fn handle(&mut self, r: RevokeBatches, _: &mut Context<Self>) {
        // Through the same outbox, hence the same connection, as the plans and inputs shipped
        // before it: the worker receives the revoke after them (see docs/protocol.md §10).
        let msg = Revoke { batch_ids: r.batches };
        let _ = self
            .out
            .send((subjects::worker_revoke(&r.worker), Bytes::from(wire::encode(&msg))));
    }
}

impl Handler<Reject> for Gateway {
    type Result = ();

    fn handle(&mut self, r: Reject, _: &mut Context<Self>) {
        if let Some(h) = self.forget(r.request) {
            metrics::counter!(telemetry::REJECTED, "model" => h.model.clone(), "reason" => r.reason.as_str())
                .increment(1);
            self.reply(&h.reply_to, &InferReply::rejected(h.client_id, r.reason, r.message));
        }
    }
}

impl Handler<Release> for Gateway {
    type Result = ();

    fn handle(&mut self, r: Release, _: &mut Context<Self>) {
        for id in r.0 {
            if let Some(h) = self.forget(id) {
                metrics::counter!(telemetry::REQUESTS, "model" => h.model, "outcome" => "answered").increment(1);
            }
        }
    }
}

impl Handler<HeldCount> for Gateway {
    type Result = usize;

    fn handle(&mut self, _: HeldCount, _: &mut Context<Self>) -> usize {
        self.held.len()
    }
}
