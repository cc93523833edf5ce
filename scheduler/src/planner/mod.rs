//! The cost planner (`baton plan`): the cheapest fleet — hardware types, batch sizes, worker
//! counts — that keeps every application within its end-to-end latency SLO. A reconstruction of
//! Harpagon (INFOCOM 2025, DESIGN.md §6), checked against a brute-force oracle.
//!
//! The planner is pure: input in, plan out, no clock and no randomness, like the scheduling core.
//! Its levels, one file each:
//!
//! - [`input`]: the TOML input and its validation; [`dag`]: an app's module graph;
//! - [`latency`]: how long requests take behind batch-aware or round-robin dispatch, with dummy
//!   requests and Baton's delivery overheads;
//! - [`config`] (scheduling level): the cheapest configuration for a module, rate and budget, and
//!   the module's cost step function `C(L)`;
//! - [`split`] (splitting level): budgets along every path summing to at most the SLO — exact
//!   dynamic programming over a budget grid, re-joining DAGs included;
//! - [`oracle`] (`--policy optimal`) and [`nexus`] (`--policy nexus`): the judge and the baseline;
//! - [`plan`]: one app end to end; [`verify`]: the planned fleets in the simulator;
//! - [`gen`] and [`bench`]: seeded random workloads and the policy comparison over them;
//! - [`cli`]: `baton plan`.

pub mod bench;
pub mod cli;
pub mod config;
pub mod dag;
pub mod gen;
pub mod input;
pub mod latency;
pub mod nexus;
pub mod oracle;
pub mod plan;
pub mod split;
pub mod verify;

pub use input::{InputError, Problem};
pub use latency::{Dispatch, Overheads};
pub use plan::{plan, plan_app, AppPlan, ModulePlan, Plan, PlanError, TuplePlan};

/// Cost in micro-dollars per hour: integers, so that "equals the optimum" is exact.
pub type Cost = u64;

/// Which planner to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Harpagon: batch-aware dispatch, main + residual tuples, dummy requests, exact DP split.
    Harpagon,
    /// Nexus: round-robin dispatch (2× rule), one tuple per module, DP split.
    Nexus,
    /// Brute force over the same grid and every configuration (small instances).
    Optimal,
}

impl Policy {
    /// Every policy, in the order reports list them.
    pub const ALL: [Policy; 3] = [Policy::Harpagon, Policy::Nexus, Policy::Optimal];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Harpagon => "harpagon",
            Policy::Nexus => "nexus",
            Policy::Optimal => "optimal",
        }
    }
}

/// Knobs shared by every policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanOptions {
    /// Dispatcher the fleet will run behind (Harpagon and the oracle; Nexus is always round-robin).
    pub dispatch: Dispatch,
    /// Delays the runtime adds to every batch.
    pub overheads: Overheads,
    /// Fraction of a worker's throughput the plan may use, on top of the burst limit.
    pub max_util: f64,
    /// Load a worker at batch `b` only up to the mean `μ` per `ℓ(b)` with `P(Poisson(μ) > b) ≤ q`
    /// (`None`: the deterministic model of the paper). See [`latency`].
    pub burst_quantile: Option<f64>,
    /// The SLO is split on a grid of `SLO / grid_steps`.
    pub grid_steps: usize,
    /// Whether tuples may be padded with dummy requests.
    pub dummies: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            dispatch: Dispatch::BatchAware,
            overheads: Overheads::default(),
            max_util: 1.0,
            burst_quantile: Some(0.01),
            grid_steps: 200,
            dummies: true,
        }
    }
}
