//! Forming a model's candidate batch (DESIGN.md §4).
//!
//! With `finish(b) = max(t + δ_ctrl + b·δ_data, g) + L(b)`:
//!
//! 1. Walk the queue from the earliest deadline: while the head of the rest
//!    `W` cannot make `finish(|W|)`, move it into a prefix.
//! 2. `b* = min(B_target, |W|)`.
//! 3. Drop policy. `window_drop`: prefix requests with `d < finish(b*)` are
//!    rejected; `drop_timeout`: only requests hopeless even at `b = 1`;
//!    `fcfs`: none.
//! 4. The batch is the earliest-deadline requests that remain; `D` is the
//!    earliest of them.
//! 5. "Free lunch" grows it while `finish(b+1) ≤ D`.
//!
//! Two consequences keep this cheap. First, the batch is always a prefix of
//! the queue, so a candidate is just `(b, D)` and nothing is copied until a
//! grant. Second, after steps 1–3, `D ≥ finish(b*)`, so the free-lunch growth
//! ends exactly at the largest `b` with `finish(b) ≤ D`: one binary search
//! over the (non-decreasing) latency table instead of a loop.
//!
//! `|W|` is evaluated at `min(|W|, B_target)`: a head that meets
//! `finish(B_target)` is served by a batch of `b* = B_target` whatever
//! follows it, so looking further only costs time. With this bound the walk
//! in step 1 touches only requests that are about to be dropped or to leave
//! in the next batch, which keeps the work per arrival independent of the
//! queue's length.

use crate::{Condition, DropPolicy};

use super::queue::{Entry, Queue};
use super::window::{window, Deltas, Window};
use super::{LatencyTable, Time};

/// What the candidate is formed with.
#[derive(Debug, Clone, Copy)]
pub struct FormParams<'a> {
    pub lat: &'a LatencyTable,
    pub deltas: &'a Deltas,
    pub policy: DropPolicy,
    pub condition: Condition,
    pub b_target: u32,
}

/// The batch a model would send: its first `b` requests, earliest deadline `deadline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub b: u32,
    pub deadline: Time,
    /// Only under `fcfs`: even a batch of one misses `deadline`.
    pub late: bool,
    pub window: Window,
}

impl Candidate {
    /// When the plan must leave so the batch can start at `exec_at`.
    pub fn send_at(&self, d: &Deltas) -> Time {
        self.window.exec_at - d.lead(self.b)
    }
}

