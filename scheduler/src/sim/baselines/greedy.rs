//! The work-conserving EDF dispatcher that `eager` and `shepherd` share:
//! per-model EDF queues; whenever a GPU is free (its predicted free time
//! passed, or its `BatchDone` came) and requests wait, every model first
//! drops the head requests hopeless even at b = 1, then a [`Choose`] rule
//! picks which model sends which batch. The two baselines differ only in
//! that rule (see `eager.rs`, `shepherd.rs`).

use std::collections::VecDeque;
use std::marker::PhantomData;

use crate::core::queue::{Entry, Queue};
use crate::core::{Action, Arrival, BatchId, CoreConfig, Deltas, LatencyTable, ModelId, Time, WorkerId};
use crate::sim::policy::{Policy, SimModel};

use super::{admit, deadline_of, drop_hopeless, largest_feasible, take_edf, Gpus};

/// What one waiting model offers when a GPU frees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    pub model: usize,
    /// Its earliest deadline.
    pub head_deadline: Time,
    /// Its largest batch whose earliest deadline still holds (0: none).
    pub largest_feasible: u32,
}

/// Which model sends a batch, and how large, when a GPU frees.
pub trait Choose {
    /// The policy's name in results.
    const NAME: &'static str;
    /// `(model, batch size)` to send, or `None` to leave the GPU idle.
    fn choose(offers: &[Offer]) -> Option<(usize, u32)>;
}

/// Knobs of the greedy baselines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GreedyParams {
    /// Largest batch to send; `None` (default): the profile's largest.
    pub max_batch: Option<u32>,
}

#[derive(Debug)]
struct ModelState {
    latency: LatencyTable,
    slo: Time,
    cap: u32,
    queue: Queue,
}

/// A work-conserving EDF dispatcher with choice rule `C`.
#[derive(Debug)]
pub struct Greedy<C> {
    deltas: Deltas,
    models: Vec<ModelState>,
    gpus: Gpus,
    actions: VecDeque<Action>,
    now: Time,
    offers: Vec<Offer>,
    rule: PhantomData<C>,
}

impl<C: Choose> Greedy<C> {
    pub fn new(cfg: &CoreConfig, models: &[SimModel], gpus: usize) -> Self {
        Self::with_params(cfg, models, gpus, GreedyParams::default())
    }

    pub fn with_params(cfg: &CoreConfig, models: &[SimModel], gpus: usize, params: GreedyParams) -> Self {
        let models = models
            .iter()
            .map(|m| ModelState {
                latency: m.latency.clone(),
                slo: m.slo,
                cap: params.max_batch.unwrap_or(u32::MAX).clamp(1, m.latency.max_batch()),
                queue: Queue::default(),
            })
            .collect();
        Self {
            deltas: cfg.deltas,
            models,
            gpus: Gpus::new(gpus),
            actions: VecDeque::new(),
            now: Time::MIN,
            offers: Vec::new(),
            rule: PhantomData,
        }
    }

    /// Fills every free GPU while requests wait.
    fn pump(&mut self, now: Time) {
        self.now = self.now.max(now);
        while let Some(w) = self.gpus.first_free(now) {
            self.offers.clear();
            for (i, m) in self.models.iter_mut().enumerate() {
                let id = ModelId(i as u32);
                drop_hopeless(&mut m.queue, id, &m.latency, &self.deltas, now, &mut self.actions);
                let Some(head) = m.queue.first() else { continue };
                self.offers.push(Offer {
                    model: i,
                    head_deadline: head.deadline,
                    largest_feasible: largest_feasible(&m.queue, &m.latency, &self.deltas, now, m.cap),
                });
            }
            let Some((i, b)) = C::choose(&self.offers) else { break };
            let m = &mut self.models[i];
            let (requests, deadline) = take_edf(&mut m.queue, b);
            let action = self
                .gpus
                .launch(w, ModelId(i as u32), requests, deadline, now, &self.deltas, &m.latency);
            self.actions.push_back(action);
        }
    }
}

impl<C: Choose> Policy for Greedy<C> {
    fn name(&self) -> &'static str {
        C::NAME
    }

    fn on_arrival(&mut self, a: Arrival, now: Time) {
        let Some(i) = admit(&a, self.gpus.len(), self.models.len(), &mut self.actions) else {
            return;
        };
        let m = &mut self.models[i];
        let deadline = deadline_of(now, a.slo.unwrap_or(m.slo), &self.deltas);
        m.queue.push(Entry { deadline, id: a.id });
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
        // After a pump, requests wait only while every GPU is busy.
        if self.models.iter().all(|m| m.queue.is_empty()) {
            return None;
        }
        self.gpus.next_free_after(self.now)
    }

    fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }
}
