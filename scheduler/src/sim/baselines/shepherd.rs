//! `shepherd`: Shepherd's Flex scheduler, without preemption.
//!
//! Each model keeps an EDF queue. Whenever a GPU is free (predicted, as in
//! [`super::Eager`]) and requests wait — on every arrival and every
//! completion — Flex's `BatchGen` runs over all models:
//!
//! 1. each model drops (`deadline_unattainable`) the head requests that
//!    would miss even at b = 1: `d < now + lead(1) + L(1)`. The check uses
//!    the *earliest* deadline (the queue's head); the authors' version looks
//!    at the latest, so nothing is ever dropped in time and goodput
//!    collapses under load (DESIGN.md §5) — that bug is not reproduced;
//! 2. each model's candidate is its largest `b` whose batch meets the
//!    head's deadline, `d_head ≥ now + lead(b) + L(b)` (the authors test
//!    each request against the finish of the batch so far, which lets a
//!    grown batch miss its head; we test the batch that is sent);
//! 3. the largest candidate across models runs (ties: earliest head
//!    deadline, then the lower model id).
//!
//! **Not modelled: preemption.** Flex preempts a running batch when a new
//! candidate is ≥ λ = 3.03× its size. The engine has no cancel action, and a
//! batch once planned runs to completion, so preempting would need a new
//! `Action`; until then Shepherd here is Flex's batch generator without
//! preemption. Preemption trades the preempted batch's GPU time for a much
//! larger batch under bursts; its absence is the one known deviation from
//! the paper, and results under bursty load should say so.
//!
//! Defaults ([`ShepherdParams`]): no cap on the batch besides the profile.

use super::greedy::{Choose, Greedy, GreedyParams, Offer};

/// Knobs of [`Shepherd`].
pub type ShepherdParams = GreedyParams;

/// The Shepherd (Flex) baseline; see the module docs.
pub type Shepherd = Greedy<LargestBatch>;

/// Flex's choice: the largest feasible batch across models (ties: earliest
/// head deadline, then the lower model id).
#[derive(Debug, Clone, Copy)]
pub struct LargestBatch;

impl Choose for LargestBatch {
    const NAME: &'static str = "shepherd";

    fn choose(offers: &[Offer]) -> Option<(usize, u32)> {
        let o = offers
            .iter()
            .filter(|o| o.largest_feasible > 0)
            .min_by_key(|o| (std::cmp::Reverse(o.largest_feasible), o.head_deadline, o.model))?;
        Some((o.model, o.largest_feasible))
    }
}

#[cfg(test)]
mod tests {
    use super::super::harness;
    use super::*;
    use crate::core::RejectReason;
    use crate::core::MS;
    use crate::core::{Action, CoreConfig, ModelId, Time};

    fn cfg() -> CoreConfig {
        harness::config()
    }

    #[test]
    fn the_largest_batch_across_models_runs_first() {
        let models = [
            harness::reference_model(100 * MS, 0.0),
            harness::reference_model(50 * MS, 0.0),
        ];
        let mut p = Shepherd::new(&cfg(), &models, 1);
        // Busy with request 0 until 6.436 ms; then model 1 has one waiting
        // (earlier deadline) and model 0 three: model 0's batch of 3 goes first.
        let arrivals = [
            (0, ModelId(0)),
            (100_000, ModelId(1)),
            (200_000, ModelId(0)),
            (300_000, ModelId(0)),
            (400_000, ModelId(0)),
        ];
        let out = harness::run(&mut p, &models, harness::deltas(), 1, &arrivals);
        let served: Vec<_> = out
            .log
            .iter()
            .filter_map(|(t, a)| match a {
                Action::Dispatch(p) => Some((*t, p.model.0, p.requests.len())),
                _ => None,
            })
            .collect();
        let second_finish = 6_436_000 + 100_000 + 3 * 50_000 + 3 * 1_082_000 + 5_204_000;
        assert_eq!(served, vec![(0, 0, 1), (6_436_000, 0, 3), (second_finish, 1, 1)]);
    }

    #[test]
    fn hopeless_heads_are_dropped_by_their_earliest_deadline() {
        // SLO 10 ms (d = a + 8 ms): request 1 (d = 9 ms) cannot make it when the
        // GPU frees at 6.436 ms, request 2 (d = 14 ms) still can, alone.
        let models = [harness::reference_model(10 * MS, 0.0)];
        let mut p = Shepherd::new(&cfg(), &models, 1);
        let arrivals = [(0, ModelId(0)), (MS, ModelId(0)), (6 * MS, ModelId(0))];
        let out = harness::run(&mut p, &models, harness::deltas(), 1, &arrivals);
        assert!(matches!(
            out.fates[&1],
            harness::Fate::Rejected {
                reason: RejectReason::DeadlineUnattainable,
                ..
            }
        ));
        assert!(matches!(out.fates[&2], harness::Fate::Ran { batch: 1, .. }));
    }

    #[test]
    fn every_request_leaves_once_and_none_runs_late() {
        let models = [
            harness::reference_model(100 * MS, 0.0),
            harness::model("small", 32, |b| 500_000 * Time::from(b) + 2 * MS, 25 * MS, 0.0),
        ];
        for (seed, gap) in [(1, 300_000), (2, 100_000), (3, 20_000)] {
            let arrivals = harness::lcg_arrivals(seed, 3000, 2, gap);
            let mut p = Shepherd::new(&cfg(), &models, 3);
            let out = harness::run(&mut p, &models, harness::deltas(), 3, &arrivals);
            assert_eq!(harness::late(&out, &models, &harness::deltas(), &arrivals), 0);
        }
    }
}
