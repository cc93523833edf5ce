//! The runtime's clock: the core's `Time` is nanoseconds since the
//! scheduler process started, on the monotonic clock.

use std::time::{Duration, Instant};

use crate::core::Time;

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    pub fn new() -> Self {
        Self { start: Instant::now() }
    }

    pub fn now(&self) -> Time {
        self.start.elapsed().as_nanos() as Time
    }

    /// `t` on this clock as an `Instant`.
    pub fn instant(&self, t: Time) -> Instant {
        self.start + Duration::from_nanos(t.max(0) as u64)
    }
}

/// A duration in core time units.
pub fn nanos(d: Duration) -> Time {
    d.as_nanos() as Time
}
