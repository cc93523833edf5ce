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
    /// What the embedded gateway's intake admitted and shed (see `intake.rs`); zero when
    /// gateways run apart.
    #[serde(default)]
    pub intake: IntakeStatus,
    /// How late the dispatcher's timer fired, cumulative since start.
    #[serde(default)]
    pub timer_lag: LagHistogram,
    /// Requests the dispatcher took in, and the `Arrivals` messages that carried them.
    #[serde(default)]
    pub arrivals_total: u64,
    #[serde(default)]
    pub arrival_messages_total: u64,
    /// Requests the dispatcher knows and has not finished with: queued in the core or in a
    /// batch not yet done.
    #[serde(default)]
    pub inflight_requests: u64,
    /// The gateways the dispatcher hears from, with the load they last reported.
    #[serde(default)]
    pub gateways: Vec<GatewayStatus>,
    /// How many workers there are, by state and hardware, even when `workers` is cut short.
    #[serde(default)]
    pub worker_counts: WorkerCounts,
    /// Workers left out of `workers` (after the first [`Status::LISTED_WHEN_CUT`] by id) because
    /// the whole list would not fit in one NATS message; 0 when the list is complete.
    #[serde(default)]
    pub workers_omitted: usize,
}

/// The workers counted by state and by hardware class.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerCounts {
    pub total: usize,
    pub ready: usize,
    pub draining: usize,
    /// (hardware, workers), by hardware name.
    pub by_hardware: Vec<(String, usize)>,
}

impl WorkerCounts {
    pub fn of(workers: &[WorkerStatus]) -> Self {
        let mut hw = std::collections::BTreeMap::<&str, usize>::new();
        for w in workers {
            *hw.entry(&w.hardware).or_default() += 1;
        }
        let ready = workers.iter().filter(|w| w.state == "ready").count();
        WorkerCounts {
            total: workers.len(),
            ready,
            draining: workers.iter().filter(|w| w.state == "draining").count(),
            by_hardware: hw.into_iter().map(|(h, n)| (h.to_string(), n)).collect(),
        }
    }
}

/// A gateway as the dispatcher last heard of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewayStatus {
    pub id: String,
    pub held_requests: u64,
    pub held_bytes: u64,
    pub duplicates_dropped: u64,
    pub last_seen_ms_ago: u64,
    /// Requests of this gateway the dispatcher is still working on.
    pub inflight_requests: u64,
}

/// A cumulative histogram of durations in power-of-two µs buckets: `counts[i]` counts samples
/// below `2^i` µs (the last bucket takes everything longer). Two snapshots subtract, so a
/// benchmark can read the quantiles of its own run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LagHistogram {
    pub counts: Vec<u64>,
}

impl Default for LagHistogram {
    fn default() -> Self {
        LagHistogram {
            counts: vec![0; Self::BUCKETS],
        }
    }
}

impl LagHistogram {
    /// Up to 2^24 µs ≈ 17 s.
    pub const BUCKETS: usize = 25;

    pub fn record(&mut self, lag_us: u64) {
        let i = (u64::BITS - lag_us.leading_zeros()) as usize;
        self.counts[i.min(Self::BUCKETS - 1)] += 1;
    }

