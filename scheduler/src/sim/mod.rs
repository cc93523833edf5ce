//! `baton sim`: Baton's scheduling core and the systems people would pick
//! instead, side by side in virtual time on the same workloads, emulated
//! GPUs and metrics.
//!
//! - [`crate::workload`] (beside this module, as the load generator replays
//!   the same files) reads Symphony's benchmark workload files and traces and
//!   generates seeded arrivals;
//! - [`policy`] is the interface every simulated scheduler implements
//!   (Baton's core through [`policy::CorePolicy`]); [`baselines`] holds the
//!   others;
//! - [`engine`] runs one policy on one workload and accounts for every
//!   request; [`metrics`] is what it reports;
//! - [`sweep`] searches for max goodput and min GPUs.

pub mod baselines;
pub mod engine;
pub mod metrics;
pub mod plot;
pub mod policy;
pub mod sweep;

use baton_common::settings::{Condition, GpuChoice};

use crate::workload::Workload;
use engine::SimOptions;
use metrics::RunMetrics;
use policy::{CorePolicy, Policy, SimModel};

/// Every policy `--policy` accepts.
pub const POLICIES: &[&str] = &["symphony", "symphony-eager", "eager", "triton", "nexus", "shepherd"];

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("unknown policy `{0}`; known policies: {known}", known = POLICIES.join(", "))]
    UnknownPolicy(String),
    #[error("the workload has no GPUs; pass --gpus N")]
    NoGpus,
}

/// Builds the named policy.
pub fn make_policy(
    name: &str,
    opts: &SimOptions,
    models: &[SimModel],
    gpus: usize,
) -> Result<Box<dyn Policy>, SimError> {
    let cfg = opts.config;
    Ok(match name {
        "symphony" => Box::new(CorePolicy::new(
            "symphony",
            core_config(cfg, Condition::Deferred),
            models,
            gpus,
        )),
        "symphony-eager" => Box::new(CorePolicy::new(
            "symphony-eager",
            core_config(cfg, Condition::Eager),
            models,
            gpus,
        )),
        "eager" => Box::new(baselines::Eager::new(&cfg, models, gpus)),
        "triton" => Box::new(baselines::Triton::new(&cfg, models, gpus)),
        "nexus" => Box::new(baselines::Nexus::new(&cfg, models, gpus)),
        "shepherd" => Box::new(baselines::Shepherd::new(&cfg, models, gpus)),
        other => return Err(SimError::UnknownPolicy(other.to_string())),
    })
}

fn core_config(mut cfg: crate::core::CoreConfig, condition: Condition) -> crate::core::CoreConfig {
    cfg.condition = condition;
    if cfg.gpu_choice != GpuChoice::Earliest {
        cfg.gpu_choice = GpuChoice::Consolidate;
    }
    cfg
}

/// Runs the named policy on `w` with `opts` (rates multiplied by
/// `opts.rate_multiplier`).
pub fn run_named(w: &Workload, name: &str, policy: &str, opts: &SimOptions) -> Result<RunMetrics, SimError> {
    let gpus = opts.gpus.unwrap_or(w.gpus);
    if gpus == 0 {
        return Err(SimError::NoGpus);
    }
    // Static planners are told the rate they will see.
    let scaled = w.scaled(opts.rate_multiplier);
    let mut models = engine::sim_models(&scaled);
    // The profile a profiler would have measured under this noise: L(b) is
    // mean + std (DESIGN §4), and the emulated GPUs draw around the mean.
    // A wrong profile (`profile_error`) is off in both parts.
    let (k, cv) = (opts.profile_error, opts.jitter.cv);
    if k != 1.0 || cv > 0.0 {
        for m in &mut models {
            let l = m.latency.clone();
            let at = |b: u32, f: f64| (l.get(b) as f64 * k * f).round() as crate::core::Time;
            m.latency = crate::core::LatencyTable::from_fn_with_std(l.max_batch(), |b| at(b, 1.0), |b| at(b, cv));
        }
    }
    if let Some(t) = &opts.trace {
        let rps = t.mean_rate() * opts.rate_multiplier / models.len().max(1) as f64;
        for m in &mut models {
            m.planned_rps = rps;
        }
    }
    let mut p = make_policy(policy, opts, &models, gpus)?;
    Ok(engine::run(w, name, p.as_mut(), opts))
}
