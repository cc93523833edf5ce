//! The schedulers Baton is compared against (DESIGN.md §5), as simulator
//! policies: [`Eager`] (Clockwork/Triton-like), [`Triton`] (dynamic
//! batcher), [`Nexus`] (static epoch plan, per-GPU sliding window) and
//! [`Shepherd`] (Flex).
//!
//! They are re-implemented from the authors' public code
//! (abcdabcd987/nexuslb) so the comparison is faithful; each module says
//! where it deviates and why. Like the core they are sans-IO state machines:
//! no clock, no randomness, timers through `poll_timeout`/`handle_timeout`.
//!
//! What they share lives here: `Gpus`, the predicted free time of every
//! GPU (corrected by `on_batch_done`) and the batch numbering, and the
//! small EDF helpers that eager and shepherd both use.

pub mod eager;
pub mod greedy;
pub mod nexus;
pub mod shepherd;
pub mod triton;

pub use eager::{Eager, EagerParams};
pub use nexus::{Nexus, NexusParams, NexusPlan, PlannedGpu, PlannedSlot};
pub use shepherd::{Shepherd, ShepherdParams};
pub use triton::{Triton, TritonParams};

use std::collections::{HashMap, VecDeque};

use crate::core::queue::{Entry, Queue};
use crate::core::{
    Action, Arrival, BatchId, BatchPlan, Deltas, LatencyTable, ModelId, RejectReason, RequestId, Time, WorkerId,
};

/// The largest batch `b` with `L(b) ≤ budget` (at least 1): with
/// `budget = (SLO − δ_resp) / 2` this is Nexus' "2×" rule, which leaves a
/// batch's worth of time for waiting behind the batch before it.
pub(crate) fn largest_batch_within(lat: &LatencyTable, budget: Time) -> u32 {
    (1..=lat.max_batch()).rev().find(|&b| lat.get(b) <= budget).unwrap_or(1)
}

/// The GPUs as a policy sees them: when each is predicted to be free, and
/// which batches run where. Predictions are `exec_at + L(b)`; a `BatchDone`
/// replaces them with what happened.
#[derive(Debug)]
pub(crate) struct Gpus {
    free_at: Vec<Time>,
    running: Vec<u32>,
    inflight: HashMap<BatchId, Flight>,
    next_batch: u64,
}

#[derive(Debug, Clone, Copy)]
struct Flight {
    worker: usize,
    expected_finish: Time,
}

impl Gpus {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            free_at: vec![Time::MIN; n],
            running: vec![0; n],
            inflight: HashMap::new(),
            next_batch: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.free_at.len()
    }

    pub(crate) fn is_free(&self, w: usize, now: Time) -> bool {
        self.free_at[w] <= now
    }

    /// The lowest-numbered GPU free at `now`.
    pub(crate) fn first_free(&self, now: Time) -> Option<usize> {
        self.free_at.iter().position(|&f| f <= now)
    }

    pub(crate) fn free_at(&self, w: usize) -> Time {
        self.free_at[w]
    }

    /// The earliest predicted free time after `now`.
    pub(crate) fn next_free_after(&self, now: Time) -> Option<Time> {
        self.free_at.iter().copied().filter(|&f| f > now).min()
    }

    /// Plans a batch on `w` sent at `now`: it starts once its inputs are
    /// there and the GPU is free.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn launch(
        &mut self,
        w: usize,
        model: ModelId,
        requests: Vec<RequestId>,
        deadline: Time,
        now: Time,
        deltas: &Deltas,
        lat: &LatencyTable,
    ) -> Action {
        let b = requests.len() as u32;
        let exec_at = (now + deltas.lead(b)).max(self.free_at[w]);
        let expected_finish = exec_at + lat.get(b);
        let batch_id = BatchId(self.next_batch);
        self.next_batch += 1;
        self.free_at[w] = expected_finish;
        self.running[w] += 1;
        self.inflight.insert(
            batch_id,
            Flight {
                worker: w,
                expected_finish,
            },
        );
        Action::Dispatch(BatchPlan {
            batch_id,
            worker: WorkerId(w as u64),
            model,
            requests,
            deadline,
            sent_at: now,
            exec_at,
            expected_finish,
            late: expected_finish > deadline,
        })
    }

    /// A batch finished at `now`: its GPU is free now, or, when more
    /// batches are queued on it, later by this batch's prediction error.
    /// `None` for a batch this policy did not send.
    pub(crate) fn done(&mut self, batch: BatchId, now: Time) -> Option<usize> {
        let f = self.inflight.remove(&batch)?;
        let w = f.worker;
        self.running[w] -= 1;
        self.free_at[w] = if self.running[w] == 0 {
            now
        } else {
            (self.free_at[w] + (now - f.expected_finish)).max(now)
        };
        Some(w)
    }
}

