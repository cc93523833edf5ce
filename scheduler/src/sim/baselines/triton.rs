//! `triton`: Triton Inference Server's dynamic batcher.
//!
//! Each model keeps a FIFO queue. A batch of the oldest requests (up to
//! `max_batch`) is sent to a free GPU once `max_batch` requests wait or the
//! oldest has waited `max_queue_delay`; while no GPU is free the batch keeps
//! growing up to `max_batch`. The only deadline awareness is the queue
//! timeout: a request that has waited `queue_timeout` is rejected
//! (`deadline_unattainable`). When several models are ready for one GPU, the
//! one whose oldest request is oldest goes first (FIFO across models, as one
//! shared queue of ready batches would behave).
//!
//! Defaults ([`TritonParams::for_model`]), what an operator tuning Triton
//! for an SLO `S` would set, with `T = S − δ_resp`:
//! * `max_batch` = the largest `b` with `2·L(b) ≤ T`: a batch may wait for
//!   the one before it and still make it (the same "2×" rule Nexus uses);
//! * `max_queue_delay` = the slack that rule leaves, `T − 2·L(max_batch)`,
//!   kept within [0.1 ms, L(max_batch)]: waiting longer than one batch's run
//!   buys no throughput, only latency;
//! * `queue_timeout` = `T`: past it the request cannot be answered in time.

use std::collections::VecDeque;

use crate::core::{
    Action, Arrival, BatchId, CoreConfig, Deltas, LatencyTable, ModelId, RejectReason, RequestId, Time, WorkerId, US,
};
use crate::sim::policy::{Policy, SimModel};

use super::{admit, deadline_of, largest_batch_within, Gpus};

/// One model's dynamic-batcher settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TritonParams {
    pub max_batch: u32,
    pub max_queue_delay: Time,
    pub queue_timeout: Time,
}

