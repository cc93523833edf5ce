//! The latency table the core plans with: `L(b)` in nanoseconds for
//! b = 1..=max_batch, taken from a profile once (`baton_common::profile::Profile::latency_table`)
//! so the hot path is an array lookup.
//!
//! Profiles go stale (another tenant on the GPU, a different driver, a
//! profile from other hardware), so the table corrects itself from what
//! batches really take: [`LatencyTable::observe`] keeps an EWMA of
//! actual / profiled mean over every finished batch and scales the whole
//! table (mean and std, so the safety margin the std gives is kept) by it. One factor per model, rather than one per batch size, so batch sizes
//! never run are corrected too and the table stays non-decreasing.

use super::Time;

#[derive(Debug, Clone)]
pub struct LatencyTable {
    /// `ns[b]` is L(b) as planned with; `ns[0]` is unused (0).
    ns: Vec<Time>,
    /// The profile's L(b), before correction.
    base: Vec<Time>,
    /// The profile's mean part of L(b) (L minus the std margin), what a
    /// batch is expected to take on average.
    mean: Vec<Time>,
    /// EWMA of actual / profiled batch time (1 until a batch is observed).
    factor: f64,
}

impl LatencyTable {
    /// A table from a function, for tests and synthetic benchmarks (no std).
    pub fn from_fn(max_batch: u32, f: impl Fn(u32) -> Time) -> Self {
        Self::from_fn_with_std(max_batch, f, |_| 0)
    }

    /// L(b) = `mean(b) + std(b)`, forced non-decreasing.
    pub fn from_fn_with_std(max_batch: u32, mean: impl Fn(u32) -> Time, std: impl Fn(u32) -> Time) -> Self {
        assert!(max_batch >= 1, "a latency table needs at least batch size 1");
        let mut ns = vec![0];
        let mut means = vec![0];
        for b in 1..=max_batch {
            let (m, s) = (mean(b), std(b).max(0));
            let prev = *ns.last().expect("starts with 0");
            ns.push((m + s).max(prev));
            means.push(m.max(*means.last().expect("starts with 0")));
        }
        Self {
            base: ns.clone(),
            mean: means,
            ns,
            factor: 1.0,
        }
    }

    /// A batch of `b` really took `actual`: moves the correction factor by
    /// `alpha` towards actual / profiled and rescales the table.
    pub fn observe(&mut self, b: u32, actual: Time, alpha: f64) {
        let Some(&base) = self.mean.get(b as usize) else { return };
        if base <= 0 || actual <= 0 || alpha.is_nan() || alpha <= 0.0 {
            return;
        }
        let ratio = (actual as f64 / base as f64).clamp(0.05, 20.0);
        self.factor = (1.0 - alpha.min(1.0)) * self.factor + alpha.min(1.0) * ratio;
        for (n, &b) in self.ns.iter_mut().zip(&self.base) {
            *n = (b as f64 * self.factor).round() as Time;
        }
    }

    /// The current correction factor (actual / profiled).
    pub fn factor(&self) -> f64 {
        self.factor
    }

    pub fn max_batch(&self) -> u32 {
        (self.ns.len() - 1) as u32
    }

    /// L(b). Panics outside 1..=max_batch: the core never asks for that.
    #[inline]
    pub fn get(&self, b: u32) -> Time {
        debug_assert!(b >= 1 && b <= self.max_batch(), "batch {b} out of range");
        self.ns[b as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_off_by_two_converges() {
        // Profiled 1 + b ms; batches really take twice that.
        let mut t = LatencyTable::from_fn(8, |b| 1_000_000 * (1 + Time::from(b)));
        for i in 0..60 {
            let b = 1 + (i % 8) as u32;
            t.observe(b, 2_000_000 * (1 + Time::from(b)), 0.1);
        }
        assert!((t.factor() - 2.0).abs() < 0.01, "{}", t.factor());
        // Every batch size is corrected, observed or not, and stays non-decreasing.
        assert!((t.get(3) - 8_000_000).abs() < 100_000, "{}", t.get(3));
        assert!((1..8).all(|b| t.get(b) <= t.get(b + 1)));
        // The std margin is kept: observing exactly the mean changes nothing.
        let mut m = LatencyTable::from_fn_with_std(4, |b| 10 * Time::from(b), Time::from);
        m.observe(2, 20, 0.5);
        assert_eq!((m.factor(), m.get(2)), (1.0, 22));
        // No weight: no change.
        let mut u = LatencyTable::from_fn(4, Time::from);
        u.observe(2, 100, 0.0);
        assert_eq!(u.factor(), 1.0);
    }
}
