//! The brute-force oracle (`--policy optimal`): the judge of the other two levels, on the same
//! budget grid and the same latency model, sharing no search logic with them.
//!
//! **Configurations.** With dummy padding a tuple `(h, b, n)` is feasible iff `n` workers at full
//! load meet the budget, and that only gets easier as `n` grows. Two tuples on the same hardware
//! can therefore always be merged into one with the sum of their workers and the better batch
//! (both batches stay feasible with more workers), so an optimal configuration has at most one
//! tuple per hardware type, and for a given `n_h` the best batch is the feasible one with the
//! highest throughput (`cap_h(n)`, non-decreasing in `n`; at most [`config::MAX_WORKERS`]). The oracle enumerates every vector
//! `(n_1, …, n_H)` by depth-first search — pruned only by cost against the best found so far,
//! seeded with Harpagon's answer — and takes the cheapest that covers the rate.
//!
//! **Splits.** A non-increasing step function is only worth evaluating at its steps: a budget
//! between two steps costs the same as the step below and only tightens the paths. The oracle
//! enumerates every combination of step budgets over the modules in topological order, checks
//! every source→sink path (as finish times, `f_v = L_v + max_{u→v} f_u ≤ G`), and keeps the
//! cheapest, pruning branches that cannot fit or cannot beat the best so far. Exponential in the
//! number of modules; for small instances and for checking the others.

use super::config::{self, Config, RawTuple};
use super::dag::Dag;
use super::latency::HwModel;
use super::split::Split;
use super::Cost;

/// The exactly cheapest configuration for `rate` within `budget_ms`; `upper` (e.g. Harpagon's
/// configuration) bounds the search and is returned when nothing is cheaper.
pub fn config(hws: &[HwModel], rate: f64, budget_ms: f64, dummies: bool, upper: Option<Config>) -> Option<Config> {
    // cap[h][n] = (best batch, capacity) of n workers of type h, grown lazily.
    let mut caps: Vec<Vec<Option<(u32, f64)>>> = vec![vec![None]; hws.len()];
    let mut best_cost = upper.as_ref().map_or(Cost::MAX, |c| c.cost);
    let mut best_raw: Option<Vec<RawTuple>> = None;
    let mut chosen = Vec::new();
    search(
        hws,
        rate,
        budget_ms,
        0,
        0,
        &mut caps,
        &mut chosen,
        &mut best_cost,
        &mut best_raw,
    );
    match best_raw {
        Some(raw) => config::finish(hws, &raw, rate, budget_ms, dummies),
        None => upper,
    }
}

#[allow(clippy::too_many_arguments)]
fn search(
    hws: &[HwModel],
    left: f64,
    budget_ms: f64,
    h: usize,
    cost: Cost,
    caps: &mut Vec<Vec<Option<(u32, f64)>>>,
    chosen: &mut Vec<RawTuple>,
    best_cost: &mut Cost,
    best_raw: &mut Option<Vec<RawTuple>>,
) {
    if left <= 1e-9 {
        if cost < *best_cost {
            *best_cost = cost;
            *best_raw = Some(chosen.clone());
        }
        return;
    }
    if h == hws.len() {
        return;
    }
    let mut n: u32 = 0;
    loop {
        let c = cost + Cost::from(n) * hws[h].price;
        if c >= *best_cost {
            break;
        }
        let cap = if n == 0 {
            Some((0, 0.0))
        } else {
            cap_of(&hws[h], n, budget_ms, &mut caps[h])
        };
        match cap {
            Some((b, cap)) => {
                if n > 0 {
                    chosen.push((h, b, n));
                }
                search(hws, left - cap, budget_ms, h + 1, c, caps, chosen, best_cost, best_raw);
                if n > 0 {
                    chosen.pop();
                }
                if cap + 1e-9 >= left {
                    break; // more workers of this type only cost more
                }
            }
            // Not even batch 1 fits this budget on this hardware: skip it.
            // Not even batch 1 ever fits this budget on this hardware.
            None if hws[h].latency_ms(1) > budget_ms => break,
            // Too few workers for the wait term; more may fit.
            None => {}
        }
        if n >= config::MAX_WORKERS {
            break;
        }
        n += 1;
    }
}

fn cap_of(m: &HwModel, n: u32, budget_ms: f64, memo: &mut Vec<Option<(u32, f64)>>) -> Option<(u32, f64)> {
    while memo.len() <= n as usize {
        let k = memo.len() as u32;
        memo.push(m.best_padded(k, budget_ms));
    }
    memo[n as usize]
}

