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

use std::collections::HashMap;

use actix::prelude::*;
use baton_common::control::WorkerHello;
use baton_common::wire::RejectReason;
use uuid::Uuid;

use crate::core::{ModelId, Time};

/// A request's metadata, from the gateway to the dispatcher.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Arrive {
    pub id: u64,
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
pub struct WorkerDraining(pub String);

/// A worker left or was declared dead.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct WorkerDown {
    pub worker: String,
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
    pub batch: Uuid,
    pub worker: String,
    pub model: String,
    pub requests: Vec<u64>,
    pub deadline: Time,
    pub late: bool,
}

/// Withdraw batches from a worker declared dead: the dispatcher answers (or re-plans) their
/// requests itself, so the worker must not run them if their plans still reach it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RevokeBatches {
    pub worker: String,
    pub batches: Vec<Uuid>,
}

/// Answer a request with a rejection and forget it.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Reject {
    pub request: u64,
    pub reason: RejectReason,
    pub message: String,
}

/// The worker answered these requests: forget them.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Release(pub Vec<u64>);
