//! What a simulated run measured, over the bench phase only.
//!
//! A request counts when it arrived inside its model's bench window; a batch
//! counts when it started inside the run's bench window; GPU busy time is
//! clipped to that window. "Good" means finished by `arrival + SLO − δ_resp`
//! (the reply still has δ_resp to reach the client).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::core::{RejectReason, Time};

/// One policy run's results. The key names are a stable interface (`--json`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunMetrics {
    pub policy: String,
    pub workload: String,
    pub gpus: usize,
    pub rate_multiplier: f64,
    pub requests: u64,
    pub good: u64,
    pub late: u64,
    pub dropped: u64,
    pub dropped_by_reason: BTreeMap<String, u64>,
    /// Requests the policy never answered (a policy bug; always 0).
    pub unanswered: u64,
    /// Answers for requests already answered (a policy bug; always 0).
    pub duplicates: u64,
    /// Requests per second arriving in the bench window.
    pub offered_rps: f64,
    pub goodput_rps: f64,
    pub bad_rate: f64,
    pub mean_batch: f64,
    pub p50_batch: u32,
    pub p99_batch: u32,
    pub p50_latency_ms: f64,
    pub p99_latency_ms: f64,
    pub p999_latency_ms: f64,
    pub gpu_busy_fraction: f64,
    pub gpus_used: usize,
    pub gpu_seconds: f64,
    /// Length of the bench window.
    pub bench_seconds: f64,
    pub sim_seconds: f64,
    pub wall_seconds: f64,
}

/// Accumulates a run's outcomes.
#[derive(Debug, Default)]
pub struct Recorder {
    pub window: (Time, Time),
    pub requests: u64,
    pub good: u64,
    pub late: u64,
    pub dropped: BTreeMap<RejectReason, u64>,
    pub unanswered: u64,
    pub duplicates: u64,
    /// Latencies of finished requests, µs.
    pub latencies_us: Vec<u32>,
    pub batches: Vec<u32>,
    pub busy_ns: i128,
    pub used: Vec<bool>,
}

impl Recorder {
    pub fn new(window: (Time, Time), gpus: usize) -> Self {
        Self {
            window,
            used: vec![false; gpus],
            ..Self::default()
        }
    }

    pub fn in_window(&self, t: Time) -> bool {
        t >= self.window.0 && t < self.window.1
    }

    /// A batch ran on `gpu` over [start, finish).
    pub fn batch(&mut self, gpu: usize, size: u32, start: Time, finish: Time) {
        let (a, b) = self.window;
        let clipped = finish.min(b) - start.max(a);
        if clipped > 0 {
            self.busy_ns += i128::from(clipped);
        }
        if self.in_window(start) {
            self.batches.push(size);
            self.used[gpu] = true;
        }
    }

    /// A counted request finished at `finish`.
    pub fn finished(&mut self, arrival: Time, deadline: Time, finish: Time) {
        if finish <= deadline {
            self.good += 1;
        } else {
            self.late += 1;
        }
        let us = ((finish - arrival).max(0) / 1_000).min(i64::from(u32::MAX)) as u32;
        self.latencies_us.push(us);
    }

    pub fn rejected(&mut self, reason: RejectReason) {
        *self.dropped.entry(reason).or_default() += 1;
    }

    pub fn finish(
        mut self,
        policy: &str,
        workload: &str,
        rate_multiplier: f64,
        sim_end: Time,
        wall: f64,
    ) -> RunMetrics {
        let secs = (self.window.1 - self.window.0) as f64 * 1e-9;
        let gpus = self.used.len();
        let dropped: u64 = self.dropped.values().sum();
        let bad = self.requests - self.good;
        let pct = |v: &mut Vec<u32>, q: f64| -> u32 {
            if v.is_empty() {
                return 0;
            }
            let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
            *v.select_nth_unstable(i).1
        };
        let mean_batch = if self.batches.is_empty() {
            0.0
        } else {
            self.batches.iter().map(|&b| f64::from(b)).sum::<f64>() / self.batches.len() as f64
        };
        RunMetrics {
            policy: policy.to_string(),
            workload: workload.to_string(),
            gpus,
            rate_multiplier,
            requests: self.requests,
            good: self.good,
            late: self.late,
            dropped,
            dropped_by_reason: self.dropped.iter().map(|(r, n)| (r.as_str().to_string(), *n)).collect(),
            unanswered: self.unanswered,
            duplicates: self.duplicates,
            offered_rps: self.requests as f64 / secs,
            goodput_rps: self.good as f64 / secs,
            bad_rate: if self.requests == 0 {
                0.0
            } else {
                bad as f64 / self.requests as f64
            },
            mean_batch,
            p50_batch: pct(&mut self.batches, 0.5),
            p99_batch: pct(&mut self.batches, 0.99),
            p50_latency_ms: f64::from(pct(&mut self.latencies_us, 0.5)) / 1e3,
            p99_latency_ms: f64::from(pct(&mut self.latencies_us, 0.99)) / 1e3,
            p999_latency_ms: f64::from(pct(&mut self.latencies_us, 0.999)) / 1e3,
            gpu_busy_fraction: self.busy_ns as f64 / (secs * 1e9 * gpus as f64),
            gpus_used: self.used.iter().filter(|&&u| u).count(),
            gpu_seconds: self.busy_ns as f64 * 1e-9,
            bench_seconds: secs,
            sim_seconds: sim_end as f64 * 1e-9,
            wall_seconds: wall,
        }
    }
}
