//! `baton plan --bench N`: the three policies over `N` seeded random problems ([`super::gen`]).
//!
//! For every problem: the cost of each policy, whether Harpagon's equals the oracle's, the ratios,
//! and each policy's planning time (wall clock, measured here around the pure planner). The first
//! `verify` problems' Harpagon plans are also run in the simulator ([`super::verify`]).

use std::time::Instant;

use serde::Serialize;

use super::plan::plan_app;
use super::verify::{self, VerifyOptions};
use super::{gen, Cost, PlanOptions, Policy};

/// What the benchmark measures.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub workloads: usize,
    pub seed: u64,
    pub grid_steps: usize,
    pub max_util: f64,
    /// Problems where Harpagon's cost equals the oracle's, as a fraction.
    pub harpagon_optimal_fraction: f64,
    pub harpagon_over_optimal_mean: f64,
    pub harpagon_over_optimal_worst: f64,
    /// Over problems Nexus can plan at all.
    pub nexus_over_harpagon_mean: f64,
    pub nexus_over_harpagon_max: f64,
    /// The seed of that maximum.
    pub nexus_worst_seed: u64,
    /// Problems each policy could not plan (Nexus: SLO too tight for the 2× rule).
    pub harpagon_infeasible: usize,
    pub optimal_infeasible: usize,
    pub nexus_infeasible: usize,
    pub harpagon_ms_p50: f64,
    pub harpagon_ms_p99: f64,
    pub harpagon_ms_max: f64,
    pub nexus_ms_p50: f64,
    pub optimal_ms_p50: f64,
    pub optimal_ms_p99: f64,
    /// Problems whose Harpagon plan was simulated, and the tuples simulated.
    pub verified_workloads: usize,
    pub verified_tuples: usize,
    pub verify_bad_rate_mean: f64,
    pub verify_bad_rate_max: f64,
    /// Tuples with bad rate above 1%.
    pub verify_tuples_above_1pct: usize,
    /// Seeds where Harpagon was not optimal (the first 20).
    pub suboptimal_seeds: Vec<u64>,
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1]
}

/// Runs the benchmark over seeds `seed..seed + n`, simulating the first `verify` Harpagon plans.
pub fn run(
    n: usize,
    seed: u64,
    opts: &PlanOptions,
    verify: usize,
    vopts: &VerifyOptions,
    mut progress: impl FnMut(usize),
) -> BenchReport {
    let mut times = [Vec::new(), Vec::new(), Vec::new()];
    let (mut equal, mut ratio_sum, mut worst) = (0usize, 0.0, 1.0f64);
    let (mut nx_sum, mut nx_max, mut nx_n, mut nx_inf) = (0.0, 0.0f64, 0usize, 0usize);
    let mut subopt = Vec::new();
    let (mut vw, mut vt, mut bad_sum, mut bad_max, mut above) = (0, 0, 0.0, 0.0f64, 0);
    let mut counted = 0usize;
    let mut failed = [0usize; 3];
    let mut nx_seed = 0;
    for i in 0..n {
        let s = seed + i as u64;
        let p = gen::problem(s);
        let mut costs: [Option<Cost>; 3] = [None; 3];
        let mut harp = None;
        for (k, policy) in Policy::ALL.iter().enumerate() {
            let t0 = Instant::now();
            let r = plan_app(&p, 0, *policy, opts);
            times[k].push(t0.elapsed().as_secs_f64() * 1e3);
            if let Ok(a) = &r {
                costs[k] = Some(a.cost);
            }
            if *policy == Policy::Harpagon {
                harp = r.ok();
            }
        }
        failed[0] += usize::from(costs[0].is_none());
        failed[2] += usize::from(costs[2].is_none());
        let (Some(h), Some(o)) = (costs[0], costs[2]) else {
            nx_inf += usize::from(costs[1].is_none());
            progress(i);
            continue;
        };
        counted += 1;
        if h == o {
            equal += 1;
        } else if subopt.len() < 20 {
            subopt.push(s);
        }
        let r = h as f64 / o as f64;
        ratio_sum += r;
        worst = worst.max(r);
        match costs[1] {
            Some(x) => {
                let r = x as f64 / h as f64;
                nx_sum += r;
                if r > nx_max {
                    nx_max = r;
                    nx_seed = s;
                }
                nx_n += 1;
            }
            None => nx_inf += 1,
        }
        if i < verify {
            if let Some(a) = harp {
                let plan = super::Plan {
                    policy: "harpagon".into(),
                    total_cost_per_hour: a.cost_per_hour,
                    runtime_ms: 0.0,
                    apps: vec![a],
                };
                if let Ok(checks) = verify::verify(&p, &plan, vopts) {
                    vw += 1;
                    for c in checks {
                        vt += 1;
                        bad_sum += c.bad_rate;
                        bad_max = bad_max.max(c.bad_rate);
                        if c.bad_rate > 0.01 {
                            above += 1;
                        }
                    }
                }
            }
        }
        progress(i);
    }
    let [mut th, mut tn, mut to] = times;
    let c = counted.max(1) as f64;
    BenchReport {
        workloads: n,
        seed,
        grid_steps: opts.grid_steps,
        max_util: opts.max_util,
        harpagon_optimal_fraction: equal as f64 / c,
        harpagon_over_optimal_mean: ratio_sum / c,
        harpagon_over_optimal_worst: worst,
        nexus_over_harpagon_mean: nx_sum / nx_n.max(1) as f64,
        nexus_over_harpagon_max: nx_max,
        nexus_worst_seed: nx_seed,
        harpagon_infeasible: failed[0],
        optimal_infeasible: failed[2],
        nexus_infeasible: nx_inf,
        harpagon_ms_p50: percentile(&mut th, 0.5),
        harpagon_ms_p99: percentile(&mut th, 0.99),
        harpagon_ms_max: percentile(&mut th, 1.0),
        nexus_ms_p50: percentile(&mut tn, 0.5),
        optimal_ms_p50: percentile(&mut to, 0.5),
        optimal_ms_p99: percentile(&mut to, 0.99),
        verified_workloads: vw,
        verified_tuples: vt,
        verify_bad_rate_mean: bad_sum / vt.max(1) as f64,
        verify_bad_rate_max: bad_max,
        verify_tuples_above_1pct: above,
        suboptimal_seeds: subopt,
    }
}
