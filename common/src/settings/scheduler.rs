//! `[scheduler]`: the constants and policies of deferred batch scheduling (DESIGN.md §4).
//!
//! The runtime turns these into the core's own config (`baton_core`), which knows nothing of
//! settings files.

use super::error::rule;
use super::section::settings_section;
use super::{Condition, DropPolicy, GpuChoice, SettingsError};

settings_section! {
    /// The constants and policies of deferred batch scheduling (DESIGN.md §4). Times are in
    /// microseconds (`_us`) or milliseconds (`_ms`), as each key's name says.
    [scheduler] pub struct SchedulerSettings {
        /// δ_ctrl: time from sending a batch plan to the batch being able to start, in µs.
        /// The default was measured over NATS on loopback (0.9–2.2 ms including timer lag;
        /// see docs/benchmarks.md); Symphony's RDMA setting was 100.
        pub delta_ctrl_us: u64 = 1000,
        /// δ_data: time to move one request's input to a worker, in µs.
        pub delta_data_us: u64 = 50,
        /// δ_resp: time reserved at the end of the SLO for delivering the reply, in µs.
        pub delta_resp_us: u64 = 2000,
        /// ε: timer margin before a batch's latest start, in µs. The default allows for tokio
        /// timers, which fire up to ~1 ms late; Symphony's RDMA setting was 100.
        pub epsilon_us: u64 = 1000,
        /// Which requests are rejected early. `window_drop` (Symphony's default) rejects those
        /// whose deadline falls before the chosen batch finishes, which keeps the queue healthy
        /// under overload; `drop_timeout` only those that would miss their deadline even in a
        /// batch of one; `fcfs` none: late results are still delivered, flagged `late`.
        pub drop_policy: DropPolicy = DropPolicy::WindowDrop,
        /// When a formed batch is dispatched. `deferred` waits until the latest moment that
        /// still meets the deadline, or until no further request could join: bigger batches,
        /// fewer GPUs. `eager` sends it as soon as a GPU is free (for ablation and comparison).
        pub condition: Condition = Condition::Deferred,
        /// Which free GPU gets a batch. `consolidate` takes the lowest stable rank among GPUs
        /// free in time, packing load onto few GPUs so the rest stay idle and can be scaled
        /// away; `earliest` (the Symphony authors' choice) takes the earliest-free GPU and
        /// spreads load over all of them.
        pub gpu_choice: GpuChoice = GpuChoice::Consolidate,
        /// Width of one arrival-rate meter bucket, in ms.
        pub rate_bucket_ms: u64 = 50,
        /// Window the arrival rate is averaged over, in ms; a multiple of `rate_bucket_ms`.
        pub rate_window_ms: u64 = 5000,
        /// A worker whose heartbeats stop for this long is declared dead, in ms. The default is
        /// three 250 ms heartbeats.
        pub worker_dead_after_ms: u64 = 750,
        /// A gateway whose heartbeats stop for this long is declared dead and the requests it
        /// held are forgotten, in ms (three of its default 250 ms heartbeats).
        pub gateway_dead_after_ms: u64 = 750,
        /// Run a gateway inside `baton scheduler` (the one-laptop set-up). Turn off when
        /// gateways run as processes of their own (`baton gateway`).
        pub embedded_gateway: bool = true,
        /// Weight of each finished batch when correcting a model's latency profile from what
        /// batches really take (an EWMA of actual / profiled), from 0 (no correction) to 1.
        pub profile_ewma: f64 = 0.05,
    }
}

impl SchedulerSettings {
    /// Checks the rules types cannot express: a positive meter bucket, a window that is a whole
    /// number of buckets, and an EWMA weight in [0, 1].
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.rate_bucket_ms == 0 {
            return rule("scheduler.rate_bucket_ms", "must be greater than 0".into());
        }
        if self.rate_window_ms == 0 || !self.rate_window_ms.is_multiple_of(self.rate_bucket_ms) {
            return rule(
                "scheduler.rate_window_ms",
                format!(
                    "{} must be a positive multiple of scheduler.rate_bucket_ms ({})",
                    self.rate_window_ms, self.rate_bucket_ms
                ),
            );
        }
        if !(0.0..=1.0).contains(&self.profile_ewma) {
            return rule(
                "scheduler.profile_ewma",
                format!("{} must be between 0 (off) and 1", self.profile_ewma),
            );
        }
        Ok(())
    }
}
