//! The search for the highest rate the dispatcher keeps up with.
//!
//! Double the rate from a start until a run fails, then bisect between the highest pass and the
//! lowest failure a few times. If the very first run fails, halve instead until one passes (or
//! the rate is 1/64 of the start, when there is nothing worth bisecting). What makes a run pass
//! is the caller's business; the search only needs the verdict, so it runs without a clock or a
//! dispatcher in the tests below.

/// Where the search stands: the next rate to try, given the verdicts so far.
#[derive(Debug, Clone)]
pub struct RateSearch {
    start: f64,
    max_rate: f64,
    bisect_steps: usize,
    /// Highest rate that passed, lowest that failed.
    pass: Option<f64>,
    fail: Option<f64>,
    bisected: usize,
}

impl RateSearch {
    /// Starts at `start` req/s, doubles up to `max_rate` at most, then bisects `bisect_steps`
    /// times.
    pub fn new(start: f64, max_rate: f64, bisect_steps: usize) -> Self {
        RateSearch {
            start,
            max_rate: max_rate.max(start),
            bisect_steps,
            pass: None,
            fail: None,
            bisected: 0,
        }
    }

    /// The next rate to run, or `None` when the search is over.
    pub fn next(&self) -> Option<f64> {
        match (self.pass, self.fail) {
            (None, None) => Some(self.start),
            (Some(p), None) => (p < self.max_rate).then(|| (p * 2.0).min(self.max_rate)),
            (None, Some(f)) => (f > self.start / 64.0).then_some(f / 2.0),
            (Some(p), Some(f)) => {
                let mid = round_rate((p + f) / 2.0);
                let close = f - p <= 0.02 * p;
                (self.bisected < self.bisect_steps && !close && mid > p && mid < f).then_some(mid)
            }
        }
    }

    /// The verdict of a run at `rate`.
    pub fn record(&mut self, rate: f64, pass: bool) {
        if self.pass.is_some() && self.fail.is_some() {
            self.bisected += 1;
        }
        if pass {
            self.pass = Some(self.pass.map_or(rate, |p| p.max(rate)));
        } else {
            self.fail = Some(self.fail.map_or(rate, |f| f.min(rate)));
        }
    }

    /// The highest rate that passed.
    pub fn best(&self) -> Option<f64> {
        self.pass
    }
}

/// A bisection midpoint rounded to a readable rate: whole thousands from 10,000 req/s, whole
/// hundreds below.
fn round_rate(r: f64) -> f64 {
    let unit = if r >= 10_000.0 { 1000.0 } else { 100.0 };
    (r / unit).round() * unit
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rates the search runs when a run passes iff `passes(rate)`.
    fn trace(mut s: RateSearch, passes: impl Fn(f64) -> bool) -> Vec<f64> {
        let mut tried = Vec::new();
        while let Some(r) = s.next() {
            assert!(tried.len() < 50, "the search does not end: {tried:?}");
            tried.push(r);
            s.record(r, passes(r));
        }
        tried
    }

    #[test]
    fn doubles_then_bisects() {
        let s = RateSearch::new(50_000.0, 1e9, 3);
        let tried = trace(s.clone(), |r| r <= 137_000.0);
        // 200k fails; 150k fails; 125k passes; 137.5k rounds to 138k, which fails: 3 bisections.
        assert_eq!(tried, [50e3, 100e3, 200e3, 150e3, 125e3, 138e3]);
        let mut s = s;
        for r in tried {
            s.record(r, r <= 137_000.0);
        }
        assert_eq!(s.best(), Some(125e3));
    }

    #[test]
    fn halves_when_the_start_fails() {
        let tried = trace(RateSearch::new(50_000.0, 1e9, 2), |r| r <= 20_000.0);
        // 12.5k passes; then 18.75k → 19k passes, 22k fails.
        assert_eq!(tried, [50e3, 25e3, 12.5e3, 19e3, 22e3]);
    }

    #[test]
    fn gives_up_when_nothing_passes_and_stops_at_the_cap() {
        let tried = trace(RateSearch::new(64_000.0, 1e9, 3), |_| false);
        assert_eq!(tried, [64e3, 32e3, 16e3, 8e3, 4e3, 2e3, 1e3]);
        let tried = trace(RateSearch::new(50_000.0, 300_000.0, 3), |_| true);
        assert_eq!(tried, [50e3, 100e3, 200e3, 300e3]);
    }

    #[test]
    fn stops_bisecting_when_the_bounds_meet() {
        // Pass at 100k, fail at 101k: within 2%, nothing left to bisect.
        let mut s = RateSearch::new(100_000.0, 101_000.0, 5);
        s.record(100_000.0, true);
        assert_eq!(s.next(), Some(101_000.0));
        s.record(101_000.0, false);
        assert_eq!(s.next(), None);
        assert_eq!(s.best(), Some(100_000.0));
    }
}
