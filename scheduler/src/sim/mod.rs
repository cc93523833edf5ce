//! The simulator.

pub mod workload;
