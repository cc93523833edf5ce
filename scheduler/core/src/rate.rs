//! Arrival-rate meter: counts arrivals in fixed buckets (50 ms by default) and
//! averages the sealed buckets of a sliding window (5 s by default).
//!
//! The meter is driven by the times it is given, never by a clock, so the
//! simulator and the runtime see the same estimate for the same arrivals.
//! Sealing a bucket is the only moment the estimate changes, which lets the
//! core recompute `B_target` once per bucket instead of once per arrival.

use super::Time;

#[derive(Debug, Clone)]
pub struct RateMeter {
    bucket: Time,
    ring: Vec<u32>,
    /// Index of the next ring slot to overwrite.
    next: usize,
    /// Number of sealed buckets in the ring (≤ ring.len()).
    sealed: usize,
    sealed_sum: u64,
    /// Bucket number (time / bucket) that `current` counts; `None` before the first hit.
    current_index: Option<i64>,
    current: u32,
}

impl RateMeter {
    /// `bucket` and `window` in nanoseconds; the window holds `window / bucket` buckets.
    pub fn new(bucket: Time, window: Time) -> Self {
        assert!(bucket > 0 && window >= bucket, "rate meter needs 0 < bucket <= window");
        let n = (window / bucket) as usize;
        Self {
            bucket,
            ring: vec![0; n],
            next: 0,
            sealed: 0,
            sealed_sum: 0,
            current_index: None,
            current: 0,
        }
    }

    /// Seals every bucket that ended at or before `now`. Returns true when the
    /// estimate changed (at least one bucket was sealed).
    pub fn advance(&mut self, now: Time) -> bool {
        let idx = now.div_euclid(self.bucket);
        let Some(cur) = self.current_index else {
            self.current_index = Some(idx);
            return false;
        };
        if idx <= cur {
            return false;
        }
        // Seal the current bucket, then any empty ones in between (at most a
        // full window of them: older ones would be overwritten anyway).
        let gap = (idx - cur).min(self.ring.len() as i64 + 1);
        let mut count = self.current;
        for _ in 0..gap {
            self.seal(count);
            count = 0;
        }
        self.current = 0;
        self.current_index = Some(idx);
        true
    }

    fn seal(&mut self, count: u32) {
        let old = std::mem::replace(&mut self.ring[self.next], count);
        if self.sealed == self.ring.len() {
            self.sealed_sum -= u64::from(old);
        } else {
            self.sealed += 1;
        }
        self.sealed_sum += u64::from(count);
        self.next = (self.next + 1) % self.ring.len();
    }

    /// Records one arrival at `now`; returns true when the estimate changed.
    pub fn hit(&mut self, now: Time) -> bool {
        let changed = self.advance(now);
        self.current += 1;
        changed
    }

    /// Requests per second over the sealed buckets, or `None` before the first
    /// bucket has been sealed.
    pub fn rate(&self) -> Option<f64> {
        if self.sealed == 0 {
            return None;
        }
        let secs = self.sealed as f64 * self.bucket as f64 * 1e-9;
        Some(self.sealed_sum as f64 / secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Time = 1_000_000;

    #[test]
    fn unknown_until_first_bucket_is_sealed() {
        let mut m = RateMeter::new(50 * MS, 5000 * MS);
        assert_eq!(m.rate(), None);
        m.hit(0);
        m.hit(10 * MS);
        assert_eq!(m.rate(), None);
        assert!(m.hit(50 * MS));
        // Two arrivals in one sealed 50 ms bucket: 40 req/s.
        assert_eq!(m.rate(), Some(40.0));
    }

    #[test]
    fn steady_rate_is_measured_exactly() {
        let mut m = RateMeter::new(50 * MS, 5000 * MS);
        // 1000 req/s for 10 s: one arrival every millisecond.
        for i in 0..10_000 {
            m.hit(i * MS);
        }
        m.advance(10_000 * MS);
        let r = m.rate().unwrap();
        assert!((r - 1000.0).abs() < 1e-9, "{r}");
    }

    #[test]
    fn idle_gap_empties_the_window() {
        let mut m = RateMeter::new(50 * MS, 5000 * MS);
        for i in 0..1000 {
            m.hit(i * MS);
        }
        m.advance(1_000_000 * MS);
        assert_eq!(m.rate(), Some(0.0));
    }
}
