//! `eager`: the Clockwork/Triton-like baseline. Work-conserving: the moment
//! a GPU is free, it runs the largest batch that still meets its deadlines.
//!
//! Each model keeps its requests in an EDF queue. Whenever a GPU is
//! predicted free (its last batch's `exec_at + L(b)` has passed, or its
//! `BatchDone` came) and requests wait:
//!
//! 1. every model drops (`deadline_unattainable`) the head requests that
//!    would miss even at b = 1 (`d < now + lead(1) + L(1)`);
//! 2. the model whose head deadline is earliest is served;
//! 3. it sends its largest batch `b` whose earliest deadline still holds:
//!    `d_head ≥ now + lead(b) + L(b)`.
//!
//! An arrival finding a GPU free is therefore dispatched at once, alone.
//! Batches grow only while GPUs are busy: this is what "no deferral" costs,
//! and what `symphony` is compared against.
//!
//! Defaults ([`EagerParams`]): no cap on the batch besides the profile's
//! largest batch, as in Clockwork, which never caps below what the profile
//! can run.

use super::greedy::{Choose, Greedy, GreedyParams, Offer};

/// Knobs of [`Eager`].
pub type EagerParams = GreedyParams;

/// The eager baseline; see the module docs.
pub type Eager = Greedy<EarliestDeadline>;

/// Serve the model with the earliest head deadline, with its largest
/// feasible batch (at least 1: the hopeless heads are already gone).
#[derive(Debug, Clone, Copy)]
pub struct EarliestDeadline;

impl Choose for EarliestDeadline {
    const NAME: &'static str = "eager";

    fn choose(offers: &[Offer]) -> Option<(usize, u32)> {
        let o = offers.iter().min_by_key(|o| (o.head_deadline, o.model))?;
        Some((o.model, o.largest_feasible.max(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::harness::{self, Fate};
    use super::*;
    use crate::core::RejectReason;
    use crate::core::{Action, CoreConfig, Time, WorkerId};
    use crate::core::{ModelId, MS};

    fn cfg() -> CoreConfig {
        harness::config()
    }

    #[test]
    fn an_arrival_on_a_free_gpu_is_dispatched_at_once_alone() {
        let models = [harness::reference_model(100 * MS, 0.0)];
        let mut p = Eager::new(&cfg(), &models, 2);
        let arrivals = [(5 * MS, ModelId(0))];
        let out = harness::run(&mut p, &models, harness::deltas(), 2, &arrivals);
        let Action::Dispatch(plan) = &out.log[0].1 else {
            panic!("{:?}", out.log)
        };
        assert_eq!(out.log[0].0, 5 * MS);
        assert_eq!(plan.requests.len(), 1);
        assert_eq!(plan.worker, WorkerId(0));
        assert_eq!(plan.exec_at, 5 * MS + 150_000);
        assert_eq!(plan.expected_finish, 5 * MS + 150_000 + 6_286_000);
        assert!(!plan.late);
    }

    #[test]
    fn requests_queued_behind_a_busy_gpu_go_as_one_batch_when_it_frees() {
        let models = [harness::reference_model(100 * MS, 0.0)];
        let mut p = Eager::new(&cfg(), &models, 1);
        // The first runs alone from 0.15 ms to 6.436 ms; ten more arrive meanwhile.
        let arrivals: Vec<_> = (0..11).map(|i| (i * 100_000, ModelId(0))).collect();
        let out = harness::run(&mut p, &models, harness::deltas(), 1, &arrivals);
        assert_eq!(harness::dispatches(&out), vec![(0, 0, 1), (6_436_000, 0, 10)]);
    }

    #[test]
    fn the_batch_is_the_largest_that_meets_the_head_deadline() {
        // SLO 20 ms: deadline = arrival + 18 ms. At 6.436 ms the head (arrived at
        // 0.1 ms, d = 18.1 ms) allows b with 6.436 + 0.1 + 0.05·b + 1.082·b + 5.204 ≤ 18.1:
        // b ≤ 5.62, so 5 of the 30 waiting go.
        let models = [harness::reference_model(20 * MS, 0.0)];
        let mut p = Eager::new(&cfg(), &models, 1);
        let mut arrivals = vec![(0, ModelId(0))];
        arrivals.extend((0..30).map(|i| (100_000 + i * 10_000, ModelId(0))));
        let out = harness::run(&mut p, &models, harness::deltas(), 1, &arrivals);
        assert_eq!(harness::dispatches(&out)[1], (6_436_000, 0, 5));
        assert_eq!(harness::late(&out, &models, &harness::deltas(), &arrivals), 0);
    }

    #[test]
    fn hopeless_requests_are_dropped_when_a_gpu_frees() {
        // SLO 10 ms: d = a + 8 ms; alone a request needs 6.436 ms. The second,
        // arriving at 1 ms (d = 9 ms), is hopeless when the GPU frees at 6.436 ms.
        let models = [harness::reference_model(10 * MS, 0.0)];
        let mut p = Eager::new(&cfg(), &models, 1);
        let arrivals = [(0, ModelId(0)), (MS, ModelId(0))];
        let out = harness::run(&mut p, &models, harness::deltas(), 1, &arrivals);
        assert_eq!(
            out.fates[&1],
            Fate::Rejected {
                at: 6_436_000,
                reason: RejectReason::DeadlineUnattainable
            }
        );
    }

    #[test]
    fn serves_the_model_with_the_earliest_head_deadline() {
        let models = [
            harness::reference_model(100 * MS, 0.0),
            harness::reference_model(50 * MS, 0.0),
        ];
        let mut p = Eager::new(&cfg(), &models, 1);
        // Busy with request 0; then model 0 (d = 98.1 ms) and model 1 (d = 48.2 ms) wait.
        let arrivals = [(0, ModelId(0)), (100_000, ModelId(0)), (200_000, ModelId(1))];
        let out = harness::run(&mut p, &models, harness::deltas(), 1, &arrivals);
        let models_served: Vec<_> = out
            .log
            .iter()
            .filter_map(|(_, a)| match a {
                Action::Dispatch(p) => Some(p.model.0),
                _ => None,
            })
            .collect();
        assert_eq!(models_served, vec![0, 1, 0]);
    }

    #[test]
    fn every_request_leaves_once_and_none_runs_late() {
        let models = [
            harness::reference_model(100 * MS, 0.0),
            harness::model("small", 32, |b| 500_000 * Time::from(b) + 2 * MS, 25 * MS, 0.0),
        ];
        for (seed, gap) in [(1, 300_000), (2, 100_000), (3, 20_000)] {
            let arrivals = harness::lcg_arrivals(seed, 3000, 2, gap);
            let mut p = Eager::new(&cfg(), &models, 3);
            let out = harness::run(&mut p, &models, harness::deltas(), 3, &arrivals);
            assert_eq!(harness::late(&out, &models, &harness::deltas(), &arrivals), 0);
        }
    }
}
