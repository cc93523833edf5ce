//! The policy interface every simulated scheduler implements, in the same
//! sans-IO shape as the core: inputs with the current time, decisions out of
//! `poll_action`, wake-ups from `poll_timeout`.
//!
//! The engine owns the physics every policy pays alike: a plan's batch
//! starts no earlier than `sent_at + δ_ctrl + b·δ_data` and no earlier than
//! its GPU really frees; it runs `L(b)` (with jitter when asked). Policies
//! only decide which requests go to which GPU and when.

use crate::core::{Action, Arrival, BatchId, CoreConfig, LatencyTable, ModelId, Scheduler, Time, WorkerId};

/// What every policy is told about a model.
#[derive(Debug, Clone)]
pub struct SimModel {
    pub name: String,
    pub latency: LatencyTable,
    /// End-to-end SLO.
    pub slo: Time,
    /// The offered rate during the bench phase (req/s): static planners
    /// (nexus) are given it; online policies measure rates themselves.
    pub planned_rps: f64,
}

/// A simulated scheduler.
pub trait Policy {
    fn name(&self) -> &'static str;
    fn on_arrival(&mut self, a: Arrival, now: Time);
    /// A batch finished on `worker` at `now`, after running `exec` (what a
    /// worker's `BatchDone` reports).
    fn on_batch_done(&mut self, batch: BatchId, worker: WorkerId, exec: Time, now: Time);
    fn handle_timeout(&mut self, now: Time);
    fn poll_timeout(&self) -> Option<Time>;
    fn poll_action(&mut self) -> Option<Action>;
}

/// Builds a policy for `models` on workers `0..gpus` (every worker serves
/// every model), with the shared constants in `cfg.deltas`.
pub type PolicyFactory = fn(cfg: &CoreConfig, models: &[SimModel], gpus: usize) -> Box<dyn Policy>;

/// Baton's core as a policy (`symphony`, `symphony-eager`).
#[derive(Debug)]
pub struct CorePolicy {
    name: &'static str,
    core: Scheduler,
}

impl CorePolicy {
    pub fn new(name: &'static str, cfg: CoreConfig, models: &[SimModel], gpus: usize) -> Self {
        let mut core = Scheduler::new(cfg);
        let ids: Vec<ModelId> = models
            .iter()
            .map(|m| {
                core.add_model(crate::core::ModelSpec {
                    name: m.name.clone(),
                    latency: m.latency.clone(),
                    slo: m.slo,
                })
            })
            .collect();
        for w in 0..gpus {
            core.add_worker(WorkerId(w as u64), &ids, 0)
                .expect("fresh worker ids and registered models");
        }
        Self { name, core }
    }
}

impl Policy for CorePolicy {
    fn name(&self) -> &'static str {
        self.name
    }
    fn on_arrival(&mut self, a: Arrival, now: Time) {
        self.core.on_arrival(a, now);
    }
    fn on_batch_done(&mut self, batch: BatchId, _worker: WorkerId, exec: Time, now: Time) {
        // Unknown only if the batch's worker was removed, which the simulator never does.
        let _ = self.core.on_batch_done_after(batch, exec, now);
    }
    fn handle_timeout(&mut self, now: Time) {
        self.core.handle_timeout(now);
    }
    fn poll_timeout(&self) -> Option<Time> {
        self.core.poll_timeout()
    }
    fn poll_action(&mut self) -> Option<Action> {
        self.core.poll_action()
    }
}
