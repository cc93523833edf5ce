//! Baton's worker: one per GPU or device. It announces itself to the scheduler, receives batch
//! plans from the dispatcher and their inputs from the gateways holding the requests over NATS,
//! runs each batch on a dedicated execution thread through a [`backend::Backend`], and sends
//! every request's answer back to its gateway.
//!
//! - [`runtime`] — [`run`] a worker: the NATS side and its loop.
//! - [`fleet`] — many emulated workers in one process, for scale tests.
//! - [`inbox`] — drains the NATS subscription into a bounded queue.
//! - [`assembly`] — pairs each plan with its requests' inputs (sans-IO).
//! - [`executor`] — where batches run: the execution thread owning the backend, or a timer.
//! - [`answer`] — turns each batch's outcome into exactly one answer per request and a `BatchDone`.
//! - [`results`] — splits a gateway's answers into `BatchResults` messages that fit `max_payload`.
//! - [`backend`], [`emulated`], `torch` (feature `torch`) — the execution backends.
//! - [`profiler`] — measures a model's `L(b)` on a backend and writes a profile.

pub mod answer;
pub mod assembly;
pub mod backend;
pub mod emulated;
pub mod executor;
pub mod fleet;
pub mod inbox;
pub mod profiler;
pub mod results;
pub mod runtime;
#[cfg(feature = "torch")]
pub mod torch;

pub use emulated::{checksum, EmulatedBackend, EmulatedModel};
pub use runtime::{run, WorkerConfig, WorkerError};
