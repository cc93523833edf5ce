//! The latency table the core plans with: `L(b)` in nanoseconds for
//! b = 1..=max_batch, taken from a [`Profile`] once so the hot path is an
//! array lookup.

use baton_common::profile::Profile;

use super::Time;

#[derive(Debug, Clone)]
pub struct LatencyTable {
    /// `ns[b]` is L(b); `ns[0]` is unused (0).
    ns: Vec<Time>,
}

impl LatencyTable {
    /// L(b) = mean + std + pre + post, already forced non-decreasing by the profile.
    pub fn from_profile(p: &Profile) -> Self {
        let max = p.max_batch();
        let mut ns = Vec::with_capacity(max as usize + 1);
        ns.push(0);
        for b in 1..=max {
            // In range by construction; a profile never yields an error for 1..=max.
            let l = p.latency_ns(b).unwrap_or(u64::MAX / 4);
            ns.push(l as Time);
        }
        Self::monotone(ns)
    }

    /// A table from a function, for tests and synthetic benchmarks.
    pub fn from_fn(max_batch: u32, f: impl Fn(u32) -> Time) -> Self {
        let mut ns = vec![0];
        ns.extend((1..=max_batch).map(f));
        Self::monotone(ns)
    }

    fn monotone(mut ns: Vec<Time>) -> Self {
        assert!(ns.len() >= 2, "a latency table needs at least batch size 1");
        for i in 2..ns.len() {
            ns[i] = ns[i].max(ns[i - 1]);
        }
        Self { ns }
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