/// Forms the candidate at `now` for a GPU free at `gpu_free` (`None`: not
/// chosen yet). Requests the drop policy rejects are popped from the queue
/// and handed to `drop`. Returns `None` when the queue ends up empty.
pub fn form(
    queue: &mut Queue,
    p: &FormParams<'_>,
    now: Time,
    gpu_free: Option<Time>,
    mut drop: impl FnMut(Entry),
) -> Option<Candidate> {
    let max = p.lat.max_batch();
    let b_target = p.b_target.clamp(1, max);
    let g = gpu_free.unwrap_or(Time::MIN);
    let finish = |b: u32| (now + p.deltas.lead(b)).max(g) + p.lat.get(b);

    match p.policy {
        DropPolicy::WindowDrop => {
            let n = queue.len();
            // Step 1: the prefix length k.
            let mut k = n;
            for (i, e) in queue.iter().enumerate() {
                let w = (n - i).min(b_target as usize) as u32;
                if e.deadline >= finish(w) {
                    k = i;
                    break;
                }
            }
            if k > 0 {
                // Steps 2–3; a window emptied by the prefix still serves one.
                let b_star = ((n - k).min(b_target as usize) as u32).max(1);
                let cut = finish(b_star);
                for _ in 0..k {
                    match queue.first() {
                        Some(e) if e.deadline < cut => {
                            queue.pop_first();
                            drop(e);
                        }
                        _ => break,
                    }
                }
            }
        }
        DropPolicy::DropTimeout => {
            let cut = finish(1);
            while let Some(e) = queue.first().filter(|e| e.deadline < cut) {
                queue.pop_first();
                drop(e);
            }
        }
        DropPolicy::Fcfs => {}
    }

    let head = queue.first()?;
    let d = head.deadline;
    let most = (queue.len().min(max as usize)) as u32;
    if finish(1) > d {
        // Only fcfs keeps a hopeless head: send it at once, with the batch
        // it would have had.
        debug_assert_eq!(p.policy, DropPolicy::Fcfs);
        let b = b_target.min(most);
        let mut w = window(p.lat, p.deltas, Condition::Eager, now, gpu_free, b, d);
        w.exec_at = (now + p.deltas.lead(b)).max(g);
        return Some(Candidate {
            b,
            deadline: d,
            late: true,
            window: w,
        });
    }
    // Largest b in 1..=most with finish(b) ≤ D (finish is non-decreasing).
    let (mut lo, mut hi) = (1u32, most);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if finish(mid) <= d {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let b = lo;
    Some(Candidate {
        b,
        deadline: d,
        late: false,
        window: window(p.lat, p.deltas, p.condition, now, gpu_free, b, d),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RequestId, MS, US};

    fn lat() -> LatencyTable {
        // L(b) = 1 ms + 1 ms·b, max batch 8.
        LatencyTable::from_fn(8, |b| MS + MS * Time::from(b))
    }

    fn deltas() -> Deltas {
        Deltas::PAPER
    }

    fn queue(deadlines: &[Time]) -> Queue {
        let mut q = Queue::default();
        for (i, &d) in deadlines.iter().enumerate() {
            q.push(Entry {
                deadline: d,
                id: RequestId(i as u64),
            });
        }
        q
    }

    fn run(q: &mut Queue, policy: DropPolicy, b_target: u32, now: Time) -> (Option<Candidate>, Vec<u64>) {
        let lat = lat();
        let d = deltas();
        let p = FormParams {
            lat: &lat,
            deltas: &d,
            policy,
            condition: Condition::Deferred,
            b_target,
        };
        let mut dropped = vec![];
        let c = form(q, &p, now, None, |e| dropped.push(e.id.0));
        (c, dropped)
    }

    #[test]
    fn free_lunch_takes_everything_that_fits() {
        // finish(b) = 0.1 + 0.05·b + 1 + b ms. Deadlines far away: all 5 fit.
        let mut q = queue(&[50 * MS, 51 * MS, 52 * MS, 53 * MS, 54 * MS]);
        let (c, dropped) = run(&mut q, DropPolicy::WindowDrop, 2, 0);
        let c = c.unwrap();
        assert_eq!((c.b, c.deadline), (5, 50 * MS));
        assert!(dropped.is_empty());
    }

    #[test]
    fn batch_shrinks_to_meet_the_earliest_deadline() {
        // finish(3) = 4.25 ms, finish(4) = 5.3 ms; D = 5 ms → b = 3.
        let mut q = queue(&[5 * MS, 60 * MS, 60 * MS, 60 * MS, 60 * MS]);
        let (c, dropped) = run(&mut q, DropPolicy::WindowDrop, 3, 0);
        assert_eq!(c.unwrap().b, 3);
        assert!(dropped.is_empty());
    }

    #[test]
    fn window_drop_rejects_heads_that_miss_the_target_window() {
        // B_target 4: finish(4) = 5.3 ms. Head at 5 ms misses it → dropped;
        // the rest (≥ 60 ms) fill a batch of 4.
        let mut q = queue(&[5 * MS, 60 * MS, 60 * MS, 60 * MS, 60 * MS]);
        let (c, dropped) = run(&mut q, DropPolicy::WindowDrop, 4, 0);
        assert_eq!(dropped, vec![0]);
        assert_eq!(c.unwrap().b, 4);
    }

    #[test]
    fn window_drop_keeps_prefix_that_fits_a_smaller_window() {
        // Queue of 2: head at 3 ms misses finish(2) = 3.2 ms, so it goes to
        // the prefix; W = {60 ms}, b* = 1, finish(1) = 2.15 ms ≤ 3 ms: kept.
        let mut q = queue(&[3 * MS, 60 * MS]);
        let (c, dropped) = run(&mut q, DropPolicy::WindowDrop, 8, 0);
        assert!(dropped.is_empty());
        let c = c.unwrap();
        assert_eq!((c.b, c.deadline), (1, 3 * MS));
    }

    #[test]
    fn drop_timeout_only_drops_the_hopeless() {
        // finish(1) = 2.15 ms: the 2 ms head is hopeless, the 5 ms one is not.
        let mut q = queue(&[2 * MS, 5 * MS, 60 * MS, 60 * MS, 60 * MS]);
        let (c, dropped) = run(&mut q, DropPolicy::DropTimeout, 4, 0);
        assert_eq!(dropped, vec![0]);
        assert_eq!(c.unwrap().b, 3);
    }

    #[test]
    fn fcfs_never_drops_and_flags_late() {
        let mut q = queue(&[MS, 60 * MS, 60 * MS]);
        let (c, dropped) = run(&mut q, DropPolicy::Fcfs, 2, 0);
        assert!(dropped.is_empty());
        let c = c.unwrap();
        assert!(c.late);
        assert_eq!(c.b, 2);
        assert_eq!(c.window.exec_at, 200 * US);
    }

    #[test]
    fn empty_queue_has_no_candidate() {
        let mut q = Queue::default();
        assert_eq!(run(&mut q, DropPolicy::WindowDrop, 4, 0).0, None);
    }
}
