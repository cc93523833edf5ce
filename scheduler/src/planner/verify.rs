//! `baton plan --verify`: does the planner's promise hold in the runtime?
//!
//! Every tuple of every planned module is simulated on its own ([`crate::sim`]): Poisson arrivals
//! at the tuple's share of the module's rate, the planned number of workers of its hardware type
//! (the simulator's GPUs are homogeneous and each model has one profile, so a module with two
//! tuples is two runs), and Baton's dispatcher (`symphony`: batch-aware, deferred). The simulated
//! SLO is the module's budget plus the dispatcher's `δ_resp`, so each request's deadline is
//! exactly its arrival plus the budget. A tuple keeps the promise when its bad rate (late or
//! dropped) stays at or below the target.
//!
//! The real dispatcher needs no dummy requests: at a low rate it sends a partial batch just in
//! time, which only finishes sooner than the padded batch the plan assumed.

use serde::Serialize;

use super::input::Problem;
use super::plan::Plan;
use crate::core::{CoreConfig, MS};
use crate::sim::engine::SimOptions;
use crate::sim::{self, SimError};
use crate::workload::{Gap, ModelLoad, Segment, Workload};

/// How long and how to simulate each tuple.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Measured seconds per tuple (after 2 s of warm-up).
    pub bench_s: f64,
    pub seed: u64,
    /// The dispatcher's constants; must match the overheads the plan was made with.
    pub config: CoreConfig,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            bench_s: 10.0,
            seed: 1,
            config: CoreConfig::default(),
        }
    }
}

/// One simulated tuple.
#[derive(Debug, Clone, Serialize)]
pub struct TupleCheck {
    pub app: String,
    pub module: String,
    pub hardware: String,
    pub batch: u32,
    pub workers: u32,
    pub rate_rps: f64,
    pub budget_ms: f64,
    pub requests: u64,
    pub bad_rate: f64,
    pub p99_latency_ms: f64,
    pub mean_batch: f64,
}

/// Simulates every tuple of `plan` (made from `problem`).
pub fn verify(problem: &Problem, plan: &Plan, opts: &VerifyOptions) -> Result<Vec<TupleCheck>, SimError> {
    let resp_ms = opts.config.deltas.resp as f64 / MS as f64;
    let mut out = Vec::new();
    for app in &plan.apps {
        for m in &app.modules {
            let Some(module) = problem.modules.iter().find(|x| x.name == m.name) else {
                continue;
            };
            for t in &m.tuples {
                let Some(h) = problem.hardware_index(&t.hardware) else {
                    continue;
                };
                let Some(profile) = module.profiles[h].clone() else {
                    continue;
                };
                if t.rate_rps <= 0.0 {
                    continue;
                }
                let seg = |d: f64| {
                    vec![Segment {
                        duration_s: d,
                        rps: t.rate_rps,
                    }]
                };
                let w = Workload {
                    seed: opts.seed,
                    gpus: t.workers as usize,
                    models: vec![ModelLoad {
                        name: m.name.clone(),
                        profile,
                        slo_ms: m.budget_ms + resp_ms,
                        gap: Gap::Exp,
                        warmup: seg(2.0),
                        bench: seg(opts.bench_s),
                        cooldown: seg(1.0),
                    }],
                };
                let so = SimOptions {
                    config: opts.config,
                    ..SimOptions::default()
                };
                let r = sim::run_named(&w, &format!("{}/{}", app.name, m.name), "symphony", &so)?;
                out.push(TupleCheck {
                    app: app.name.clone(),
                    module: m.name.clone(),
                    hardware: t.hardware.clone(),
                    batch: t.batch,
                    workers: t.workers,
                    rate_rps: t.rate_rps,
                    budget_ms: m.budget_ms,
                    requests: r.requests,
                    bad_rate: r.bad_rate,
                    p99_latency_ms: r.p99_latency_ms,
                    mean_batch: r.mean_batch,
                });
            }
        }
    }
    Ok(out)
}
