//! Dispatch latency models: how long a request can take inside one module when `n` workers of one
//! hardware type run batches of `b` behind a given dispatcher.
//!
//! # Why the model includes Baton's delivery lead
//!
//! The planner's promise is checked against the real dispatcher (`--verify` runs the simulator).
//! In Baton a batch of `b` cannot start before its plan and inputs reach the worker, `δ_ctrl +
//! b·δ_data` after the dispatcher decides, and the dispatcher keeps `ε` of margin before a batch's
//! latest start (DESIGN.md §4). A planner that budgets only the profile's `d(b)` promises batches
//! that the runtime cannot start in time, so the execution latency the planner uses is
//!
//! ```text
//! ℓ(b) = d(b) + δ_ctrl + b·δ_data + ε
//! ```
//!
//! and a worker's throughput at batch `b` is `ρ·b/ℓ(b)`, where `ρ ≤ 1` ([`PlanOptions::max_util`])
//! keeps headroom for Poisson bursts.
//!
//! # The two dispatchers (DESIGN.md §6)
//!
//! - **Batch-aware** central dispatch (Harpagon; what Baton's dispatcher does): the tuple's whole
//!   rate `r` feeds one queue, so a batch of `b` fills in `(b−1)/r` and then runs `ℓ(b)`:
//!   `ℓ(b) + (b−1)/r ≤ L`. More workers mean a higher `r` per tuple and therefore larger batches.
//! - **Round-robin** (Nexus): each of the `n` workers batches its own `r/n` share. A saturated
//!   worker needs Nexus' "2×" rule `2·ℓ(b) ≤ L` (one batch executing while the next one fills); a
//!   lightly loaded worker waits `(b−1)·n/r` to fill: `ℓ(b) + max(ℓ(b), (b−1)·n/r) ≤ L`.
//!
//! # Dummy requests
//!
//! At a low rate the fill time `(b−1)/r` is what rules out a large, cheap batch. Harpagon pads the
//! tuple's rate with dummy requests up to its capacity `n·ρ·b/ℓ(b)`: the workers are paid for
//! anyway, and the fill time shrinks. [`HwModel::fits`] reports the dummy rate a tuple needs (0
//! when the real rate alone fits). Baton's deferred dispatcher does not need actual dummies — it
//! sends a partial batch just in time — but the bound is the same.
//!
//! [`PlanOptions::max_util`]: super::PlanOptions::max_util

use baton_common::profile::Profile;

use super::{Cost, PlanOptions};

/// Slack for floating-point comparisons of milliseconds.
const EPS_MS: f64 = 1e-9;

/// How requests reach a tuple's workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dispatch {
    /// Central, batch-aware dispatch (Harpagon, Baton): `ℓ(b) + (b−1)/r ≤ L`.
    #[default]
    BatchAware,
    /// Per-worker batching behind round-robin (Nexus): `ℓ(b) + max(ℓ(b), (b−1)·n/r) ≤ L`.
    RoundRobin,
}

impl Dispatch {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Dispatch::BatchAware => "batch-aware",
            Dispatch::RoundRobin => "round-robin",
        }
    }
}

/// Fixed delays the runtime adds to every batch, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Overheads {
    /// δ_ctrl: delivering a plan to a worker.
    pub ctrl_ms: f64,
    /// δ_data: moving one request's input to a worker.
    pub data_ms: f64,
    /// ε: the dispatcher's timer margin before a batch's latest start.
    pub epsilon_ms: f64,
}

impl Overheads {
    /// No overheads: the planner sees the bare profile (hand-computed tests, the paper's model).
    pub const NONE: Overheads = Overheads {
        ctrl_ms: 0.0,
        data_ms: 0.0,
        epsilon_ms: 0.0,
    };

    /// The overheads of the dispatcher's constants.
    pub fn from_deltas(d: &crate::core::Deltas) -> Overheads {
        let ms = |t: crate::core::Time| t as f64 / crate::core::MS as f64;
        Overheads {
            ctrl_ms: ms(d.ctrl),
            data_ms: ms(d.data),
            epsilon_ms: ms(d.epsilon),
        }
    }
}

impl Default for Overheads {
    /// Baton's default dispatcher settings (δ_ctrl 100 µs, δ_data 50 µs, ε 100 µs).
    fn default() -> Self {
        Overheads::from_deltas(&crate::core::CoreConfig::default().deltas)
    }
}

/// One module on one hardware type, as the planner sees it: `ℓ(b)` and throughput per worker.
#[derive(Debug, Clone)]
pub struct HwModel {
    /// Index of the hardware type in the problem.
    pub hw: usize,
    /// Price of one worker, micro-dollars per hour.
    pub price: Cost,
    /// `lat_ms[b]` = ℓ(b) for b = 1..=max_batch (`lat_ms[0]` unused).
    lat_ms: Vec<f64>,
    /// `thr[b]` = ρ·b/ℓ(b) in requests per second.
    thr: Vec<f64>,
    dispatch: Dispatch,
}

impl HwModel {
    /// Builds the model of `profile` on hardware `hw` costing `price` µ$/h.
    pub fn new(hw: usize, price: Cost, profile: &Profile, opts: &PlanOptions) -> HwModel {
        let o = &opts.overheads;
        let mut lat_ms = vec![0.0];
        let mut thr = vec![0.0];
        for b in 1..=profile.max_batch() {
            // In range by construction.
            let d = profile.latency_us(b).unwrap_or(f64::INFINITY) / 1000.0;
            let l = d + o.ctrl_ms + f64::from(b) * o.data_ms + o.epsilon_ms;
            lat_ms.push(l);
            thr.push(opts.max_util * f64::from(b) / l * 1000.0);
        }
        HwModel {
            hw,
            price,
            lat_ms,
            thr,
            dispatch: opts.dispatch,
        }
    }

