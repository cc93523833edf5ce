//! The splitting level: give every module of an app a latency budget so that the budgets along
//! every source→sink path sum to at most the SLO, at the lowest total cost `Σ C_m(L_m)`.
//!
//! # Exact on the grid, by dynamic programming over finish times
//!
//! Budgets are multiples of a grid step (`SLO / steps`). Think of each module as finishing at a
//! grid time `f_v ∈ [0, G]`; it may start when its last parent finishes, so its budget is
//! `f_v − max_{u→v} f_u` (sources start at 0) and the path constraint is `f_v ≤ G` for every sink.
//! Because `C_m` is non-increasing, giving a module everything between its start and its finish
//! is never worse, so optimising over finish times is exactly optimising over budgets.
//!
//! **Chains and trees** (every module has at most one parent): bottom-up,
//! `H_v(f)` = cheapest cost of `v`'s descendants when `v` finishes at `f`
//! `= Σ_{children c} min_{f' > f} C_c(f' − f) + H_c(f')`, and the app costs
//! `Σ_{sources s} min_f C_s(f) + H_s(f)`. `O(N·G²)` time, `O(N·G)` memory.
//!
//! **Re-joining DAGs** (a module with two or more parents): a join `j` starts at the *latest* of
//! its parents' finishes, which couples branches that a tree DP would treat as independent (and a
//! naive tree DP would count `j` once per branch). We condition on each join's start time `s_j`:
//! with it fixed, each parent of `j` just has a deadline `f_u ≤ s_j`, `j` becomes a root starting
//! at `s_j`, and what remains is a forest, solved exactly as above. Enumerating `s_j` over the
//! grid for every join is exact (the optimum has some start time for each join) and costs
//! `O(G^J · N · G²)` for `J` joins — fine for the one or two re-joins real pipelines have at
//! `G = 200`; start times are further limited to those every path can reach. Chains and trees
//! (`J = 0`) pay nothing for this.

use super::dag::Dag;
use super::Cost;

/// The cheapest split: total cost and each node's budget in grid steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub cost: Cost,
    pub budgets: Vec<usize>,
}

/// The fewest grid steps at which each node's cost is finite (`None`: never).
pub fn min_steps(costs: &[Vec<Cost>]) -> Vec<Option<usize>> {
    costs.iter().map(|c| c.iter().position(|&x| x != Cost::MAX)).collect()
}

/// The cheapest split of `g` grid steps over `dag`, where `costs[v][k]` is node `v`'s cost at
/// `k` steps (`Cost::MAX`: infeasible). `None` when no split is feasible.
pub fn split(dag: &Dag, costs: &[Vec<Cost>], g: usize) -> Option<Split> {
    let joins = dag.joins();
    let mins = min_steps(costs);
    if mins.iter().any(Option::is_none) {
        return None;
    }
    let mins: Vec<usize> = mins.into_iter().map(|m| m.unwrap_or(0)).collect();
    // Earliest finish (longest path of minimum budgets into v) and the minimum time from v's
    // start to the end of its longest path to a sink: a join can only start in between.
    let mut earliest = vec![0usize; dag.len()];
    for &v in &dag.topo {
        let start = dag.parents[v].iter().map(|&(u, _)| earliest[u]).max().unwrap_or(0);
        earliest[v] = start + mins[v];
    }
    let mut tail = vec![0usize; dag.len()];
    for &v in dag.topo.iter().rev() {
        tail[v] = mins[v] + dag.children[v].iter().map(|&c| tail[c]).max().unwrap_or(0);
    }
    let ranges: Vec<(usize, usize)> = joins
        .iter()
        .map(|&j| {
            let lo = dag.parents[j].iter().map(|&(u, _)| earliest[u]).max().unwrap_or(0);
            (lo, g.saturating_sub(tail[j]))
        })
        .collect();
    if ranges.iter().any(|&(lo, hi)| lo > hi) {
        return None;
    }
    let mut starts: Vec<usize> = ranges.iter().map(|&(lo, _)| lo).collect();
    let mut best: Option<Split> = None;
    loop {
        let mut start_of = vec![None; dag.len()];
        for (i, &j) in joins.iter().enumerate() {
            start_of[j] = Some(starts[i]);
        }
        if let Some(s) = forest(dag, costs, g, &start_of) {
            if best.as_ref().is_none_or(|b| s.cost < b.cost) {
                best = Some(s);
            }
        }
        // Next combination of join start times (odometer).
        let mut i = 0;
        loop {
            if i == joins.len() {
                return best;
            }
            if starts[i] < ranges[i].1 {
                starts[i] += 1;
                break;
            }
            starts[i] = ranges[i].0;
            i += 1;
        }
    }
}

