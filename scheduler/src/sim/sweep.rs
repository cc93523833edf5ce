//! The two headline searches: the highest rate multiplier a policy sustains
//! at a bad rate ≤ target on the workload's GPUs (goodput at equal GPUs), and
//! the fewest GPUs that keep the bad rate ≤ target at the workload's rate
//! (GPUs at equal load). Both assume the bad rate grows with load and falls
//! with GPUs, and bisect.

use super::engine::SimOptions;
use super::metrics::RunMetrics;
use super::{run_named, SimError};
use crate::workload::Workload;

/// Bisection steps for the rate multiplier (≈ 0.4% resolution after doubling).
const RATE_STEPS: usize = 8;

/// Highest multiplier `k` with bad rate ≤ `target`; returns that run (or the
/// run at the smallest multiplier tried when even it fails).
pub fn max_goodput(
    w: &Workload,
    name: &str,
    policy: &str,
    opts: &SimOptions,
    target: f64,
    mut progress: impl FnMut(&RunMetrics),
) -> Result<RunMetrics, SimError> {
    let mut at = |k: f64| -> Result<RunMetrics, SimError> {
        let o = SimOptions {
            rate_multiplier: opts.rate_multiplier * k,
            ..opts.clone()
        };
        let r = run_named(w, name, policy, &o)?;
        progress(&r);
        Ok(r)
    };
    let first = at(1.0)?;
    let (mut lo, mut hi, mut best) = if first.bad_rate <= target {
        let mut lo = (1.0, first);
        loop {
            let k = lo.0 * 2.0;
            let r = at(k)?;
            if r.bad_rate > target || k > 1024.0 {
                break (lo.0, k, lo.1);
            }
            lo = (k, r);
        }
    } else {
        let mut hi = 1.0;
        loop {
            let k = hi / 2.0;
            let r = at(k)?;
            if r.bad_rate <= target {
                break (k, hi, r);
            }
            if k < 1.0 / 1024.0 {
                return Ok(r);
            }
            hi = k;
        }
    };
    for _ in 0..RATE_STEPS {
        let mid = (lo + hi) / 2.0;
        let r = at(mid)?;
        if r.bad_rate <= target {
            lo = mid;
            best = r;
        } else {
            hi = mid;
        }
    }
    Ok(best)
}

/// Fewest GPUs (up to `limit`) with bad rate ≤ `target`; `None` when even
/// `limit` GPUs are not enough.
pub fn min_gpus(
    w: &Workload,
    name: &str,
    policy: &str,
    opts: &SimOptions,
    target: f64,
    limit: usize,
    mut progress: impl FnMut(&RunMetrics),
) -> Result<Option<RunMetrics>, SimError> {
    let mut at = |g: usize| -> Result<RunMetrics, SimError> {
        let o = SimOptions {
            gpus: Some(g),
            ..opts.clone()
        };
        let r = run_named(w, name, policy, &o)?;
        progress(&r);
        Ok(r)
    };
    let top = at(limit)?;
    if top.bad_rate > target {
        return Ok(None);
    }
    let (mut lo, mut hi, mut best) = (0usize, limit, top);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        let r = at(mid)?;
        if r.bad_rate <= target {
            hi = mid;
            best = r;
        } else {
            lo = mid;
        }
    }
    Ok(Some(best))
}
