//! The GPU pool: every worker's predicted free time, ordered so that a grant
//! costs O(log n) however many GPUs there are.
//!
//! Workers that hold the same set of models form a *group*. Each group keeps
//! its workers in slots in the order they joined (their stable rank) with a
//! min-tree over their free times, which answers both questions the core
//! asks: "the lowest-rank worker free by `t`" (`consolidate`: load packs onto
//! the fewest GPUs so the rest stay idle and can be scaled in) and "the
//! earliest-free worker" (`earliest`: the authors' choice, which spreads load
//! over every GPU). A model is served by the groups whose set contains it;
//! usually that is one group, so a grant is one tree query.

use std::collections::{BTreeSet, HashMap};

use crate::GpuChoice;

use super::min_tree::{MinTree, EMPTY};
use super::{ModelId, Time, WorkerId};

#[derive(Debug, Clone)]
struct Group {
    models: Vec<ModelId>,
    slots: Vec<Option<WorkerId>>,
    tree: MinTree,
    live: usize,
}

impl Group {
    fn push(&mut self, w: WorkerId, free_at: Time) -> usize {
        if self.slots.len() == self.tree.capacity() {
            self.rebuild(self.tree.capacity() * 2, None);
        }
        let slot = self.slots.len();
        self.slots.push(Some(w));
        self.tree.set(slot, free_at);
        self.live += 1;
        slot
    }

    /// Re-lays the tree with `cap` leaves, dropping empty slots when `compact`
    /// gives the free times to look them up (order, hence rank, is kept).
    fn rebuild(&mut self, cap: usize, compact: Option<&mut HashMap<WorkerId, Gpu>>) {
        let old = std::mem::take(&mut self.tree);
        let mut tree = MinTree::with_capacity(cap);
        match compact {
            None => {
                for (i, &v) in old.leaves()[..self.slots.len()].iter().enumerate() {
                    tree.set(i, v);
                }
            }
            Some(gpus) => {
                self.slots.retain(Option::is_some);
                for (i, w) in self.slots.iter().enumerate() {
                    let g = gpus.get_mut(&w.expect("retained")).expect("pool is consistent");
                    g.slot = i;
                    tree.set(i, g.free_at);
                }
            }
        }
        self.tree = tree;
    }
}

#[derive(Debug, Clone)]
struct Gpu {
    group: usize,
    slot: usize,
    /// Join order: the stable rank `consolidate` prefers low.
    rank: u64,
    free_at: Time,
}

/// Workers and their predicted free times.
#[derive(Debug, Clone, Default)]
pub struct GpuPool {
    gpus: HashMap<WorkerId, Gpu>,
    groups: Vec<Group>,
    group_of_set: HashMap<Vec<ModelId>, usize>,
    /// Groups serving each model, indexed by model id.
    model_groups: Vec<Vec<usize>>,
    /// Every worker by free time: the next moment a GPU frees up.
    by_free: BTreeSet<(Time, WorkerId)>,
    next_rank: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    #[error("worker {0} is already registered; remove it first or use a new id")]
    Duplicate(WorkerId),
    #[error("worker {0} is not registered")]
    Unknown(WorkerId),
}

impl GpuPool {
    pub fn len(&self) -> usize {
        self.gpus.len()
    }

    pub fn is_empty(&self) -> bool {
        self.gpus.is_empty()
    }

    pub fn contains(&self, w: WorkerId) -> bool {
        self.gpus.contains_key(&w)
    }

    /// Adds a worker serving `models` (sorted, deduplicated), free at `free_at`.
    pub fn add(&mut self, w: WorkerId, mut models: Vec<ModelId>, free_at: Time) -> Result<(), PoolError> {
        if self.gpus.contains_key(&w) {
            return Err(PoolError::Duplicate(w));
        }
        models.sort_unstable();
        models.dedup();
        let gi = match self.group_of_set.get(&models) {
            Some(&gi) => gi,
            None => {
                let gi = self.groups.len();
                for &m in &models {
                    let m = m.0 as usize;
                    if self.model_groups.len() <= m {
                        self.model_groups.resize(m + 1, Vec::new());
                    }
                    self.model_groups[m].push(gi);
                }
                self.groups.push(Group {
                    models: models.clone(),
                    slots: Vec::new(),
                    tree: MinTree::with_capacity(1),
                    live: 0,
                });
                self.group_of_set.insert(models, gi);
                gi
            }
        };
        let slot = self.groups[gi].push(w, free_at);
        let rank = self.next_rank;
        self.next_rank += 1;
        self.gpus.insert(
            w,
            Gpu {
                group: gi,
                slot,
                rank,
                free_at,
            },
        );
        self.by_free.insert((free_at, w));
        Ok(())
    }

    pub fn remove(&mut self, w: WorkerId) -> Result<(), PoolError> {
        let g = self.gpus.remove(&w).ok_or(PoolError::Unknown(w))?;
        self.by_free.remove(&(g.free_at, w));
        let group = &mut self.groups[g.group];
        group.slots[g.slot] = None;
        group.tree.set(g.slot, EMPTY);
        group.live -= 1;
        // Keep trees proportional to the live workers under churn.
        if group.slots.len() > 64 && group.slots.len() > 2 * group.live {
            let cap = group.live.max(1);
            group.rebuild(cap, Some(&mut self.gpus));
        }
        Ok(())
    }

    pub fn free_at(&self, w: WorkerId) -> Option<Time> {
        self.gpus.get(&w).map(|g| g.free_at)
    }

