//! An application's module graph: nodes are the app's modules, edges carry a fan-out (one frame
//! → `k` crops). Built once per app and checked for cycles, so the planning levels can rely on a
//! topological order.

/// A validated directed acyclic graph over `n` nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct Dag {
    /// `parents[v]`: `(u, fanout)` for every edge `u → v`.
    pub parents: Vec<Vec<(usize, f64)>>,
    /// `children[u]`: `v` for every edge `u → v`.
    pub children: Vec<Vec<usize>>,
    /// Every node after all its parents.
    pub topo: Vec<usize>,
}

impl Dag {
    /// Builds the graph of `n` nodes and `edges` `(from, to, fanout)`. On a cycle, returns the
    /// nodes of one cycle in order (the first node repeated at the end is left to the caller).
    pub fn new(n: usize, edges: &[(usize, usize, f64)]) -> Result<Dag, Vec<usize>> {
        let mut parents = vec![Vec::new(); n];
        let mut children = vec![Vec::new(); n];
        for &(u, v, f) in edges {
            parents[v].push((u, f));
            children[u].push(v);
        }
        // Kahn's algorithm; what it cannot order lies on or behind a cycle.
        let mut indeg: Vec<usize> = parents.iter().map(Vec::len).collect();
        let mut ready: Vec<usize> = (0..n).rev().filter(|&v| indeg[v] == 0).collect();
        let mut topo = Vec::with_capacity(n);
        while let Some(u) = ready.pop() {
            topo.push(u);
            for &v in children[u].iter().rev() {
                indeg[v] -= 1;
                if indeg[v] == 0 {
                    ready.push(v);
                }
            }
        }
        if topo.len() < n {
            return Err(find_cycle(&parents, &indeg));
        }
        Ok(Dag {
            parents,
            children,
            topo,
        })
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.topo.len()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.topo.is_empty()
    }

    /// Nodes with no parent; each receives the app's input rate.
    pub fn sources(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len()).filter(|&v| self.parents[v].is_empty())
    }

    /// Nodes with two or more parents: where branches re-join.
    pub fn joins(&self) -> Vec<usize> {
        (0..self.len()).filter(|&v| self.parents[v].len() >= 2).collect()
    }

    /// Request rate of every node: sources get `input_rps`, every other node the sum over its
    /// incoming edges of the parent's rate times the edge's fan-out.
    pub fn rates(&self, input_rps: f64) -> Vec<f64> {
        let mut r = vec![0.0; self.len()];
        for &v in &self.topo {
            r[v] = if self.parents[v].is_empty() {
                input_rps
            } else {
                self.parents[v].iter().map(|&(u, f)| r[u] * f).sum()
            };
        }
        r
    }

    /// The largest sum of `w` along any source→sink path, and that path.
    pub fn longest_path(&self, w: &[f64]) -> (f64, Vec<usize>) {
        let mut best = vec![0.0; self.len()];
        let mut prev: Vec<Option<usize>> = vec![None; self.len()];
        for &v in &self.topo {
            let (p, base) = self.parents[v]
                .iter()
                .map(|&(u, _)| (Some(u), best[u]))
                .fold((None, 0.0), |a, b| if b.1 > a.1 { b } else { a });
            best[v] = base + w[v];
            prev[v] = p;
        }
        let Some(mut end) = (0..self.len()).max_by(|&a, &b| best[a].total_cmp(&best[b])) else {
            return (0.0, Vec::new());
        };
        let total = best[end];
        let mut path = vec![end];
        while let Some(p) = prev[end] {
            path.push(p);
            end = p;
        }
        path.reverse();
        (total, path)
    }
}

/// Walks parent links among the nodes Kahn's algorithm could not order (all have a remaining
/// parent) until a node repeats.
fn find_cycle(parents: &[Vec<(usize, f64)>], indeg: &[usize]) -> Vec<usize> {
    let Some(start) = (0..parents.len()).find(|&v| indeg[v] > 0) else {
        return Vec::new();
    };
    let mut seen = vec![usize::MAX; parents.len()];
    let mut walk = Vec::new();
    let mut v = start;
    while seen[v] == usize::MAX {
        seen[v] = walk.len();
        walk.push(v);
        v = parents[v]
            .iter()
            .map(|&(u, _)| u)
            .find(|&u| indeg[u] > 0)
            .expect("an unordered node has an unordered parent");
    }
    let mut cycle = walk.split_off(seen[v]);
    cycle.reverse(); // parent links walk backwards
    cycle
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_follow_fanouts_and_rejoin_sums() {
        // 0 → 1 (×3), 0 → 2 (×1), 1 → 3, 2 → 3 (×2)
        let d = Dag::new(4, &[(0, 1, 3.0), (0, 2, 1.0), (1, 3, 1.0), (2, 3, 2.0)]).unwrap();
        assert_eq!(d.rates(10.0), vec![10.0, 30.0, 10.0, 50.0]);
        assert_eq!(d.joins(), vec![3]);
        assert_eq!(d.longest_path(&[1.0, 5.0, 2.0, 1.0]), (7.0, vec![0, 1, 3]));
    }

    #[test]
    fn cycle_is_named_in_order() {
        let e = Dag::new(3, &[(0, 1, 1.0), (1, 2, 1.0), (2, 1, 1.0)]).unwrap_err();
        assert!(e == vec![1, 2] || e == vec![2, 1], "{e:?}");
    }
}
