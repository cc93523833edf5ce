//! Seeded random planning problems for the benchmark: one app per problem.
//!
//! - **Hardware**: 1–4 types drawn from a catalogue with cloud-like price/speed trade-offs — faster
//!   types cost more per unit of throughput but are the only way to meet tight budgets:
//!
//!   | type | $/h | speed (× t4) | $ per unit of speed |
//!   |---|---|---|---|
//!   | t4   | 0.35 | 1.0 | 0.35 |
//!   | l4   | 0.70 | 1.9 | 0.37 |
//!   | a10g | 1.00 | 2.6 | 0.38 |
//!   | a100 | 2.90 | 6.5 | 0.45 |
//!
//! - **Modules**: 2–6, as a chain or a random tree (each module's parent drawn among the earlier
//!   ones), fan-outs 1–4 (integers) on each edge. Each module has a linear profile on t4 with slope
//!   0.3–4 ms per request and intercept 2–20 ms (log-uniform), max batch 32; on a type of speed
//!   `s` the slope is divided by `s` and the intercept by `s^0.6` (small batches gain less from a
//!   big GPU), each with ±15% module-specific noise so hardware rankings differ between modules.
//! - **Rates**: the busiest module's rate is log-uniform in 10–5,000 req/s; the app's input rate
//!   follows from the fan-outs, so every module sees at most 5,000 req/s.
//! - **SLO**: log-uniform in 50–1,000 ms, redrawn (up to a few times, then raised) until it is at
//!   least 1.3× the app's minimum feasible SLO, so every problem has a plan.

use baton_common::profile::Profile;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::dag::Dag;
use super::input::{App, Hardware, Module, Problem};

/// (name, $/h, speed relative to t4).
pub const CATALOGUE: [(&str, f64, f64); 4] = [
    ("t4", 0.35, 1.0),
    ("l4", 0.70, 1.9),
    ("a10g", 1.00, 2.6),
    ("a100", 2.90, 6.5),
];

/// Max batch of generated profiles.
pub const MAX_BATCH: u32 = 32;

fn log_uniform(rng: &mut StdRng, lo: f64, hi: f64) -> f64 {
    (rng.random_range(lo.ln()..hi.ln())).exp()
}

/// The problem for `seed`.
pub fn problem(seed: u64) -> Problem {
    let mut rng = StdRng::seed_from_u64(seed);
    let k = rng.random_range(1..=CATALOGUE.len());
    let mut picked: Vec<usize> = (0..CATALOGUE.len()).collect();
    while picked.len() > k {
        let i = rng.random_range(0..picked.len());
        picked.remove(i);
    }
    let hardware: Vec<Hardware> = picked
        .iter()
        .map(|&i| Hardware {
            name: CATALOGUE[i].0.to_string(),
            price_per_hour: CATALOGUE[i].1,
        })
        .collect();
    let n = rng.random_range(2..=6usize);
    let chain = rng.random_bool(0.5);
    let mut edges = Vec::new();
    for v in 1..n {
        let u = if chain { v - 1 } else { rng.random_range(0..v) };
        edges.push((u, v, f64::from(rng.random_range(1..=4u32))));
    }
    let dag = Dag::new(n, &edges).expect("edges go from earlier to later modules");
    let mut modules = Vec::new();
    let mut min_lat = Vec::new();
    for v in 0..n {
        let slope = log_uniform(&mut rng, 300.0, 4000.0);
        let intercept = log_uniform(&mut rng, 2000.0, 20000.0);
        let mut profiles = Vec::new();
        let mut fastest = f64::INFINITY;
        for &i in &picked {
            let s = CATALOGUE[i].2;
            let sl = slope / s * rng.random_range(0.85..1.15);
            let ic = intercept / s.powf(0.6) * rng.random_range(0.85..1.15);
            fastest = fastest.min(sl + ic);
            let p = Profile::from_spec(&format!("sleep#{sl:.0},{ic:.0},0,0"), MAX_BATCH).expect("valid spec");
            profiles.push(Some(p));
        }
        min_lat.push(fastest / 1000.0 + 0.3);
        modules.push(Module {
            name: format!("m{v}"),
            profiles,
        });
    }
    let fan = dag.rates(1.0);
    let max_fan = fan.iter().copied().fold(1.0, f64::max);
    let rate = log_uniform(&mut rng, 10.0, 5000.0) / max_fan;
    let (min_slo, _) = dag.longest_path(&min_lat);
    let mut slo = log_uniform(&mut rng, 50.0, 1000.0);
    for _ in 0..4 {
        if slo >= 1.3 * min_slo {
            break;
        }
        slo = log_uniform(&mut rng, 50.0, 1000.0);
    }
    let slo = slo.max((1.3 * min_slo).ceil());
    Problem {
        hardware,
        modules,
        apps: vec![App {
            name: format!("app{seed}"),
            rate_rps: rate,
            slo_ms: slo.round(),
            nodes: (0..n).collect(),
            dag,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_and_within_the_documented_ranges() {
        for seed in 0..50 {
            let p = problem(seed);
            let q = problem(seed);
            assert_eq!(p.apps[0].rate_rps, q.apps[0].rate_rps);
            let a = &p.apps[0];
            assert!((2..=6).contains(&a.nodes.len()));
            assert!((1..=4).contains(&p.hardware.len()));
            let max = a.dag.rates(a.rate_rps).into_iter().fold(0.0, f64::max);
            assert!((9.99..=5000.01).contains(&max), "{max}");
            assert!(a.slo_ms >= 50.0, "{}", a.slo_ms);
            assert!(a.dag.joins().is_empty());
        }
    }
}
