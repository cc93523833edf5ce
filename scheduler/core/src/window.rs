//! The schedulable window of a candidate batch (DESIGN.md §4).
//!
//! For a candidate of `b` requests whose earliest deadline is `D`, formed at
//! time `t` for a GPU free at `g`:
//!
//! * `t_e = t + δ_ctrl + b·δ_data` — the earliest the batch can start (plan
//!   and inputs delivered);
//! * `t_f = D − ε − L(b+1) − δ_data` — after this, one more request could no
//!   longer join (undefined at the max batch: nothing more can join);
//! * `t_l = D − ε − L(b)` — the latest start that still meets `D`;
//! * `invalid_after = D − L(b)` — after this the candidate is hopeless as is.
//!
//! Deferred scheduling starts at `max(t_e, g, min(t_f, t_l))`: it waits as
//! long as waiting can still grow the batch, and no longer. Eager starts at
//! `max(t_e, g)`.

use crate::Condition;

use super::{LatencyTable, Time};

/// Delays the core plans with, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deltas {
    /// Delivering a plan to a worker.
    pub ctrl: Time,
    /// Moving one request's input to a worker.
    pub data: Time,
    /// Reserved for the reply to reach the client.
    pub resp: Time,
    /// Timer margin.
    pub epsilon: Time,
}

impl Deltas {
    /// The constants of Symphony's evaluation (RDMA): δ_ctrl 100 µs, δ_data 50 µs, δ_resp 2 ms,
    /// ε 100 µs.
    pub const PAPER: Deltas = Deltas {
        ctrl: 100 * crate::US,
        data: 50 * crate::US,
        resp: 2 * crate::MS,
        epsilon: 100 * crate::US,
    };

    /// Time from sending a plan of `b` requests to the batch being able to start.
    #[inline]
    pub fn lead(&self, b: u32) -> Time {
        self.ctrl + Time::from(b) * self.data
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub t_e: Time,
    /// `None` when `b` is the max batch.
    pub t_f: Option<Time>,
    pub t_l: Time,
    pub invalid_after: Time,
    pub exec_at: Time,
}

/// The window of a batch of `b` with earliest deadline `deadline`, formed at
/// `now` for a GPU free at `gpu_free` (`None`: no GPU chosen yet).
pub fn window(
    lat: &LatencyTable,
    d: &Deltas,
    condition: Condition,
    now: Time,
    gpu_free: Option<Time>,
    b: u32,
    deadline: Time,
) -> Window {
    let t_e = now + d.lead(b);
    let t_f = (b < lat.max_batch()).then(|| deadline - d.epsilon - lat.get(b + 1) - d.data);
    let t_l = deadline - d.epsilon - lat.get(b);
    let invalid_after = deadline - lat.get(b);
    let start = t_e.max(gpu_free.unwrap_or(Time::MIN));
    let exec_at = match condition {
        Condition::Eager => start,
        Condition::Deferred => match t_f {
            Some(t_f) => start.max(t_f.min(t_l)),
            // Max batch: waiting cannot grow it.
            None => start,
        },
    };
    Window {
        t_e,
        t_f,
        t_l,
        invalid_after,
        exec_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Time = 1_000;
    const MS: Time = 1_000_000;

    fn lat() -> LatencyTable {
        // L(b) = 1 ms + 1 ms·b, max batch 8.
        LatencyTable::from_fn(8, |b| MS + MS * Time::from(b))
    }

    fn deltas() -> Deltas {
        Deltas::PAPER
    }

    #[test]
    fn hand_computed_deferred_window() {
        // Formed at t = 10 ms, b = 3, D = 40 ms, no GPU yet.
        let w = window(&lat(), &deltas(), Condition::Deferred, 10 * MS, None, 3, 40 * MS);
        assert_eq!(w.t_e, 10 * MS + 100 * US + 150 * US); // 10.25 ms
        assert_eq!(w.t_f, Some(40 * MS - 100 * US - 5 * MS - 50 * US)); // 34.85 ms
        assert_eq!(w.t_l, 40 * MS - 100 * US - 4 * MS); // 35.9 ms
        assert_eq!(w.invalid_after, 36 * MS);
        assert_eq!(w.exec_at, 34_850 * US);
    }

    #[test]
    fn gpu_busy_past_t_f_delays_exec() {
        let w = window(
            &lat(),
            &deltas(),
            Condition::Deferred,
            10 * MS,
            Some(35 * MS),
            3,
            40 * MS,
        );
        assert_eq!(w.exec_at, 35 * MS);
    }

    #[test]
    fn eager_starts_as_soon_as_possible() {
        let w = window(&lat(), &deltas(), Condition::Eager, 10 * MS, None, 3, 40 * MS);
        assert_eq!(w.exec_at, 10_250 * US);
        let w = window(&lat(), &deltas(), Condition::Eager, 10 * MS, Some(12 * MS), 3, 40 * MS);
        assert_eq!(w.exec_at, 12 * MS);
    }

    #[test]
    fn max_batch_does_not_wait() {
        let w = window(&lat(), &deltas(), Condition::Deferred, 10 * MS, None, 8, 40 * MS);
        assert_eq!(w.t_f, None);
        assert_eq!(w.exec_at, 10 * MS + 100 * US + 400 * US);
    }

    #[test]
    fn t_e_wins_when_the_deadline_is_near() {
        // D = 16 ms: t_f = 16 − 0.1 − 5 − 0.05 = 10.85 ms ≥ t_e = 10.25 ms.
        let w = window(&lat(), &deltas(), Condition::Deferred, 10 * MS, None, 3, 16 * MS);
        assert_eq!(w.exec_at, 10_850 * US);
        // D = 15 ms: t_f = 9.85 ms < t_e.
        let w = window(&lat(), &deltas(), Condition::Deferred, 10 * MS, None, 3, 15 * MS);
        assert_eq!(w.exec_at, 10_250 * US);
    }
}
