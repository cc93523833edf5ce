//! The messages the runtime's actors send one another, in one place, so that no actor needs
//! another's file to talk to it and the imports run one way:
//!
//! ```text
//!  Registry ──WorkerUp / WorkerDraining / WorkerDown──▶ Dispatcher
//!  Gateway  ──Arrive──────────────────────────────────▶ Dispatcher  (through a Recipient<Arrive>)
//!  Dispatcher ──ServedModels / Ship / RevokeBatches / Reject / Release──▶ Gateway
//! ```
//!
//! The gateway holds the dispatcher only as a `Recipient<Arrive>`, so `gateway.rs` imports
//! nothing of `dispatcher.rs`; the dispatcher holds the gateway's address. Messages that come
//! from NATS or from `baton status` rather than from another actor (`Hello`, `Done`,
//! `GetStatus`…) live beside the actor that handles them.
//!
//! Requests are named by the gateway's number for them (the core's `RequestId`), batches by the
//! id their worker knows (`BatchUuid`), workers by their name (`WorkerName`); each is a type of
//! its own, so one cannot be passed for another.

use std::collections::HashMap;

use actix::prelude::*;
use baton_common::control::WorkerHello;
use baton_common::ids::{BatchUuid, WorkerName};
use baton_common::wire::RejectReason;

use crate::core::{ModelId, RequestId, Time};

/// A request's metadata, from the gateway to the dispatcher.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Arrive {
    pub id: RequestId,
    pub model: ModelId,
    pub slo: Time,
    pub received: Time,
}

/// A worker registered (from the registry).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WorkerUp(pub WorkerHello);

/// A worker is draining: no new batches.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WorkerDraining(pub WorkerName);

/// A worker left or was declared dead.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WorkerDown {
    pub worker: WorkerName,
    pub lost: bool,
}

/// The models some live worker serves (from the dispatcher).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ServedModels(pub HashMap<String, ModelId>);

/// Send a planned batch to its worker.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Ship {
    pub batch: BatchUuid,
    pub worker: WorkerName,
    pub model: String,
    pub requests: Vec<RequestId>,
    pub deadline: Time,
    pub late: bool,
}

/// Withdraw batches from a worker declared dead: the dispatcher answers (or re-plans) their
/// requests itself, so the worker must not run them if their plans still reach it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RevokeBatches {
    pub worker: WorkerName,
    pub batches: Vec<BatchUuid>,
}

/// Answer a request with a rejection and forget it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Reject {
    pub request: RequestId,
    pub reason: RejectReason,
    pub message: String,
}

/// The worker answered these requests: forget them.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Release(pub Vec<RequestId>);
