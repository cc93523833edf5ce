//! Baton's scheduler crate: the sans-IO scheduling core ([`core`]) and the
//! shells and tools built around it (the `baton` binary wires them).

pub mod bench;
pub mod bench_dispatcher;
/// The sans-IO scheduling core, its own crate (`baton-core`) so nothing here can give it a clock
/// or a socket; re-exported so the shells name it `crate::core`.
pub use baton_core as core;
pub mod loadgen;
pub mod planner;
pub mod runtime;
pub mod sim;
pub mod workload;
