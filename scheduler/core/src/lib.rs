//! The sans-IO scheduling core: deferred batch scheduling (Symphony) as a
//! deterministic state machine.
//!
//! Nothing here reads a clock, does I/O, spawns a thread or draws a random
//! number. Time comes in as an argument (nanoseconds on any monotonic
//! scale); decisions come out of [`Scheduler::poll_action`], and
//! [`Scheduler::poll_timeout`] says when the core next wants
//! [`Scheduler::handle_timeout`] to be called. The simulator drives it in
//! virtual time, the runtime with the wall clock — the shape of quinn-proto
//! under quinn.
//!
//! Per model the core keeps the waiting requests ordered by (deadline, id)
//! ([`queue`]), an arrival-rate meter ([`rate`]) and the target batch size it
//! implies ([`target`]). On every arrival, timer, grant and worker change the
//! model's *candidate* is formed again ([`candidate`]): which requests would
//! go, and the window in which they should ([`window`]). When the candidate's
//! send time comes the [`gpu_pool`] grants a worker free by the candidate's
//! start, or the candidate parks until one frees.

pub mod candidate;
pub mod gpu_pool;
pub mod latency;
pub mod min_tree;
pub mod policy;
pub mod queue;
pub mod rate;
pub mod scheduler;
pub mod target;
pub mod window;

pub use latency::LatencyTable;
pub use policy::{Condition, DropPolicy, GpuChoice, ParseEnumError, RejectReason};
pub use scheduler::{Action, Arrival, BatchPlan, CoreConfig, CoreError, ModelSpec, Scheduler};
pub use window::{Deltas, Window};

use std::fmt;

/// Nanoseconds on the caller's monotonic scale. Signed, so window arithmetic
/// near time zero cannot underflow.
pub type Time = i64;

/// One millisecond in [`Time`] units.
pub const MS: Time = 1_000_000;
/// One microsecond in [`Time`] units.
pub const US: Time = 1_000;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $inner:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// A request, unique among the requests the core holds (the gateway numbers them).
    RequestId,
    u64
);
id_type!(
    /// A model registered with [`Scheduler::add_model`]; an index.
    ModelId,
    u32
);
id_type!(
    /// A worker (one GPU or device), chosen by the caller.
    WorkerId,
    u64
);
id_type!(
    /// A dispatched batch, numbered by the core in dispatch order.
    BatchId,
    u64
);