    /// The same model behind a different dispatcher.
    pub fn with_dispatch(mut self, dispatch: Dispatch) -> HwModel {
        self.dispatch = dispatch;
        self
    }

    /// The largest batch size.
    pub fn max_batch(&self) -> u32 {
        (self.lat_ms.len() - 1) as u32
    }

    /// ℓ(b) in milliseconds.
    pub fn latency_ms(&self, b: u32) -> f64 {
        self.lat_ms[b as usize]
    }

    /// Throughput of one worker at batch `b`, requests per second.
    pub fn throughput(&self, b: u32) -> f64 {
        self.thr[b as usize]
    }

    /// Worst-case latency of a request in a tuple of `n` workers at batch `b` fed `rate` req/s.
    pub fn tuple_latency_ms(&self, b: u32, n: u32, rate: f64) -> f64 {
        let l = self.latency_ms(b);
        let fill = |r: f64| {
            if b == 1 {
                0.0
            } else if r <= 0.0 {
                f64::INFINITY
            } else {
                f64::from(b - 1) / r * 1000.0
            }
        };
        match self.dispatch {
            Dispatch::BatchAware => l + fill(rate),
            Dispatch::RoundRobin => l + l.max(fill(rate / f64::from(n.max(1)))),
        }
    }

    /// Whether `n` workers at batch `b` serving `rate` req/s keep every request within `budget_ms`:
    /// `Some(dummy_rps)` if so — 0 when the real rate fits alone, else the padding up to the tuple's
    /// capacity that makes it fit (only when `dummies` is allowed) — and `None` if not. The tuple's
    /// capacity must cover `rate`.
    pub fn fits(&self, b: u32, n: u32, rate: f64, budget_ms: f64, dummies: bool) -> Option<f64> {
        let cap = f64::from(n) * self.throughput(b);
        if cap + EPS_MS < rate {
            return None;
        }
        if self.tuple_latency_ms(b, n, rate) <= budget_ms + EPS_MS {
            return Some(0.0);
        }
        (dummies && self.tuple_latency_ms(b, n, cap) <= budget_ms + EPS_MS).then_some(cap - rate)
    }

    /// The best batch for `n` workers padded to capacity within `budget_ms`: the feasible `b` with
    /// the highest throughput, and the tuple's capacity `n·ρ·b/ℓ(b)`.
    pub fn best_padded(&self, n: u32, budget_ms: f64) -> Option<(u32, f64)> {
        let mut best: Option<(u32, f64)> = None;
        for b in 1..=self.max_batch() {
            if self.latency_ms(b) > budget_ms + EPS_MS {
                break; // ℓ is non-decreasing: no larger batch fits either.
            }
            let cap = f64::from(n) * self.throughput(b);
            if self.tuple_latency_ms(b, n, cap) <= budget_ms + EPS_MS && best.is_none_or(|(_, c)| cap > c) {
                best = Some((b, cap));
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(dispatch: Dispatch) -> HwModel {
        // d(b) = 10·b + 10 ms: throughput b/(10b + 10) s⁻¹.
        let p = Profile::from_spec("sleep#10000,10000,0,0", 8).unwrap();
        let opts = PlanOptions {
            dispatch,
            overheads: Overheads::NONE,
            max_util: 1.0,
            ..PlanOptions::default()
        };
        HwModel::new(0, 1_000_000, &p, &opts)
    }

    #[test]
    fn batch_aware_fill_time_shrinks_with_rate() {
        let m = model(Dispatch::BatchAware);
        // b = 4: ℓ = 50 ms, one worker's throughput 80/s.
        assert_eq!(m.latency_ms(4), 50.0);
        assert_eq!(m.throughput(4), 80.0);
        // At 80/s: 50 + 3/80 s = 87.5 ms; at 30/s: 50 + 100 = 150 ms.
        assert_eq!(m.tuple_latency_ms(4, 1, 80.0), 87.5);
        assert_eq!(m.tuple_latency_ms(4, 1, 30.0), 150.0);
        // Budget 100 ms: 30/s alone misses, padding with 50 dummies/s fits.
        assert_eq!(m.fits(4, 1, 30.0, 100.0, false), None);
        assert_eq!(m.fits(4, 1, 30.0, 100.0, true), Some(50.0));
        // Two padded workers, budget 100 ms: batch 7 (ℓ 80, 175/s) fills in 6/175 s = 34.3 ms → 114.3 ✗;
        // batch 6 (ℓ 70, 1200/7 = 171.4/s) fills in 29.2 ms → 99.2 ✓.
        let (b, cap) = m.best_padded(2, 100.0).unwrap();
        assert_eq!(b, 6);
        assert!((cap - 1200.0 / 7.0).abs() < 1e-9);
    }

    #[test]
    fn round_robin_is_the_two_times_rule_when_saturated() {
        let m = model(Dispatch::RoundRobin);
        assert_eq!(m.tuple_latency_ms(4, 2, 160.0), 100.0);
        // Lightly loaded: each worker sees 10/s and waits 300 ms to fill.
        assert_eq!(m.tuple_latency_ms(4, 2, 20.0), 350.0);
    }
}
