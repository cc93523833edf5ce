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
//! and a worker's throughput at batch `b` is `min(ρ·b, μ_q(b))/ℓ(b)`, where `ρ ≤ 1`
//! ([`PlanOptions::max_util`]) is a flat headroom and `μ_q(b)` the burst limit below.
//!
//! # Burst limit
//!
//! The bounds below are deterministic: they assume at most `b` requests arrive while a worker is
//! busy. With Poisson arrivals at mean `μ` per interval, more than `b` arrive with probability
//! `P(Poisson(μ) > b)`, and then the extra requests wait a whole extra batch — a miss when the
//! budget is tight. Verification showed exactly that: one-worker tuples at batch 1–3 with budgets
//! of `2·ℓ(b)` lost 2–13% of requests even at 45% load. So the planner loads a worker only up to
//! `μ_q(b)` requests per `ℓ(b)`, the largest mean with `P(Poisson(μ) > b) ≤ q`
//! ([`PlanOptions::burst_quantile`], default 1%): about 15% of a worker at batch 1, 32% at 4, 66%
//! at 32. Large batches are barely affected, small ones get the headroom they need.
//!
//! # The two dispatchers (DESIGN.md §6)
//!
//! - **Batch-aware** central dispatch (Harpagon; what Baton's dispatcher does): the tuple's whole
//!   rate `r` feeds one queue, so a batch of `b` fills in `(b−1)/r` and then runs `ℓ(b)`. More
//!   workers mean a higher `r` per tuple and therefore larger batches. DESIGN.md §6 states the bound
//!   as `ℓ(b) + (b−1)/r ≤ L`, but that assumes a worker is free the moment the batch is full. With
//!   Poisson arrivals a batch can be ready while all `n` workers are busy; staggered workers free
//!   one every `ℓ(b)/n` (the `L(b)·(1 + 1/n)` of the dispatcher's own target rule, DESIGN.md §4),
//!   and the batch fills meanwhile, so we plan with `ℓ(b) + max((b−1)/r, ℓ(b)/n) ≤ L`. Without the
//!   wait term, verification found one-worker batch-1 tuples with budgets just above `ℓ(1)` losing
//!   up to 38% of their requests.
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
    /// The constants of Baton's default dispatcher settings ([`crate::core::CoreConfig::default`]), so a
    /// plan matches the runtime it will run in (and `--verify`, which simulates with the same ones).
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
            let mut per_batch = opts.max_util * f64::from(b);
            if let Some(q) = opts.burst_quantile {
                per_batch = per_batch.min(poisson_limit(b, q));
            }
            thr.push(per_batch / l * 1000.0);
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

    /// The infimum of [`tuple_latency_ms`](Self::tuple_latency_ms) over tuples: batch 1 with
    /// unboundedly many workers (`ℓ(1)`) behind batch-aware dispatch, `2·ℓ(1)` behind round-robin.
    pub fn min_latency_ms(&self) -> f64 {
        match self.dispatch {
            Dispatch::BatchAware => self.latency_ms(1),
            Dispatch::RoundRobin => 2.0 * self.latency_ms(1),
        }
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
            // The batch fills while the tuple's workers free up, one every ℓ(b)/n when staggered.
            Dispatch::BatchAware => l + fill(rate).max(l / f64::from(n.max(1))),
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

/// The largest mean `μ` with `P(Poisson(μ) > b) ≤ q`, by bisection (`P` grows with `μ`).
pub fn poisson_limit(b: u32, q: f64) -> f64 {
    let tail = |mu: f64| {
        // 1 − P(N ≤ b), summing the pmf upwards.
        let mut term = (-mu).exp();
        let mut cdf = term;
        for k in 1..=b {
            term *= mu / f64::from(k);
            cdf += term;
        }
        1.0 - cdf
    };
    let (mut lo, mut hi) = (0.0, f64::from(b) + 1.0);
    for _ in 0..40 {
        let mid = (lo + hi) / 2.0;
        if tail(mid) <= q {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
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
            burst_quantile: None,
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
        // One worker: the batch fills in 3/80 s = 37.5 ms but the worker frees only every 50 ms;
        // at 30/s the fill time, 100 ms, dominates.
        assert_eq!(m.tuple_latency_ms(4, 1, 80.0), 100.0);
        assert_eq!(m.tuple_latency_ms(4, 1, 30.0), 150.0);
        // Four workers at 320/s: fill 9.375 ms, a worker frees every 12.5 ms.
        assert_eq!(m.tuple_latency_ms(4, 4, 320.0), 62.5);
        // Budget 100 ms: 30/s alone misses, padding with 50 dummies/s fits.
        assert_eq!(m.fits(4, 1, 30.0, 100.0, false), None);
        assert_eq!(m.fits(4, 1, 30.0, 100.0, true), Some(50.0));
        // Two padded workers, budget 100 ms: batch 6 (ℓ 70) waits 35 ms → 105 ✗; batch 5 (ℓ 60,
        // 2·83.3/s) fills in 24 ms, waits 30 → 90 ✓.
        let (b, cap) = m.best_padded(2, 100.0).unwrap();
        assert_eq!(b, 5);
        assert!((cap - 500.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn poisson_limits() {
        // P(Poisson(μ) ≥ 2) = 1 − e^−μ(1 + μ) = 1% at μ ≈ 0.1486.
        assert!((poisson_limit(1, 0.01) - 0.1486).abs() < 1e-3);
        let at = |b| poisson_limit(b, 0.01) / f64::from(b);
        assert!((at(4) - 0.3198).abs() < 1e-3, "{}", at(4));
        assert!((at(32) - 0.6600).abs() < 1e-3, "{}", at(32));
    }

    #[test]
    fn round_robin_is_the_two_times_rule_when_saturated() {
        let m = model(Dispatch::RoundRobin);
        assert_eq!(m.tuple_latency_ms(4, 2, 160.0), 100.0);
        // Lightly loaded: each worker sees 10/s and waits 300 ms to fill.
        assert_eq!(m.tuple_latency_ms(4, 2, 20.0), 350.0);
    }
}
