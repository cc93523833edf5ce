//! Admission control at intake: which requests to take in, decided before decoding them.
//!
//! Why: past its capacity a server that decodes, holds and then rejects every request spends its
//! CPU on work it throws away, and goodput collapses (docs/benchmarks.md, "before": 98% of
//! requests `overloaded` at 1.7× the knee). Shedding must cost almost nothing and must happen
//! before the expensive part, and what is admitted must still be served within its SLO.
//!
//! The intake puts each request it takes into a bounded queue drained by the stage that decodes
//! it and hands it to the gateway (the consumer). The controller admits at the rate that
//! consumer *measurably* drains, and enforces it as a bound on the queue's delay:
//!
//! - **Throughput**: every `interval` it measures how many requests left the queue. In an
//!   interval where the queue was never seen empty the consumer never waited for work, so that
//!   count is its capacity right now (CPU it shares with NATS and the rest included); those
//!   intervals feed an EWMA. Intervals with an empty moment say nothing about capacity and leave
//!   it alone.
//! - **Admission**: a request is admitted iff the queue holds fewer than `throughput × target`
//!   requests, i.e. iff its expected sojourn (Little's law) is below `target`. Otherwise it is
//!   shed: answered `overloaded` by the intake at once.
//!
//! Why this and not a token bucket with AIMD probing: in steady overload both admit the drain
//! rate, but a bucket must probe for capacity (and sheds good requests while its rate ramps up
//! after an idle spell, or floods the queue after winding up), whereas a queue kept at
//! `target` worth of work is never empty under overload, so the consumer never starves and
//! the measurement is exact — capacity gained or lost (CPU stolen by a neighbour) shows in the
//! next interval without probing. The admitted rate *is* the measured rate. It is CoDel's idea
//! (act on sojourn time over a target, measured over an interval) applied at admission instead
//! of at dequeue, so nothing admitted is dropped later and a shed request costs one pre-encoded
//! publish.
//!
//! The constants are not fitted to one run: `target` is a small fraction of the default SLO
//! (5 ms of 100 ms) and several intake scheduling gaps on a busy two-core host (so the
//! consumer does not starve when the intake is descheduled); `interval` holds enough requests
//! at any rate worth controlling (50 ms ≥ 500 requests at 10k req/s) to measure a rate; the
//! EWMA weight ½ forgets a stale estimate within a few intervals. Before any busy interval
//! there is no estimate and the queue's own bound applies.
//!
//! Like the core, this is a state machine without a clock: the intake passes `now`.

use crate::core::{Time, MS};

/// The controller's knobs (see the module doc for why these defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdmissionConfig {
    /// Longest expected wait in the queue for an admitted request.
    pub target: Time,
    /// How often throughput is measured.
    pub interval: Time,
    /// The queue's hard bound (its channel capacity).
    pub max_queue: usize,
    /// The smallest bound, so that a low estimate never starves the consumer.
    pub min_queue: usize,
    /// Weight of the newest busy interval in the throughput EWMA.
    pub weight: f64,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            target: 5 * MS,
            interval: 50 * MS,
            max_queue: 8_192,
            min_queue: 32,
            weight: 0.5,
        }
    }
}

/// Admit or shed one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admit,
    Shed,
}

/// Admission by the consumer's measured throughput (module doc).
#[derive(Debug, Clone)]
pub struct Admission {
    cfg: AdmissionConfig,
    /// Requests per second the consumer drains when it has work; `None` until measured.
    throughput: Option<f64>,
    limit: usize,
    // The current interval.
    start: Time,
    len_at_start: usize,
    min_len: usize,
    admitted: u64,
}

impl Admission {
    pub fn new(cfg: AdmissionConfig, now: Time) -> Self {
        Self {
            cfg,
            throughput: None,
            limit: cfg.max_queue,
            start: now,
            len_at_start: 0,
            min_len: 0,
            admitted: 0,
        }
    }