/// The tree DP with join nodes' start times fixed (`start_of[j]`): edges into joins are cut, the
/// parents of a join get the deadline `s_j`, the joins become roots starting at `s_j`.
fn forest(dag: &Dag, costs: &[Vec<Cost>], g: usize, start_of: &[Option<usize>]) -> Option<Split> {
    let n = dag.len();
    let is_join = |v: usize| start_of[v].is_some();
    // h[v][f]: cheapest cost of v's (non-join) descendants when v finishes at f.
    let mut h = vec![Vec::new(); n];
    // pick[c][f]: c's best finish time when its parent finishes at f.
    let mut pick = vec![Vec::new(); n];
    for &v in dag.topo.iter().rev() {
        let deadline = dag.children[v]
            .iter()
            .filter_map(|&c| start_of[c])
            .min()
            .unwrap_or(g)
            .min(g);
        let mut hv = vec![Cost::MAX; g + 1];
        for (f, slot) in hv.iter_mut().enumerate().take(deadline + 1) {
            let mut total: Cost = 0;
            for &c in dag.children[v].iter().filter(|&&c| !is_join(c)) {
                let (best, _) = best_finish(&costs[c], &h[c], f, g);
                total = total.saturating_add(best);
            }
            *slot = total;
        }
        for &c in dag.children[v].iter().filter(|&&c| !is_join(c)) {
            pick[c] = (0..=g).map(|f| best_finish(&costs[c], &h[c], f, g).1).collect();
        }
        h[v] = hv;
    }
    // Roots: sources start at 0, joins at their fixed start.
    let mut finish = vec![usize::MAX; n];
    let mut start = vec![0usize; n];
    let mut cost: Cost = 0;
    for v in 0..n {
        let s = match start_of[v] {
            Some(s) => s,
            None if dag.parents[v].is_empty() => 0,
            None => continue,
        };
        let (c, f) = best_finish(&costs[v], &h[v], s, g);
        if c == Cost::MAX {
            return None;
        }
        cost = cost.saturating_add(c);
        start[v] = s;
        finish[v] = f;
    }
    // Walk down the cut forest to recover every finish time.
    for &v in &dag.topo {
        if finish[v] == usize::MAX {
            let &(u, _) = dag.parents[v].first().expect("a non-root has a parent");
            start[v] = finish[u];
            finish[v] = pick[v][finish[u]];
        }
    }
    let budgets = (0..n).map(|v| finish[v] - start[v]).collect();
    Some(Split { cost, budgets })
}

/// Hands the slack a split leaves back to the modules: each module, in topological order, grows
/// its budget until some path through it sums to exactly `g`. Costs are unchanged (the chosen
/// configuration stays feasible with more budget); the runtime gets margin instead of idle SLO.
pub fn spread_slack(dag: &Dag, budgets: &[usize], g: usize) -> Vec<usize> {
    let mut b = budgets.to_vec();
    for &v in &dag.topo {
        let mut finish = vec![0usize; dag.len()];
        for &u in &dag.topo {
            finish[u] = dag.parents[u].iter().map(|&(p, _)| finish[p]).max().unwrap_or(0) + b[u];
        }
        let mut after = vec![0usize; dag.len()]; // longest budget sum strictly after u
        for &u in dag.topo.iter().rev() {
            after[u] = dag.children[u].iter().map(|&c| b[c] + after[c]).max().unwrap_or(0);
        }
        b[v] += g.saturating_sub(finish[v] + after[v]);
    }
    b
}

