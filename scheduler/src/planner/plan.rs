//! Planning an app end to end: module rates from the fan-outs, each module's cost curve from the
//! policy's scheduling level, the SLO split, and the resulting plan.
//!
//! Every app is planned on its own: a module used by two apps gets two fleets. (Sharing a fleet
//! across apps would need a joint split; apps here do not share modules.)

use serde::Serialize;

use super::config::{self, Config, CostCurve};
use super::input::{App, Problem};
use super::latency::HwModel;
use super::{nexus, oracle, split, Cost, PlanOptions, Policy};

/// A planned fleet for every app.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub policy: String,
    pub total_cost_per_hour: f64,
    /// Wall time of planning, filled in by the caller (the planner itself reads no clock).
    pub runtime_ms: f64,
    pub apps: Vec<AppPlan>,
}

/// One app's modules and its cost.
#[derive(Debug, Clone, Serialize)]
pub struct AppPlan {
    pub name: String,
    pub rate_rps: f64,
    pub slo_ms: f64,
    pub cost_per_hour: f64,
    /// Exact cost in micro-dollars per hour, for comparisons.
    #[serde(skip)]
    pub cost: Cost,
    pub modules: Vec<ModulePlan>,
}

/// One module of an app: its rate, its share of the SLO, and its tuples.
#[derive(Debug, Clone, Serialize)]
pub struct ModulePlan {
    pub name: String,
    pub rate_rps: f64,
    pub budget_ms: f64,
    pub cost_per_hour: f64,
    pub tuples: Vec<TuplePlan>,
}

/// `workers` of `hardware` running batch `batch`.
#[derive(Debug, Clone, Serialize)]
pub struct TuplePlan {
    pub hardware: String,
    pub batch: u32,
    pub workers: u32,
    /// This tuple's share of the module's real requests.
    pub rate_rps: f64,
    /// Dummy requests per second that keep its batches filling in time (0: none needed).
    pub dummy_rps: f64,
}

/// Why an app cannot be planned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    #[error(
        "app `{app}`: SLO {slo_ms} ms cannot be met: the path {path} needs {min_slo_ms} ms even at batch 1 \
         on the fastest hardware; raise slo_ms to at least {min_slo_ms}"
    )]
    Infeasible {
        app: String,
        slo_ms: f64,
        /// The smallest SLO any plan can meet (rounded up to 0.1 ms).
        min_slo_ms: f64,
        /// The critical path, each module with its minimum latency.
        path: String,
    },

    #[error(
        "app `{app}`: SLO {slo_ms} ms is above the minimum {min_slo_ms} ms but too tight for a budget grid of \
         {steps} steps (each module's budget is rounded down to a step); raise --grid-steps or slo_ms"
    )]
    GridTooCoarse {
        app: String,
        slo_ms: f64,
        min_slo_ms: f64,
        steps: usize,
    },
}

/// Micro-dollars per hour of a price in dollars per hour.
pub fn micro_dollars(price_per_hour: f64) -> Cost {
    (price_per_hour * 1e6).round() as Cost
}

/// Dollars per hour of a cost in micro-dollars per hour.
pub fn dollars(cost: Cost) -> f64 {
    cost as f64 / 1e6
}

/// Plans every app of `problem` with `policy`.
pub fn plan(problem: &Problem, policy: Policy, opts: &PlanOptions) -> Result<Plan, PlanError> {
    let apps = (0..problem.apps.len())
        .map(|a| plan_app(problem, a, policy, opts))
        .collect::<Result<Vec<_>, _>>()?;
    let total: Cost = apps.iter().map(|a| a.cost).sum();
    Ok(Plan {
        policy: policy.name().to_string(),
        total_cost_per_hour: dollars(total),
        runtime_ms: 0.0,
        apps,
    })
}

/// The planner's view of every module of `app` on every hardware type it has a profile for.
pub fn hw_models(problem: &Problem, app: &App, policy: Policy, opts: &PlanOptions) -> Vec<Vec<HwModel>> {
    app.nodes
        .iter()
        .map(|&m| {
            let hws: Vec<HwModel> = problem.modules[m]
                .profiles
                .iter()
                .enumerate()
                .filter_map(|(h, p)| {
                    let p = p.as_ref()?;
                    Some(HwModel::new(
                        h,
                        micro_dollars(problem.hardware[h].price_per_hour),
                        p,
                        opts,
                    ))
                })
                .collect();
            match policy {
                Policy::Nexus => nexus::round_robin(&hws),
                _ => hws,
            }
        })
        .collect()
}

