//! Baton's scheduler crate: the sans-IO scheduling core ([`core`]) and the
//! shells and tools built around it (the `baton` binary wires them).

pub mod bench;
pub mod core;
pub mod loadgen;
pub mod planner;
pub mod runtime;
pub mod sim;
pub mod workload;