/// The deadline of a request arriving at `now`: its SLO minus the reply reserve.
/// Where an arriving request goes: model `i`'s queue (`Some(i)`), or a
/// rejection queued on `actions` (no GPUs at all, or an unknown model).
pub(crate) fn admit(a: &Arrival, gpus: usize, models: usize, actions: &mut VecDeque<Action>) -> Option<usize> {
    let reason = if gpus == 0 {
        RejectReason::Overloaded
    } else if (a.model.0 as usize) < models {
        return Some(a.model.0 as usize);
    } else {
        RejectReason::UnknownModel
    };
    actions.push_back(Action::Reject {
        request: a.id,
        model: a.model,
        reason,
    });
    None
}

pub(crate) fn deadline_of(now: Time, slo: Time, deltas: &Deltas) -> Time {
    now + slo - deltas.resp
}

/// Rejects (`deadline_unattainable`) the head requests that would miss their
/// deadline even alone, sent now.
pub(crate) fn drop_hopeless(
    queue: &mut Queue,
    model: ModelId,
    lat: &LatencyTable,
    deltas: &Deltas,
    now: Time,
    out: &mut VecDeque<Action>,
) {
    let soonest = now + deltas.lead(1) + lat.get(1);
    while let Some(e) = queue.first().filter(|e| e.deadline < soonest) {
        queue.pop_first();
        out.push_back(Action::Reject {
            request: e.id,
            model,
            reason: RejectReason::DeadlineUnattainable,
        });
    }
}

/// The largest `b ≤ cap` such that the `b` earliest-deadline requests, sent
/// now, finish by the earliest of their deadlines (0 when none can).
/// Feasibility only gets harder as `b` grows (`L` is non-decreasing), so the
/// scan stops at the first failure.
pub(crate) fn largest_feasible(queue: &Queue, lat: &LatencyTable, deltas: &Deltas, now: Time, cap: u32) -> u32 {
    let Some(head) = queue.first() else { return 0 };
    let max = cap.min(lat.max_batch()).min(queue.len() as u32);
    (1..=max)
        .take_while(|&b| head.deadline >= now + deltas.lead(b) + lat.get(b))
        .last()
        .unwrap_or(0)
}

/// Pops the `b` earliest-deadline requests: their ids and earliest deadline.
pub(crate) fn take_edf(queue: &mut Queue, b: u32) -> (Vec<RequestId>, Time) {
    let entries: Vec<Entry> = (0..b).map_while(|_| queue.pop_first()).collect();
    let deadline = entries.first().map_or(Time::MAX, |e| e.deadline);
    (entries.into_iter().map(|e| e.id).collect(), deadline)
}

/// A hand-driven virtual-time loop for the baselines' tests: arrivals at
/// given times, batches starting at `max(exec_at, sent_at + lead(b), GPU
/// free)` and finishing exactly `L(b)` later, every action logged.
#[cfg(test)]
pub(crate) mod harness {
    use std::cmp::Reverse;
    use std::collections::{BTreeMap, BinaryHeap};

    use super::*;
    use crate::core::{Arrival, MS};
    use crate::sim::policy::{Policy, SimModel};

    /// L(b) = 1.082·b + 5.204 ms, the DESIGN.md reference profile, up to b = 128.
    pub(crate) fn reference_model(slo: Time, rps: f64) -> SimModel {
        SimModel {
            name: "ref".into(),
            latency: LatencyTable::from_fn(128, |b| 1_082_000 * Time::from(b) + 5_204_000),
            slo,
            planned_rps: rps,
        }
    }

    pub(crate) fn model(name: &str, max_batch: u32, l: impl Fn(u32) -> Time, slo: Time, rps: f64) -> SimModel {
        SimModel {
            name: name.into(),
            latency: LatencyTable::from_fn(max_batch, l),
            slo,
            planned_rps: rps,
        }
    }

    /// The paper's RDMA constants: δ_ctrl 100 µs, δ_data 50 µs, δ_resp 2 ms, ε 100 µs.
    pub(crate) fn deltas() -> Deltas {
        Deltas {
            ctrl: 100_000,
            data: 50_000,
            resp: 2 * MS,
            epsilon: 100_000,
        }
    }

    /// The default policies' configuration with the test deltas.
    pub(crate) fn config() -> crate::core::CoreConfig {
        crate::core::CoreConfig {
            deltas: deltas(),
            ..crate::core::CoreConfig::default()
        }
    }

    /// `n` arrivals over `models` from a fixed LCG: bursts and lulls, mean gap `mean_gap`.
    pub(crate) fn lcg_arrivals(seed: u64, n: usize, models: u32, mean_gap: Time) -> Vec<(Time, ModelId)> {
        let mut x = seed;
        let mut next = move || {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            x >> 33
        };
        let mut t = 0;
        (0..n)
            .map(|_| {
                // Gaps of 0..4× the mean, with one in eight arrivals in a burst (gap 0).
                let r = next();
                let gap = if r % 8 == 0 {
                    0
                } else {
                    (r % 4096) as Time * mean_gap / 1024
                };
                t += gap;
                (t, ModelId((next() % u64::from(models)) as u32))
            })
            .collect()
    }