impl TritonParams {
    /// The defaults for `m` (see the module docs).
    pub fn for_model(m: &SimModel, deltas: &Deltas) -> Self {
        let budget = m.slo - deltas.resp;
        let max_batch = largest_batch_within(&m.latency, budget / 2);
        let l = m.latency.get(max_batch);
        let floor = 100 * US;
        Self {
            max_batch,
            max_queue_delay: (budget - 2 * l).clamp(floor, l.max(floor)),
            queue_timeout: budget,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Waiting {
    id: RequestId,
    arrival: Time,
    deadline: Time,
}

#[derive(Debug)]
struct ModelState {
    latency: LatencyTable,
    slo: Time,
    params: TritonParams,
    queue: VecDeque<Waiting>,
}

impl ModelState {
    /// When this model's next batch may go (GPU permitting).
    fn ready_at(&self) -> Option<Time> {
        let oldest = self.queue.front()?;
        Some(if self.queue.len() >= self.params.max_batch as usize {
            Time::MIN
        } else {
            oldest.arrival + self.params.max_queue_delay
        })
    }
}

/// The Triton baseline; see the module docs.
#[derive(Debug)]
pub struct Triton {
    deltas: Deltas,
    models: Vec<ModelState>,
    gpus: Gpus,
    actions: VecDeque<Action>,
    now: Time,
}

impl Triton {
    /// With [`TritonParams::for_model`] for every model.
    pub fn new(cfg: &CoreConfig, models: &[SimModel], gpus: usize) -> Self {
        let params = models.iter().map(|m| TritonParams::for_model(m, &cfg.deltas)).collect();
        Self::with_params(cfg, models, gpus, params)
    }

    /// `params[i]` for `models[i]`; `max_batch` is clamped to the profile.
    pub fn with_params(cfg: &CoreConfig, models: &[SimModel], gpus: usize, params: Vec<TritonParams>) -> Self {
        assert_eq!(params.len(), models.len(), "one TritonParams per model");
        let models = models
            .iter()
            .zip(params)
            .map(|(m, mut p)| {
                p.max_batch = p.max_batch.clamp(1, m.latency.max_batch());
                ModelState {
                    latency: m.latency.clone(),
                    slo: m.slo,
                    params: p,
                    queue: VecDeque::new(),
                }
            })
            .collect();
        Self {
            deltas: cfg.deltas,
            models,
            gpus: Gpus::new(gpus),
            actions: VecDeque::new(),
            now: Time::MIN,
        }
    }

    /// The settings in force for model `m`.
    pub fn params(&self, m: ModelId) -> Option<TritonParams> {
        self.models.get(m.0 as usize).map(|s| s.params)
    }

    fn pump(&mut self, now: Time) {
        self.now = self.now.max(now);
        for (i, m) in self.models.iter_mut().enumerate() {
            while let Some(r) = m.queue.front().filter(|r| now - r.arrival >= m.params.queue_timeout) {
                self.actions.push_back(Action::Reject {
                    request: r.id,
                    model: ModelId(i as u32),
                    reason: RejectReason::DeadlineUnattainable,
                });
                m.queue.pop_front();
            }
        }
        while let Some(w) = self.gpus.first_free(now) {
            let ready = self
                .models
                .iter()
                .enumerate()
                .filter(|(_, m)| m.ready_at().is_some_and(|t| t <= now))
                .min_by_key(|(i, m)| (m.queue.front().map(|r| r.arrival), *i))
                .map(|(i, _)| i);
            let Some(i) = ready else { break };
            let m = &mut self.models[i];
            let b = m.queue.len().min(m.params.max_batch as usize);
            let batch: Vec<Waiting> = m.queue.drain(..b).collect();
            let deadline = batch.iter().map(|r| r.deadline).min().unwrap_or(Time::MAX);
            let requests = batch.iter().map(|r| r.id).collect();
            let action = self
                .gpus
                .launch(w, ModelId(i as u32), requests, deadline, now, &self.deltas, &m.latency);
            self.actions.push_back(action);
        }
    }
}

impl Policy for Triton {
    fn name(&self) -> &'static str {
        "triton"
    }

    fn on_arrival(&mut self, a: Arrival, now: Time) {
        let Some(i) = admit(&a, self.gpus.len(), self.models.len(), &mut self.actions) else {
            return;
        };
        let m = &mut self.models[i];
        let deadline = deadline_of(now, a.slo.unwrap_or(m.slo), &self.deltas);
        m.queue.push_back(Waiting {
            id: a.id,
            arrival: now,
            deadline,
        });
        self.pump(now);
    }

    fn on_batch_done(&mut self, batch: BatchId, _worker: WorkerId, _exec: Time, now: Time) {
        if self.gpus.done(batch, now).is_some() {
            self.pump(now);
        }
    }

    fn handle_timeout(&mut self, now: Time) {
        self.pump(now);
    }

    fn poll_timeout(&self) -> Option<Time> {
        let now = self.now;
        self.models
            .iter()
            .filter_map(|m| {
                let oldest = m.queue.front()?;
                let timeout = oldest.arrival + m.params.queue_timeout;
                // A ready model still waiting is waiting for a GPU.
                let go = match m.ready_at() {
                    Some(t) if t > now => Some(t),
                    _ => self.gpus.next_free_after(now),
                };
                Some(go.map_or(timeout, |g| g.min(timeout)))
            })
            .min()
    }

    fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::super::harness::{self, Fate};
    use super::*;
    use crate::core::MS;

    fn cfg() -> CoreConfig {
        harness::config()
    }

    #[test]
    fn defaults_follow_the_two_x_rule() {
        // T = 98 ms; 2·(1.082·b + 5.204) ≤ 98 → b ≤ 40.48; L(40) = 48.484 ms.
        let m = harness::reference_model(100 * MS, 0.0);
        let p = TritonParams::for_model(&m, &harness::deltas());
        assert_eq!(
            p,
            TritonParams {
                max_batch: 40,
                max_queue_delay: 98 * MS - 2 * 48_484_000,
                queue_timeout: 98 * MS,
            }
        );
        // A tight SLO leaves no slack: the delay floors at 0.1 ms.
        let tight = harness::reference_model(14 * MS, 0.0);
        assert_eq!(
            TritonParams::for_model(&tight, &harness::deltas()).max_queue_delay,
            100_000
        );
    }

    fn four(delay: Time) -> Vec<TritonParams> {
        vec![TritonParams {
            max_batch: 4,
            max_queue_delay: delay,
            queue_timeout: 98 * MS,
        }]
    }

    #[test]
    fn a_full_batch_goes_at_once() {
        let models = [harness::reference_model(100 * MS, 0.0)];
        let mut p = Triton::with_params(&cfg(), &models, 1, four(5 * MS));
        let arrivals = [(0, ModelId(0)); 4];
        let out = harness::run(&mut p, &models, harness::deltas(), 1, &arrivals);
        assert_eq!(harness::dispatches(&out), vec![(0, 0, 4)]);
    }

    #[test]
    fn a_lone_request_waits_exactly_the_queue_delay() {
        let models = [harness::reference_model(100 * MS, 0.0)];
        let mut p = Triton::with_params(&cfg(), &models, 1, four(5 * MS));
        let arrivals = [(MS, ModelId(0))];
        let out = harness::run(&mut p, &models, harness::deltas(), 1, &arrivals);
        assert_eq!(harness::dispatches(&out), vec![(6 * MS, 0, 1)]);
    }

    #[test]
    fn a_batch_grows_while_no_gpu_is_free() {
        let models = [harness::reference_model(100 * MS, 0.0)];
        let mut p = Triton::with_params(&cfg(), &models, 1, four(MS));
        // 0..4 fill a batch at 0.3 ms (runs 0.6 → 10.132 ms); three more arrive
        // and their delay passes while the GPU is busy: they go when it frees.
        let arrivals: Vec<_> = (0..7).map(|i| (i * 100_000, ModelId(0))).collect();
        let out = harness::run(&mut p, &models, harness::deltas(), 1, &arrivals);
        let first_finish = 300_000 + 100_000 + 4 * 50_000 + 4 * 1_082_000 + 5_204_000;
        assert_eq!(harness::dispatches(&out), vec![(300_000, 0, 4), (first_finish, 0, 3)]);
    }

    #[test]
    fn requests_that_waited_the_queue_timeout_are_rejected() {
        let models = [harness::reference_model(100 * MS, 0.0)];
        let params = vec![TritonParams {
            max_batch: 4,
            max_queue_delay: 100_000,
            queue_timeout: 3 * MS,
        }];
        let mut p = Triton::with_params(&cfg(), &models, 1, params);
        // The first goes at 0.2 ms and runs 0.35 → 6.636 ms; the second times out at 3.5 ms.
        let arrivals = [(100_000, ModelId(0)), (500_000, ModelId(0))];
        let out = harness::run(&mut p, &models, harness::deltas(), 1, &arrivals);
        assert_eq!(
            out.fates[&1],
            Fate::Rejected {
                at: 3_500_000,
                reason: RejectReason::DeadlineUnattainable
            }
        );
    }

    #[test]
    fn every_request_leaves_once() {
        let models = [
            harness::reference_model(100 * MS, 0.0),
            harness::model("small", 32, |b| 500_000 * Time::from(b) + 2 * MS, 25 * MS, 0.0),
        ];
        for (seed, gap) in [(1, 300_000), (2, 100_000), (3, 20_000)] {
            let arrivals = harness::lcg_arrivals(seed, 3000, 2, gap);
            let mut p = Triton::new(&cfg(), &models, 3);
            harness::run(&mut p, &models, harness::deltas(), 3, &arrivals);
        }
    }
}