/// Plans app number `a` of `problem`.
pub fn plan_app(problem: &Problem, a: usize, policy: Policy, opts: &PlanOptions) -> Result<AppPlan, PlanError> {
    let app = &problem.apps[a];
    let rates = app.dag.rates(app.rate_rps);
    let models = hw_models(problem, app, policy, opts);
    check_feasible(problem, app, &models, &rates)?;

    let g = opts.grid_steps.max(1);
    let step = app.slo_ms / g as f64;
    let curves: Vec<CostCurve> = models
        .iter()
        .zip(&rates)
        .map(|(hws, &r)| {
            CostCurve::build(g, step, |l| match policy {
                Policy::Harpagon => config::harpagon(hws, r, l, opts.dummies),
                Policy::Nexus => nexus::config(hws, r, l),
                Policy::Optimal => {
                    let upper = config::harpagon(hws, r, l, opts.dummies);
                    oracle::config(hws, r, l, opts.dummies, upper)
                }
            })
        })
        .collect();
    let costs: Vec<Vec<Cost>> = curves.iter().map(CostCurve::costs).collect();
    let s = match policy {
        Policy::Optimal => oracle::split(&app.dag, &costs, g),
        _ => split::split(&app.dag, &costs, g),
    };
    let Some(s) = s else {
        let (min, _) = min_slo(problem, app, &models);
        return Err(PlanError::GridTooCoarse {
            app: app.name.clone(),
            slo_ms: app.slo_ms,
            min_slo_ms: min,
            steps: g,
        });
    };
    let budgets = split::spread_slack(&app.dag, &s.budgets, g);
    let modules = (0..app.nodes.len())
        .map(|v| {
            let c: &Config = curves[v].configs[s.budgets[v]]
                .as_ref()
                .expect("the split uses feasible budgets");
            ModulePlan {
                name: problem.modules[app.nodes[v]].name.clone(),
                rate_rps: rates[v],
                budget_ms: budgets[v] as f64 * step,
                cost_per_hour: dollars(c.cost),
                tuples: c
                    .tuples
                    .iter()
                    .map(|t| TuplePlan {
                        hardware: problem.hardware[t.hw].name.clone(),
                        batch: t.batch,
                        workers: t.workers,
                        rate_rps: t.rate_rps,
                        dummy_rps: t.dummy_rps,
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(AppPlan {
        name: app.name.clone(),
        rate_rps: app.rate_rps,
        slo_ms: app.slo_ms,
        cost_per_hour: dollars(s.cost),
        cost: s.cost,
        modules,
    })
}

/// The smallest SLO any plan can meet — the longest path of each module's fastest batch-1
/// latency — rounded up to 0.1 ms, with that path described.
fn min_slo(problem: &Problem, app: &App, models: &[Vec<HwModel>]) -> (f64, String) {
    let fastest: Vec<(f64, usize)> = models
        .iter()
        .map(|hws| {
            hws.iter()
                .map(|m| (m.min_latency_ms(), m.hw))
                .fold((f64::INFINITY, 0), |a, b| if b.0 < a.0 { b } else { a })
        })
        .collect();
    let w: Vec<f64> = fastest.iter().map(|f| f.0).collect();
    let (total, path) = app.dag.longest_path(&w);
    let desc = path
        .iter()
        .map(|&v| {
            format!(
                "{} ({:.1} ms on {})",
                problem.modules[app.nodes[v]].name, fastest[v].0, problem.hardware[fastest[v].1].name
            )
        })
        .collect::<Vec<_>>()
        .join(" → ");
    ((total * 10.0 - 1e-9).ceil() / 10.0, desc)
}

fn check_feasible(problem: &Problem, app: &App, models: &[Vec<HwModel>], _rates: &[f64]) -> Result<(), PlanError> {
    let (min, path) = min_slo(problem, app, models);
    if app.slo_ms + 1e-9 < min {
        return Err(PlanError::Infeasible {
            app: app.name.clone(),
            slo_ms: app.slo_ms,
            min_slo_ms: min,
            path,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::latency::Overheads;
    use proptest::prelude::*;

    /// One hardware type at $1/h; every module d(b) = 10·b + 10 ms, max batch 8; no overheads;
    /// the grid step is 10 ms.
    ///
    /// Per worker T(b) = 1000·b/(10b + 10) req/s; a tuple of `n` needs `ℓ(b) + max((b−1)/r, ℓ(b)/n)`.
    /// At 80 req/s one padded worker needs T(b) ≥ 80, so b ≥ 4, and 50 + max(37.5, 50) = 100 ms:
    /// `C(L) = $1` from 100 ms. Two workers at batch 1 (100 req/s): 20 + 10 = 30 ms: `$2` from 30.
    /// At 40 req/s one worker at batch 1 takes 20 + 20 = 40 ms: `$1` from 40, `$2` from 30.
    /// At 120 req/s two workers at batch 2 (133 req/s) take 30 + max(7.5, 15) = 45 ms: `$2` from 50.
    fn problem(apps: &str) -> Problem {
        Problem::from_toml_str(&format!(
            "[[hardware]]\nname = \"gpu\"\nprice_per_hour = 1.0\n\
             [[modules]]\nname = \"a\"\nmax_batch = 8\nprofiles.gpu = \"sleep#10000,10000,0,0\"\n\
             [[modules]]\nname = \"b\"\nmax_batch = 8\nprofiles.gpu = \"sleep#10000,10000,0,0\"\n\
             [[modules]]\nname = \"c\"\nmax_batch = 8\nprofiles.gpu = \"sleep#10000,10000,0,0\"\n\
             [[modules]]\nname = \"d\"\nmax_batch = 8\nprofiles.gpu = \"sleep#10000,10000,0,0\"\n{apps}"
        ))
        .unwrap()
    }

    fn opts(slo_ms: f64) -> PlanOptions {
        PlanOptions {
            overheads: Overheads::NONE,
            max_util: 1.0,
            burst_quantile: None,
            grid_steps: (slo_ms / 10.0) as usize,
            ..PlanOptions::default()
        }
    }

    fn cost(p: &Problem, policy: Policy) -> Result<f64, PlanError> {
        Ok(plan_app(p, 0, policy, &opts(p.apps[0].slo_ms))?.cost_per_hour)
    }

    fn chain(slo: u32) -> Problem {
        problem(&format!(
            "[[apps]]\nname = \"chain\"\nrate_rps = 80\nslo_ms = {slo}\nmodules = [\"a\", \"b\"]\n\
             edges = [{{ from = \"a\", to = \"b\" }}]\n"
        ))
    }

    #[test]
    fn hand_computed_chain() {
        // Both modules get 100 ms at 200 ms; one of them at 150 ms; neither at 100 ms.
        assert_eq!(cost(&chain(200), Policy::Harpagon).unwrap(), 2.0);
        assert_eq!(cost(&chain(150), Policy::Harpagon).unwrap(), 3.0);
        assert_eq!(cost(&chain(100), Policy::Harpagon).unwrap(), 4.0);
        for slo in [100, 150, 200] {
            assert_eq!(
                cost(&chain(slo), Policy::Optimal).unwrap(),
                cost(&chain(slo), Policy::Harpagon).unwrap()
            );
        }
        let p = plan_app(&chain(200), 0, Policy::Harpagon, &opts(200.0)).unwrap();
        let b: Vec<f64> = p.modules.iter().map(|m| m.budget_ms).collect();
        assert_eq!(b, vec![100.0, 100.0]);
        let t = &p.modules[0].tuples[0];
        assert_eq!((t.batch, t.workers), (4, 1));
        // Nexus' 2× rule: one worker needs 2·ℓ(4) = 100 ms, like batch-aware; but two workers at
        // batch 1 need 2·20 = 40 ms where batch-aware needs 30: at 60 ms only Harpagon has a plan.
        assert_eq!(cost(&chain(200), Policy::Nexus).unwrap(), 2.0);
        assert_eq!(cost(&chain(60), Policy::Harpagon).unwrap(), 4.0);
        assert!(cost(&chain(60), Policy::Nexus).is_err());
    }

    #[test]
    fn tree_with_fanout() {
        // a (40/s) → b (×2, 80/s), a → c (40/s). b needs 100 ms for one worker, a and c 40 ms.
        let tree = |slo: u32| {
            problem(&format!(
                "[[apps]]\nname = \"tree\"\nrate_rps = 40\nslo_ms = {slo}\nmodules = [\"a\", \"b\", \"c\"]\n\
                 edges = [{{ from = \"a\", to = \"b\", fanout = 2 }}, {{ from = \"a\", to = \"c\" }}]\n"
            ))
        };
        assert_eq!(cost(&tree(140), Policy::Harpagon).unwrap(), 3.0);
        assert_eq!(cost(&tree(130), Policy::Harpagon).unwrap(), 4.0);
        let p = plan_app(&tree(140), 0, Policy::Harpagon, &opts(140.0)).unwrap();
        let rates: Vec<f64> = p.modules.iter().map(|m| m.rate_rps).collect();
        assert_eq!(rates, vec![40.0, 80.0, 40.0]);
        assert_eq!(cost(&tree(140), Policy::Optimal).unwrap(), 3.0);
    }

    #[test]
    fn rejoining_dag_matches_the_oracle() {
        // a → b (×2) → d, a → c → d: d (120/s) waits for both branches and is counted once.
        let p = problem(
            "[[apps]]\nname = \"dag\"\nrate_rps = 40\nslo_ms = 200\nmodules = [\"a\", \"b\", \"c\", \"d\"]\n\
             edges = [{ from = \"a\", to = \"b\", fanout = 2 }, { from = \"a\", to = \"c\" },\n\
                      { from = \"b\", to = \"d\" }, { from = \"c\", to = \"d\" }]\n",
        );
        let h = plan_app(&p, 0, Policy::Harpagon, &opts(200.0)).unwrap();
        let o = plan_app(&p, 0, Policy::Optimal, &opts(200.0)).unwrap();
        assert_eq!(h.cost, o.cost);
        // a 40 ms ($1), b 100 ms ($1), c 40 ms ($1), d at 120/s 50 ms ($2): 190 ms, $5.
        assert_eq!(h.cost_per_hour, 5.0);
        let bud: Vec<f64> = h.modules.iter().map(|m| m.budget_ms).collect();
        assert!(
            bud[0] + bud[1] + bud[3] <= 200.0 && bud[0] + bud[2] + bud[3] <= 200.0,
            "{bud:?}"
        );
        assert_eq!(h.modules[3].rate_rps, 120.0);
    }

    #[test]
    fn infeasible_slo_names_the_path_and_the_smallest_slo() {
        // Batch 1 takes 20 ms per module: the chain needs 40 ms.
        let e = cost(&chain(30), Policy::Harpagon).unwrap_err().to_string();
        assert_eq!(
            e,
            "app `chain`: SLO 30 ms cannot be met: the path a (20.0 ms on gpu) → b (20.0 ms on gpu) \
             needs 40 ms even at batch 1 on the fastest hardware; raise slo_ms to at least 40"
        );
        // Nexus doubles it.
        let e = cost(&chain(70), Policy::Nexus).unwrap_err().to_string();
        assert!(e.contains("raise slo_ms to at least 80"), "{e}");
    }

    fn check_feasible(p: &Problem, a: &AppPlan) {
        let app = &p.apps[0];
        let bud: Vec<f64> = a.modules.iter().map(|m| m.budget_ms).collect();
        let (longest, _) = app.dag.longest_path(&bud);
        assert!(longest <= app.slo_ms + 1e-6, "paths {longest} > SLO {}", app.slo_ms);
        for m in &a.modules {
            let share: f64 = m.tuples.iter().map(|t| t.rate_rps).sum();
            assert!((share - m.rate_rps).abs() < 1e-6 * m.rate_rps.max(1.0));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn harpagon_never_beats_the_oracle_and_plans_are_feasible(seed in 0u64..1_000_000) {
            let p = crate::planner::gen::problem(seed);
            let o = PlanOptions { grid_steps: 40, ..PlanOptions::default() };
            let h = plan_app(&p, 0, Policy::Harpagon, &o).unwrap();
            let opt = plan_app(&p, 0, Policy::Optimal, &o).unwrap();
            prop_assert!(h.cost >= opt.cost, "harpagon {} < optimal {}", h.cost, opt.cost);
            check_feasible(&p, &h);
            check_feasible(&p, &opt);
            if let Ok(n) = plan_app(&p, 0, Policy::Nexus, &o) {
                check_feasible(&p, &n);
            }
        }
    }
}