    /// Decides on one request arriving at `now` while the queue holds `queue_len` requests.
    /// The caller enqueues an admitted request at once.
    pub fn offer(&mut self, now: Time, queue_len: usize) -> Verdict {
        self.observe(now, queue_len);
        if queue_len < self.limit {
            self.admitted += 1;
            Verdict::Admit
        } else {
            Verdict::Shed
        }
    }

    /// Records the queue's length at `now` without an arrival (the intake calls it when it is
    /// idle, so that an interval with no arrivals still ends).
    pub fn observe(&mut self, now: Time, queue_len: usize) {
        if now - self.start >= self.cfg.interval {
            self.end_interval(now, queue_len);
        }
        self.min_len = self.min_len.min(queue_len);
    }

    /// The current bound on the queue (requests).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The consumer's measured throughput (req/s), once an interval has measured it.
    pub fn throughput(&self) -> Option<f64> {
        self.throughput
    }

    fn end_interval(&mut self, now: Time, queue_len: usize) {
        let secs = (now - self.start) as f64 * 1e-9;
        // What left the queue: what was there, plus what came in, minus what is there now.
        let drained = (self.len_at_start as u64 + self.admitted).saturating_sub(queue_len as u64);
        if self.min_len.min(queue_len) > 0 && secs > 0.0 {
            let rate = drained as f64 / secs;
            let w = self.cfg.weight;
            self.throughput = Some(self.throughput.map_or(rate, |t| w * rate + (1.0 - w) * t));
        }
        if let Some(t) = self.throughput {
            let bound = (t * self.cfg.target as f64 * 1e-9).ceil() as usize;
            self.limit = bound.clamp(self.cfg.min_queue, self.cfg.max_queue);
        }
        self.start = now;
        self.len_at_start = queue_len;
        self.min_len = queue_len;
        self.admitted = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AdmissionConfig {
        AdmissionConfig {
            target: 5 * MS,
            interval: 50 * MS,
            max_queue: 1_000,
            min_queue: 10,
            weight: 0.5,
        }
    }

    /// Drives the controller with a consumer that drains `capacity` req/s and arrivals at
    /// `offered` req/s, both evenly spaced, for `secs`; returns (admitted, shed, final limit).
    fn simulate(a: &mut Admission, start: Time, offered: f64, capacity: f64, secs: f64) -> (u64, u64, usize) {
        let (mut queue, mut admitted, mut shed) = (0usize, 0u64, 0u64);
        let gap = (1e9 / offered) as Time;
        let service = 1e9 / capacity;
        let mut served = 0.0f64;
        let mut now = start;
        let end = start + (secs * 1e9) as Time;
        while now < end {
            // The consumer drains what it could since the last arrival.
            served += gap as f64 / service;
            let done = (served.floor() as usize).min(queue);
            queue -= done;
            served = if queue == 0 { 0.0 } else { served - done as f64 };
            match a.offer(now, queue) {
                Verdict::Admit => {
                    queue += 1;
                    admitted += 1;
                }
                Verdict::Shed => shed += 1,
            }
            now += gap;
        }
        (admitted, shed, a.limit())
    }

    #[test]
    fn before_any_measurement_the_queue_bound_applies() {
        let mut a = Admission::new(cfg(), 0);
        for i in 0..1_000 {
            assert_eq!(a.offer(i, i as usize), Verdict::Admit);
        }
        assert_eq!(a.offer(1_000, 1_000), Verdict::Shed);
        assert_eq!(a.throughput(), None);
    }

    /// The queue is empty when the intake starts, so the first interval measures nothing; this
    /// ends it at `at` with `len` queued.
    fn started(at: Time, len: usize) -> Admission {
        let mut a = Admission::new(cfg(), 0);
        a.observe(at, len);
        assert_eq!(a.throughput(), None);
        a
    }

    #[test]
    fn a_busy_interval_measures_throughput_and_bounds_the_queue_to_target() {
        let mut a = started(50 * MS, 100);
        // 50 ms; the queue starts at 100, 400 arrive and 300 remain: 200 drained, never empty.
        for i in 0..400 {
            assert_eq!(a.offer(50 * MS + i * 100_000, 150), Verdict::Admit);
        }
        a.observe(100 * MS, 300);
        // 200 in 50 ms = 4,000 req/s; 5 ms of it = 20 requests.
        assert_eq!(a.throughput(), Some(4_000.0));
        assert_eq!(a.limit(), 20);
        assert_eq!(a.offer(100 * MS + 1, 19), Verdict::Admit);
        assert_eq!(a.offer(100 * MS + 2, 20), Verdict::Shed);
    }

    #[test]
    fn an_interval_with_an_empty_queue_leaves_the_estimate_alone() {
        let mut a = started(50 * MS, 100);
        a.offer(50 * MS + 1, 100);
        a.observe(70 * MS, 0);
        a.offer(80 * MS, 3);
        a.observe(100 * MS, 2);
        // The queue emptied: 99 drained is a lower bound, not a capacity.
        assert_eq!(a.throughput(), None);
        assert_eq!(a.limit(), 1_000);
    }

    #[test]
    fn the_estimate_is_an_ewma_of_busy_intervals() {
        let mut a = started(50 * MS, 200);
        a.offer(50 * MS + 1, 200);
        a.observe(100 * MS, 100); // 200 + 1 - 100 = 101 drained in 50 ms: 2,020 req/s
        assert_eq!(a.throughput(), Some(2_020.0));
        // The bound is now 11: this one is admitted.
        assert_eq!(a.offer(100 * MS + 1, 5), Verdict::Admit);
        a.observe(150 * MS, 1); // 100 + 1 - 1 = 100 in 50 ms: 2,000 req/s
        assert_eq!(a.throughput(), Some(0.5 * 2_000.0 + 0.5 * 2_020.0));
        // 2,010 req/s × 5 ms = 10.05, rounded up.
        assert_eq!(a.limit(), 11);
    }

    #[test]
    fn the_bound_never_falls_below_the_minimum() {
        let mut a = started(50 * MS, 5);
        a.offer(50 * MS + 1, 5);
        a.observe(100 * MS, 5); // 1 drained: 20 req/s, a tenth of a request in 5 ms
        assert_eq!(a.throughput(), Some(20.0));
        assert_eq!(a.limit(), 10);
    }

    #[test]
    fn under_ten_times_overload_it_admits_the_capacity_and_the_queue_stays_near_target() {
        let mut a = Admission::new(cfg(), 0);
        let (admitted, shed, limit) = simulate(&mut a, 0, 100_000.0, 10_000.0, 2.0);
        // 10k req/s for 2 s, less the first interval's fill of the hard bound.
        assert!((19_000..=21_100).contains(&admitted), "admitted {admitted}");
        assert_eq!(admitted + shed, 200_000);
        // 10k req/s × 5 ms = 50 requests (± one for the measurement's rounding).
        assert!((49..=52).contains(&limit), "limit {limit}");
        let t = a.throughput().unwrap();
        assert!((t - 10_000.0).abs() < 300.0, "{t}");
    }

    #[test]
    fn below_capacity_nothing_is_shed() {
        let mut a = Admission::new(cfg(), 0);
        let (admitted, shed, _) = simulate(&mut a, 0, 5_000.0, 10_000.0, 2.0);
        assert_eq!((admitted, shed), (10_000, 0));
    }

    #[test]
    fn it_follows_capacity_down_and_up_without_probing() {
        let mut a = Admission::new(cfg(), 0);
        simulate(&mut a, 0, 50_000.0, 10_000.0, 1.0);
        // The consumer loses half its CPU: within a few intervals the bound halves.
        simulate(&mut a, 1_000 * MS, 50_000.0, 5_000.0, 0.5);
        assert!((24..=27).contains(&a.limit()), "{}", a.limit());
        // And gets it back.
        simulate(&mut a, 1_500 * MS, 50_000.0, 10_000.0, 0.5);
        assert!((48..=52).contains(&a.limit()), "{}", a.limit());
    }
}
