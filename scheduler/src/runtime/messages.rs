//! The messages the runtime's actors send one another, in one place, so that no actor needs
//! another's file to talk to it and the imports run one way:
//!
//! ```text
//!  Registry ──WorkerUp / WorkerDraining / WorkerDown──▶ Dispatcher
//! ```
//!
//! The gateway and the dispatcher do not share a process (or do, in the one-laptop set-up, and
//! still talk over NATS): their messages are the control protocol of `baton_common::control`.
//! Messages that come from NATS or from `baton status` rather than from another actor
//! (`Hello`, `Done`, `GetStatus`…) live beside the actor that handles them.

use actix::prelude::*;
use baton_common::control::WorkerHello;
use baton_common::ids::WorkerName;

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