    pub fn samples(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The samples recorded since `earlier` (a snapshot of the same histogram).
    pub fn since(&self, earlier: &LagHistogram) -> LagHistogram {
        LagHistogram {
            counts: self
                .counts
                .iter()
                .zip(earlier.counts.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
        }
    }

    /// An upper bound of the `q` quantile in ms (the top of its bucket), `None` without samples.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let n = self.samples();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some((1u64 << i) as f64 / 1000.0);
            }
        }
        None
    }
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
    /// Workers listed when the whole list does not fit in the reply.
    pub const LISTED_WHEN_CUT: usize = 100;

    /// The JSON reply to `baton.ops.status` (`null` if the snapshot failed), at most
    /// `max_payload` bytes (NATS' limit) if cutting the worker list to its first
    /// [`Status::LISTED_WHEN_CUT`] can make it so: at ≈ 140 bytes per worker, the whole list
    /// outgrows the default 1 MB at about 7,000 workers, and a reply that does not fit is never
    /// delivered. `worker_counts` always counts every worker.
    pub fn reply(status: Option<Status>, max_payload: usize) -> Vec<u8> {
        let Some(mut s) = status else { return b"null".to_vec() };
        s.worker_counts = WorkerCounts::of(&s.workers);
        let body = serde_json::to_vec(&s).unwrap_or_default();
        if body.len() <= max_payload || s.workers.len() <= Self::LISTED_WHEN_CUT {
            return body;
        }
        s.workers_omitted = s.workers.len() - Self::LISTED_WHEN_CUT;
        s.workers.truncate(Self::LISTED_WHEN_CUT);
        serde_json::to_vec(&s).unwrap_or_default()
    }

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
        if let Some(p99) = self.timer_lag.quantile_ms(0.99) {
            s.push_str(&format!(
                "dispatcher timer lag p99 < {p99} ms over {} wake-ups; {} arrivals in {} messages; {} requests in flight\n",
                self.timer_lag.samples(),
                self.arrivals_total,
                self.arrival_messages_total,
                self.inflight_requests
            ));
        }
        if !self.gateways.is_empty() {
            s.push_str(&format!("gateways ({}):\n", self.gateways.len()));
            for g in &self.gateways {
                s.push_str(&format!(
                    "  {:<24} holds {:>6} requests ({} bytes), {} in flight at the dispatcher, {} duplicate answers dropped, seen {} ms ago\n",
                    g.id, g.held_requests, g.held_bytes, g.inflight_requests, g.duplicates_dropped, g.last_seen_ms_ago
                ));
            }
        }
        let i = &self.intake;
        s.push_str(&format!(
            "intake: {} admitted, {} shed `overloaded`; queue bound {} (throughput {} req/s); {} NATS slow-consumer events\n",
            i.admitted, i.shed, i.queue_limit, i.throughput_rps, i.slow_consumer_events
        ));
        if self.workers_omitted == 0 {
            s.push_str(&format!("workers ({}):\n", self.workers.len()));
        } else {
            let c = &self.worker_counts;
            let hw: Vec<String> = c.by_hardware.iter().map(|(h, n)| format!("{n} {h}")).collect();
            s.push_str(&format!(
                "workers ({}: {} ready, {} draining; {}), the first {} by id:\n",
                c.total,
                c.ready,
                c.draining,
                hw.join(", "),
                self.workers.len()
            ));
        }
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
        if self.workers_omitted > 0 {
            s.push_str(&format!(
                "  … and {} more (the whole list would not fit in one NATS message)\n",
                self.workers_omitted
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

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(i: usize) -> WorkerStatus {
        WorkerStatus {
            id: WorkerName::new(format!("w{i:05}")),
            hardware: if i.is_multiple_of(3) { "t4" } else { "cpu" }.into(),
            backend: "emulated".into(),
            state: if i.is_multiple_of(10) { "draining" } else { "ready" }.into(),
            models: vec!["m1".into(), "m2".into()],
            inflight_batches: 0,
            last_seen_ms_ago: 12,
        }
    }

    #[test]
    fn reply_lists_every_worker_while_it_fits_and_counts_them_all_when_cut() {
        let s = Status {
            workers: (0..2000).map(worker).collect(),
            ..Default::default()
        };
        let whole = Status::reply(Some(s.clone()), 1 << 20);
        let back: Status = serde_json::from_slice(&whole).unwrap();
        assert_eq!((back.workers.len(), back.workers_omitted), (2000, 0));
        assert!(whole.len() > 100_000);

        let cut = Status::reply(Some(s), 100_000);
        assert!(cut.len() <= 100_000, "{}", cut.len());
        let back: Status = serde_json::from_slice(&cut).unwrap();
        assert_eq!((back.workers.len(), back.workers_omitted), (100, 1900));
        assert_eq!(back.workers[0].id, WorkerName::new("w00000"));
        let c = &back.worker_counts;
        assert_eq!((c.total, c.ready, c.draining), (2000, 1800, 200));
        assert_eq!(c.by_hardware, vec![("cpu".to_string(), 1333), ("t4".to_string(), 667)]);
        let text = back.render();
        assert!(text.contains("workers (2000: 1800 ready, 200 draining; 1333 cpu, 667 t4), the first 100 by id"));
        assert!(text.contains("… and 1900 more"));

        assert_eq!(Status::reply(None, 100), b"null");
    }

    #[test]
    fn lag_quantiles_are_bucket_tops_and_snapshots_subtract() {
        let mut h = LagHistogram::default();
        assert_eq!(h.quantile_ms(0.99), None);
        for _ in 0..98 {
            h.record(10); // bucket [8, 16) µs
        }
        let before = h.clone();
        h.record(1500); // [1024, 2048) µs
        h.record(3000); // [2048, 4096) µs
        assert_eq!(h.quantile_ms(0.5), Some(0.016));
        assert_eq!(h.quantile_ms(0.99), Some(2.048));
        assert_eq!(h.quantile_ms(1.0), Some(4.096));
        let run = h.since(&before);
        assert_eq!(run.samples(), 2);
        assert_eq!(run.quantile_ms(0.5), Some(2.048));
        let mut big = LagHistogram::default();
        big.record(u64::MAX);
        assert_eq!(big.counts[LagHistogram::BUCKETS - 1], 1);
    }
}
