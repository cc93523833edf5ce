//! Open-loop pacing to the wall clock: how many events are due by now.
//!
//! The emulated gateways send requests, and the emulated workers heartbeats, at a fixed rate
//! whatever the dispatcher does (open loop: a slow dispatcher must not slow its load down, or
//! the benchmark would measure a rate it chose itself). A [`Pacer`] does not sleep: its owner
//! wakes when it can (every ~100 µs for arrivals, every millisecond for heartbeats), asks which
//! events fell due since the last wake-up, and sends them all. Event `n` is due at `n / rate`
//! seconds, so the count sent by any instant is exact, however late or irregular the wake-ups.

use std::ops::Range;
use std::time::Duration;

/// Numbers the events of a constant-rate process and says which are due.
#[derive(Debug, Clone)]
pub struct Pacer {
    rate: f64,
    released: u64,
}

impl Pacer {
    /// Events at `rate` per second, the first (number 0) due at once.
    pub fn new(rate: f64) -> Self {
        Pacer { rate, released: 0 }
    }

    /// The events due by `elapsed` since the start that were not yet released: event `n` is
    /// due at `n / rate`. Each event is released once; an earlier `elapsed` than last time
    /// releases nothing.
    pub fn due(&mut self, elapsed: Duration) -> Range<u64> {
        // `+ 1`: event 0 is due at time 0.
        let by_now = (self.rate * elapsed.as_secs_f64()).floor() as u64 + 1;
        let due = self.released..by_now.max(self.released);
        self.released = due.end;
        due
    }

    /// Events released so far.
    pub fn released(&self) -> u64 {
        self.released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn releases_each_event_once_at_its_time() {
        // 1,000 per second: event n is due at n ms.
        let mut p = Pacer::new(1000.0);
        assert_eq!(p.due(Duration::ZERO), 0..1);
        assert_eq!(p.due(Duration::from_micros(999)), 1..1);
        assert_eq!(p.due(ms(1)), 1..2);
        // A late wake-up catches up with everything due meanwhile.
        assert_eq!(p.due(ms(10)), 2..11);
        // Time going backwards (or standing still) releases nothing.
        assert_eq!(p.due(ms(5)), 11..11);
        assert_eq!(p.due(ms(10)), 11..11);
        assert_eq!(p.released(), 11);
    }

    #[test]
    fn count_is_exact_whatever_the_wake_ups() {
        // 250,000 per second over one second, woken at irregular gaps of 37 to 1,337 µs.
        let mut p = Pacer::new(250_000.0);
        let (mut t, mut gap, mut total) = (0u64, 37u64, 0u64);
        while t < 1_000_000 {
            total += p.due(Duration::from_micros(t)).count() as u64;
            t += gap;
            gap = gap * 7 % 1_337 + 37;
        }
        total += p.due(Duration::from_secs(1)).count() as u64;
        assert_eq!(total, 250_001); // events 0..=250,000: one at each end
    }

    #[test]
    fn fractional_rates() {
        // 4 heartbeats per second (every 250 ms): due at 0, 250, 500 and 750 ms.
        let mut p = Pacer::new(4.0);
        assert_eq!(p.due(ms(249)), 0..1);
        assert_eq!(p.due(ms(250)), 1..2);
        assert_eq!(p.due(ms(999)), 2..4);
    }
}