/// The cheapest split by exhaustive search over every module's cost steps; `None` if none fits.
pub fn split(dag: &Dag, costs: &[Vec<Cost>], g: usize) -> Option<Split> {
    let n = dag.len();
    // Each node's step budgets: where its cost strictly drops, cheapest last.
    let options: Vec<Vec<usize>> = costs
        .iter()
        .map(|c| {
            let mut v = Vec::new();
            let mut last = Cost::MAX;
            for (k, &x) in c.iter().enumerate().take(g + 1) {
                if x < last {
                    v.push(k);
                    last = x;
                }
            }
            v
        })
        .collect();
    if options.iter().any(Vec::is_empty) {
        return None;
    }
    // Lower bounds for pruning: each node's cheapest cost, and its shortest feasible tail to a sink.
    let cheapest: Vec<Cost> = options
        .iter()
        .zip(costs)
        .map(|(o, c)| c[*o.last().unwrap_or(&0)])
        .collect();
    let mut rest = vec![0 as Cost; n + 1];
    for i in (0..n).rev() {
        rest[i] = rest[i + 1] + cheapest[dag.topo[i]];
    }
    let mut tail = vec![0usize; n];
    for &v in dag.topo.iter().rev() {
        tail[v] = options[v][0] + dag.children[v].iter().map(|&c| tail[c]).max().unwrap_or(0);
    }
    let mut st = State {
        dag,
        costs,
        options: &options,
        rest: &rest,
        tail: &tail,
        g,
        finish: vec![0; n],
        budgets: vec![0; n],
        best: None,
    };
    st.go(0, 0);
    st.best
}

struct State<'a> {
    dag: &'a Dag,
    costs: &'a [Vec<Cost>],
    options: &'a [Vec<usize>],
    rest: &'a [Cost],
    tail: &'a [usize],
    g: usize,
    finish: Vec<usize>,
    budgets: Vec<usize>,
    best: Option<Split>,
}

impl State<'_> {
    fn go(&mut self, i: usize, cost: Cost) {
        let best = self.best.as_ref().map_or(Cost::MAX, |b| b.cost);
        if cost.saturating_add(self.rest[i]) >= best {
            return;
        }
        if i == self.dag.len() {
            self.best = Some(Split {
                cost,
                budgets: self.budgets.clone(),
            });
            return;
        }
        let v = self.dag.topo[i];
        let start = self.dag.parents[v]
            .iter()
            .map(|&(u, _)| self.finish[u])
            .max()
            .unwrap_or(0);
        for oi in 0..self.options[v].len() {
            let k = self.options[v][oi];
            // The rest of v's longest path must still fit after v.
            if start + k + (self.tail[v] - self.options[v][0]) > self.g {
                break;
            }
            self.finish[v] = start + k;
            self.budgets[v] = k;
            self.go(i + 1, cost + self.costs[v][k]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::planner::latency::Overheads;
    use crate::planner::PlanOptions;
    use baton_common::profile::Profile;

    #[test]
    fn identical_hardware_goes_all_on_the_cheapest() {
        // Three hardware types, each worker 100 req/s at batch 1 (d = 10 ms), at 1, 2 and 3 $/h:
        // 250 req/s need 3 workers, all of the $1 type.
        let opts = PlanOptions {
            overheads: Overheads::NONE,
            max_util: 1.0,
            burst_quantile: None,
            ..PlanOptions::default()
        };
        let p = Profile::from_spec("sleep#0,10000,0,0", 1).unwrap();
        let hws: Vec<HwModel> = (0..3)
            .map(|i| HwModel::new(i, (i as Cost + 1) * 1_000_000, &p, &opts))
            .collect();
        let c = config(&hws, 250.0, 20.0, true, None).unwrap();
        assert_eq!(c.cost, 3_000_000);
        assert_eq!(c.tuples.len(), 1);
        assert_eq!(c.tuples[0].hw, 0);
    }

    #[test]
    fn brute_force_split_matches_the_dp_on_a_rejoin() {
        let d = Dag::new(4, &[(0, 1, 1.0), (0, 2, 1.0), (1, 3, 1.0), (2, 3, 1.0)]).unwrap();
        let lv = |g: usize, l: &[(usize, Cost)]| -> Vec<Cost> {
            (0..=g)
                .map(|k| {
                    l.iter()
                        .filter(|&&(a, _)| k >= a)
                        .map(|&(_, c)| c)
                        .min()
                        .unwrap_or(Cost::MAX)
                })
                .collect()
        };
        let costs = vec![
            lv(12, &[(1, 10), (3, 4)]),
            lv(12, &[(2, 9), (6, 1)]),
            lv(12, &[(1, 7), (4, 2), (8, 1)]),
            lv(12, &[(2, 6), (4, 1)]),
        ];
        let o = split(&d, &costs, 12).unwrap();
        let dp = crate::planner::split::split(&d, &costs, 12).unwrap();
        assert_eq!(o.cost, dp.cost);
    }
}
