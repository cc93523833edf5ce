//! `baton plan`: arguments, and wiring the planner, the verifier and the benchmark to them.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};

use super::bench;
use super::verify::{self, VerifyOptions};
use super::{plan, Dispatch, Plan, PlanOptions, Policy, Problem};

/// Plan the cheapest fleet that keeps every app within its SLO (docs/planner.md).
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Planner input (TOML: hardware, modules with profiles, apps), e.g. docs/planner-example.toml.
    #[arg(long, required_unless_present_any = ["bench", "generated"])]
    pub apps: Option<PathBuf>,
    /// Plan the benchmark's random workload for this seed instead of --apps (to reproduce one).
    #[arg(long, value_name = "SEED", conflicts_with = "apps")]
    pub generated: Option<u64>,
    /// Planner: harpagon (batch-aware, multi-tuple, dummies), nexus (round-robin 2×, one tuple),
    /// optimal (brute force; small instances).
    #[arg(long, value_enum, default_value_t = PolicyArg::Harpagon)]
    pub policy: PolicyArg,
    /// Dispatcher the fleet runs behind (harpagon and optimal; nexus is always round-robin).
    #[arg(long, value_enum, default_value_t = DispatchArg::BatchAware)]
    pub dispatch: DispatchArg,
    /// Each app's SLO is split on a grid of SLO / N.
    #[arg(long, default_value_t = PlanOptions::default().grid_steps)]
    pub grid_steps: usize,
    /// Fraction of a worker's throughput a plan may use.
    #[arg(long, default_value_t = PlanOptions::default().max_util)]
    pub max_util: f64,
    /// Load workers so that a batch overflows with probability ≤ Q under Poisson arrivals (0: off).
    #[arg(long, default_value_t = 0.01, value_name = "Q")]
    pub burst_quantile: f64,
    /// Never pad tuples with dummy requests.
    #[arg(long)]
    pub no_dummies: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Simulate every planned tuple with Baton's dispatcher and report its bad rate.
    #[arg(long)]
    pub verify: bool,
    /// Measured seconds per simulated tuple.
    #[arg(long, default_value_t = 10.0)]
    pub verify_seconds: f64,
    /// Compare the three policies over N seeded random workloads instead of planning --apps.
    #[arg(long, value_name = "N")]
    pub bench: Option<usize>,
    /// First seed of --bench.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Simulate the Harpagon plans of the first K --bench workloads.
    #[arg(long, default_value_t = 50, value_name = "K")]
    pub bench_verify: usize,
}

/// `--policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PolicyArg {
    Harpagon,
    Nexus,
    Optimal,
}

/// `--dispatch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DispatchArg {
    BatchAware,
    RoundRobin,
}

impl From<PolicyArg> for Policy {
    fn from(p: PolicyArg) -> Policy {
        match p {
            PolicyArg::Harpagon => Policy::Harpagon,
            PolicyArg::Nexus => Policy::Nexus,
            PolicyArg::Optimal => Policy::Optimal,
        }
    }
}

/// Runs `baton plan`.
pub fn run(a: PlanArgs) -> Result<()> {
    if !(a.max_util > 0.0 && a.max_util <= 1.0) {
        bail!("--max-util must be in (0, 1] (got {})", a.max_util);
    }
    if !(0.0..1.0).contains(&a.burst_quantile) {
        bail!("--burst-quantile must be in [0, 1) (got {})", a.burst_quantile);
    }
    if a.grid_steps == 0 {
        bail!("--grid-steps must be at least 1");
    }
    if a.verify_seconds <= 0.0 {
        bail!("--verify-seconds must be positive (got {})", a.verify_seconds);
    }
    let opts = PlanOptions {
        dispatch: match a.dispatch {
            DispatchArg::BatchAware => Dispatch::BatchAware,
            DispatchArg::RoundRobin => Dispatch::RoundRobin,
        },
        max_util: a.max_util,
        grid_steps: a.grid_steps,
        burst_quantile: (a.burst_quantile > 0.0).then_some(a.burst_quantile),
        dummies: !a.no_dummies,
        ..PlanOptions::default()
    };
    let vopts = VerifyOptions {
        bench_s: a.verify_seconds,
        ..VerifyOptions::default()
    };
    if let Some(n) = a.bench {
        let quiet = a.json;
        let r = bench::run(n, a.seed, &opts, a.bench_verify.min(n), &vopts, |i| {
            if !quiet && (i + 1) % 100 == 0 {
                eprintln!("  {} / {n} workloads", i + 1);
            }
        });
        if a.json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        return Ok(());
    }
    let problem = match (a.generated, &a.apps) {
        (Some(seed), _) => super::gen::problem(seed),
        (None, Some(path)) => {
            Problem::load(path).with_context(|| format!("reading planner input {}", path.display()))?
        }
        (None, None) => bail!("pass --apps FILE, --generated SEED or --bench N"),
    };
    let t0 = Instant::now();
    let mut p = plan(&problem, a.policy.into(), &opts)?;
    p.runtime_ms = t0.elapsed().as_secs_f64() * 1e3;
    let checks = if a.verify {
        Some(verify::verify(&problem, &p, &vopts)?)
    } else {
        None
    };
    if a.json {
        let mut v = serde_json::to_value(&p)?;
        if let Some(c) = &checks {
            v["verify"] = serde_json::to_value(c)?;
        }
        println!("{v}");
        return Ok(());
    }
    print_table(&p);
    if let Some(checks) = checks {
        println!();
        println!(
            "{:<10} {:<18} {:<18} {:>9} {:>9} {:>9} {:>10} {:>9}",
            "app", "module", "tuple", "rate/s", "budget", "p99 ms", "mean batch", "bad rate"
        );
        let mut worst: f64 = 0.0;
        for c in &checks {
            worst = worst.max(c.bad_rate);
            println!(
                "{:<10} {:<18} {:<18} {:>9.1} {:>9.1} {:>9.1} {:>10.1} {:>9.4}",
                c.app,
                c.module,
                format!("{}×{}×{}", c.hardware, c.batch, c.workers),
                c.rate_rps,
                c.budget_ms,
                c.p99_latency_ms,
                c.mean_batch,
                c.bad_rate
            );
        }
        println!("worst bad rate {worst:.4} over {} simulated tuples", checks.len());
    }
    Ok(())
}

fn print_table(p: &Plan) {
    println!(
        "{:<10} {:<18} {:>9} {:>10}  {:<40} {:>8}",
        "app", "module", "rate/s", "budget ms", "hardware×batch×workers (dummy/s)", "$/h"
    );
    for app in &p.apps {
        for m in &app.modules {
            let tuples = m
                .tuples
                .iter()
                .map(|t| {
                    let mut s = format!("{}×{}×{}", t.hardware, t.batch, t.workers);
                    if t.dummy_rps > 0.0 {
                        s.push_str(&format!(" ({:.1})", t.dummy_rps));
                    }
                    s
                })
                .collect::<Vec<_>>()
                .join(" + ");
            println!(
                "{:<10} {:<18} {:>9.1} {:>10.1}  {:<40} {:>8.3}",
                app.name, m.name, m.rate_rps, m.budget_ms, tuples, m.cost_per_hour
            );
        }
        println!(
            "{:<10} {:<18} {:>9.1} {:>10.1}  {:<40} {:>8.3}",
            app.name, "(app)", app.rate_rps, app.slo_ms, "", app.cost_per_hour
        );
    }
    println!(
        "total ${:.3}/h ({}, planned in {:.2} ms)",
        p.total_cost_per_hour, p.policy, p.runtime_ms
    );
}