/// `min_{f' > f} C(f' − f) + H(f')` and its argmin (`usize::MAX` with cost `MAX` when none).
fn best_finish(cost: &[Cost], h: &[Cost], f: usize, g: usize) -> (Cost, usize) {
    let mut best = (Cost::MAX, usize::MAX);
    for f2 in f + 1..=g {
        let c = cost[f2 - f];
        if c == Cost::MAX || h[f2] == Cost::MAX {
            continue;
        }
        let total = c.saturating_add(h[f2]);
        if total < best.0 {
            best = (total, f2);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step function: `cost` from `at` steps on, cheaper steps later.
    fn steps(g: usize, levels: &[(usize, Cost)]) -> Vec<Cost> {
        (0..=g)
            .map(|k| {
                levels
                    .iter()
                    .filter(|&&(at, _)| k >= at)
                    .map(|&(_, c)| c)
                    .min()
                    .unwrap_or(Cost::MAX)
            })
            .collect()
    }

    #[test]
    fn chain_takes_the_cheaper_trade() {
        // a → b, 10 steps. a: 5 at 2 steps, 1 at 6. b: 9 at 2 steps, 2 at 5.
        // Options: (6,4)→1+9=10, (2,8)→5+2=7, (5,5)→5+2=7 … best 7 with a=2..5, b=5..8.
        let d = Dag::new(2, &[(0, 1, 1.0)]).unwrap();
        let costs = vec![steps(10, &[(2, 5), (6, 1)]), steps(10, &[(2, 9), (5, 2)])];
        let s = split(&d, &costs, 10).unwrap();
        assert_eq!(s.cost, 7);
        assert!(s.budgets[0] + s.budgets[1] <= 10);
        // With 11 steps both cheap levels fit: 6 + 5.
        let costs = vec![steps(11, &[(2, 5), (6, 1)]), steps(11, &[(2, 9), (5, 2)])];
        assert_eq!(
            split(&d, &costs, 11).unwrap(),
            Split {
                cost: 3,
                budgets: vec![6, 5]
            }
        );
    }

    #[test]
    fn rejoin_counts_the_join_once_and_waits_for_the_slower_branch() {
        // 0 → {1, 2} → 3, 10 steps. Branch 1 needs 6 steps for its cheap level, branch 2 only 2.
        let d = Dag::new(4, &[(0, 1, 1.0), (0, 2, 1.0), (1, 3, 1.0), (2, 3, 1.0)]).unwrap();
        let costs = vec![
            steps(10, &[(1, 10), (2, 1)]),
            steps(10, &[(1, 50), (6, 1)]),
            steps(10, &[(2, 1)]),
            steps(10, &[(1, 10), (2, 1)]),
        ];
        let s = split(&d, &costs, 10).unwrap();
        assert_eq!(s.cost, 4);
        assert_eq!(s.budgets[0] + s.budgets[1] + s.budgets[3], 10);
        assert!(s.budgets[0] + s.budgets[2] + s.budgets[3] <= 10);
    }

    #[test]
    fn slack_goes_to_the_first_module_with_room() {
        // 0 → {1, 2}: budgets 2, 3, 5 of 10. Node 0 can grow by 3 (path 0→2 hits 10); then 1 by 2.
        let d = Dag::new(3, &[(0, 1, 1.0), (0, 2, 1.0)]).unwrap();
        assert_eq!(spread_slack(&d, &[2, 3, 5], 10), vec![5, 5, 5]);
    }

    #[test]
    fn infeasible_when_the_minimum_budgets_do_not_fit() {
        let d = Dag::new(2, &[(0, 1, 1.0)]).unwrap();
        let costs = vec![steps(5, &[(3, 1)]), steps(5, &[(3, 1)])];
        assert_eq!(split(&d, &costs, 5), None);
    }
}