    /// What happened to one request.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Fate {
        /// Ran in a batch starting and finishing at these times.
        Ran {
            sent: Time,
            start: Time,
            finish: Time,
            batch: u32,
        },
        Rejected {
            at: Time,
            reason: RejectReason,
        },
    }

    #[derive(Debug, Default)]
    pub(crate) struct Outcome {
        /// Every action with the time it was emitted.
        pub log: Vec<(Time, Action)>,
        /// Each request's fate; a request leaving twice fails the run.
        pub fates: BTreeMap<u64, Fate>,
    }

    /// Feeds `arrivals` (request i is `RequestId(i)`) to `policy` and runs
    /// its batches on `gpus` exact GPUs until nothing is left to do.
    pub(crate) fn run(
        policy: &mut dyn Policy,
        models: &[SimModel],
        deltas: Deltas,
        gpus: usize,
        arrivals: &[(Time, ModelId)],
    ) -> Outcome {
        let mut out = Outcome::default();
        let mut gpu_free = vec![Time::MIN; gpus];
        let mut done: BinaryHeap<Reverse<(Time, u64, u64)>> = BinaryHeap::new();
        let mut next_arrival = 0;
        for step in 0.. {
            assert!(step < 10_000_000, "the run does not end");
            let t_arrival = arrivals.get(next_arrival).map(|a| a.0);
            let t_done = done.peek().map(|r| r.0 .0);
            let t_timer = policy.poll_timeout();
            let Some(now) = [t_done, t_arrival, t_timer].into_iter().flatten().min() else {
                break;
            };
            if t_done == Some(now) {
                let Reverse((_, batch, worker)) = done.pop().unwrap();
                policy.on_batch_done(BatchId(batch), WorkerId(worker), 0, now);
            } else if t_arrival == Some(now) {
                let (_, model) = arrivals[next_arrival];
                let a = Arrival {
                    id: RequestId(next_arrival as u64),
                    model,
                    slo: None,
                };
                next_arrival += 1;
                policy.on_arrival(a, now);
            } else {
                policy.handle_timeout(now);
                if let Some(t) = policy.poll_timeout() {
                    assert!(t > now, "busy loop: after handle_timeout({now}) poll_timeout is {t}");
                }
            }
            while let Some(action) = policy.poll_action() {
                match &action {
                    Action::Dispatch(p) => {
                        let b = p.requests.len() as u32;
                        let lat = &models[p.model.0 as usize].latency;
                        assert!(b >= 1 && b <= lat.max_batch(), "batch of {b}");
                        assert_eq!(p.sent_at, now);
                        let w = p.worker.0 as usize;
                        let start = p.exec_at.max(now + deltas.lead(b)).max(gpu_free[w]);
                        let finish = start + lat.get(b);
                        gpu_free[w] = finish;
                        done.push(Reverse((finish, p.batch_id.0, p.worker.0)));
                        for r in &p.requests {
                            let fate = Fate::Ran {
                                sent: now,
                                start,
                                finish,
                                batch: b,
                            };
                            assert!(out.fates.insert(r.0, fate).is_none(), "request {r} left twice");
                        }
                    }
                    Action::Reject { request, reason, .. } => {
                        let fate = Fate::Rejected {
                            at: now,
                            reason: *reason,
                        };
                        assert!(
                            out.fates.insert(request.0, fate).is_none(),
                            "request {request} left twice"
                        );
                    }
                }
                out.log.push((now, action));
            }
        }
        assert_eq!(out.fates.len(), arrivals.len(), "some requests never left");
        out
    }

    /// Requests that ran but finished after their deadline.
    pub(crate) fn late(out: &Outcome, models: &[SimModel], deltas: &Deltas, arrivals: &[(Time, ModelId)]) -> usize {
        out.fates
            .iter()
            .filter(|(&id, fate)| {
                let (t, m) = arrivals[id as usize];
                let d = deadline_of(t, models[m.0 as usize].slo, deltas);
                matches!(fate, Fate::Ran { finish, .. } if *finish > d)
            })
            .count()
    }

    /// The dispatched batches as (time, worker, size).
    pub(crate) fn dispatches(out: &Outcome) -> Vec<(Time, u64, usize)> {
        out.log
            .iter()
            .filter_map(|(t, a)| match a {
                Action::Dispatch(p) => Some((*t, p.worker.0, p.requests.len())),
                Action::Reject { .. } => None,
            })
            .collect()
    }
}
