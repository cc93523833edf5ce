//! The status snapshot answered on `baton.ops.status` and printed by
//! `baton status`.

use baton_common::ids::WorkerName;
use serde::{Deserialize, Serialize};

use super::intake::IntakeStatus;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    pub uptime_s: f64,
    pub workers: Vec<WorkerStatus>,
    pub models: Vec<ModelStatus>,
    /// Batches dispatched per second over the last status interval.
    pub dispatches_per_s: f64,
    pub batches_total: u64,
    pub dropped_by_reason: Vec<(String, u64)>,
    pub held_requests: usize,
    /// Plan-to-start delay fitted as δ_ctrl + b·δ_data over batches that
    /// started at once (see `dispatcher.rs`); compare with the settings.
    pub measured_delta_ctrl_us: Option<f64>,
    pub measured_delta_data_us: Option<f64>,
    /// What the intake admitted and shed (see `intake.rs`).
    #[serde(default)]
    pub intake: IntakeStatus,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub id: WorkerName,
    pub hardware: String,
    pub backend: String,
    pub state: String,
    pub models: Vec<String>,
    pub inflight_batches: usize,
    pub last_seen_ms_ago: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelStatus {
    pub name: String,
    pub queue_depth: usize,
    pub rate_rps: Option<f64>,
    pub b_target: u32,
    pub workers: usize,
}

impl Status {
    /// A human-readable rendering.
    pub fn render(&self) -> String {
        let mut s = format!(
            "up {:.0} s; {} batches dispatched ({:.1}/s); {} requests held\n",
            self.uptime_s, self.batches_total, self.dispatches_per_s, self.held_requests
        );
        if let (Some(c), Some(d)) = (self.measured_delta_ctrl_us, self.measured_delta_data_us) {
            s.push_str(&format!(
                "measured plan-to-start: δ_ctrl ≈ {c:.0} µs, δ_data ≈ {d:.1} µs per request\n"
            ));
        }
        let i = &self.intake;
        s.push_str(&format!(
            "intake: {} admitted, {} shed `overloaded`; queue bound {} (throughput {} req/s); {} NATS slow-consumer events\n",
            i.admitted, i.shed, i.queue_limit, i.throughput_rps, i.slow_consumer_events
        ));
        s.push_str(&format!("workers ({}):\n", self.workers.len()));
        for w in &self.workers {
            s.push_str(&format!(
                "  {:<16} {:<8} {:<9} {:<9} in flight {:>3}  seen {:>4} ms ago  models {}\n",
                w.id,
                w.hardware,
                w.backend,
                w.state,
                w.inflight_batches,
                w.last_seen_ms_ago,
                w.models.join(",")
            ));
        }
        s.push_str("models:\n");
        for m in &self.models {
            s.push_str(&format!(
                "  {:<16} queue {:>5}  rate {:>9}  B_target {:>4}  workers {}\n",
                m.name,
                m.queue_depth,
                m.rate_rps.map_or("-".to_string(), |r| format!("{r:.1}/s")),
                m.b_target,
                m.workers
            ));
        }
        if !self.dropped_by_reason.is_empty() {
            s.push_str("rejected:\n");
            for (r, n) in &self.dropped_by_reason {
                s.push_str(&format!("  {r:<22} {n}\n"));
            }
        }
        s
    }
}