    pub fn set_free_at(&mut self, w: WorkerId, t: Time) {
        let Some(g) = self.gpus.get_mut(&w) else { return };
        if g.free_at == t {
            return;
        }
        self.by_free.remove(&(g.free_at, w));
        self.by_free.insert((t, w));
        g.free_at = t;
        self.groups[g.group].tree.set(g.slot, t);
    }

    /// The models `w` serves.
    pub fn models_of(&self, w: WorkerId) -> Option<&[ModelId]> {
        self.gpus.get(&w).map(|g| self.groups[g.group].models.as_slice())
    }

    /// Whether any worker serves model `m`.
    pub fn serves(&self, m: ModelId) -> bool {
        self.model_groups
            .get(m.0 as usize)
            .is_some_and(|gs| gs.iter().any(|&gi| self.groups[gi].live > 0))
    }

    /// A worker serving `m` that is free by `by`, chosen by `choice`.
    pub fn pick(&self, m: ModelId, by: Time, choice: GpuChoice) -> Option<WorkerId> {
        let groups = self.model_groups.get(m.0 as usize)?;
        let mut best: Option<(Time, u64, WorkerId)> = None;
        for &gi in groups {
            let group = &self.groups[gi];
            let slot = match choice {
                GpuChoice::Consolidate => group.tree.leftmost_le(by),
                GpuChoice::Earliest => group.tree.argmin().filter(|_| group.tree.min() <= by),
            };
            let Some(slot) = slot else { continue };
            let w = group.slots[slot].expect("a finite slot holds a worker");
            let g = &self.gpus[&w];
            let key = match choice {
                GpuChoice::Consolidate => (0, g.rank, w),
                GpuChoice::Earliest => (g.free_at, g.rank, w),
            };
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
        }
        best.map(|(_, _, w)| w)
    }

    /// The earliest free time strictly after `t`, over all workers.
    pub fn next_free_after(&self, t: Time) -> Option<Time> {
        self.by_free
            .range((t.saturating_add(1), WorkerId(0))..)
            .next()
            .map(|&(f, _)| f)
    }

    /// Workers in join order (for status displays and tests).
    pub fn workers(&self) -> Vec<(WorkerId, Time)> {
        let mut v: Vec<_> = self.gpus.iter().map(|(&w, g)| (g.rank, w, g.free_at)).collect();
        v.sort_unstable();
        v.into_iter().map(|(_, w, f)| (w, f)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M0: ModelId = ModelId(0);
    const M1: ModelId = ModelId(1);

    fn pool(free: &[Time]) -> GpuPool {
        let mut p = GpuPool::default();
        for (i, &f) in free.iter().enumerate() {
            p.add(WorkerId(i as u64), vec![M0], f).unwrap();
        }
        p
    }

    #[test]
    fn consolidate_takes_lowest_rank_free_by_exec_at() {
        // Ranks 0..4 free at 50, 10, 30, 5.
        let p = pool(&[50, 10, 30, 5]);
        assert_eq!(p.pick(M0, 20, GpuChoice::Consolidate), Some(WorkerId(1)));
        assert_eq!(p.pick(M0, 60, GpuChoice::Consolidate), Some(WorkerId(0)));
        assert_eq!(p.pick(M0, 4, GpuChoice::Consolidate), None);
    }

    #[test]
    fn earliest_takes_earliest_free() {
        let p = pool(&[50, 10, 30, 5]);
        assert_eq!(p.pick(M0, 60, GpuChoice::Earliest), Some(WorkerId(3)));
        assert_eq!(p.pick(M0, 4, GpuChoice::Earliest), None);
    }

    #[test]
    fn models_restrict_the_choice() {
        let mut p = GpuPool::default();
        p.add(WorkerId(0), vec![M0], 0).unwrap();
        p.add(WorkerId(1), vec![M1, M0], 0).unwrap();
        p.add(WorkerId(2), vec![M1], 0).unwrap();
        assert_eq!(p.pick(M1, 10, GpuChoice::Consolidate), Some(WorkerId(1)));
        assert_eq!(p.pick(M0, 10, GpuChoice::Consolidate), Some(WorkerId(0)));
        p.set_free_at(WorkerId(1), 100);
        assert_eq!(p.pick(M1, 10, GpuChoice::Consolidate), Some(WorkerId(2)));
        assert_eq!(p.pick(ModelId(7), 10, GpuChoice::Consolidate), None);
    }

    #[test]
    fn removal_and_compaction_keep_rank_order() {
        let mut p = GpuPool::default();
        for i in 0..200 {
            p.add(WorkerId(i), vec![M0], 100).unwrap();
        }
        for i in 0..150 {
            p.remove(WorkerId(i)).unwrap();
        }
        assert_eq!(p.len(), 50);
        assert_eq!(p.pick(M0, 100, GpuChoice::Consolidate), Some(WorkerId(150)));
        p.set_free_at(WorkerId(170), 5);
        assert_eq!(p.pick(M0, 10, GpuChoice::Consolidate), Some(WorkerId(170)));
        assert_eq!(p.next_free_after(5), Some(100));
        assert_eq!(
            p.add(WorkerId(170), vec![M0], 0),
            Err(PoolError::Duplicate(WorkerId(170)))
        );
        assert_eq!(p.remove(WorkerId(3)), Err(PoolError::Unknown(WorkerId(3))));
    }
}
