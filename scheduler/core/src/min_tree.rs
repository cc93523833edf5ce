//! A min segment tree over numbered slots: O(log n) updates, the minimum in
//! O(1), and "the leftmost slot at or below x" in O(log n). The GPU pool
//! ranks workers with it; the scheduler keeps candidates' send times in one.

use super::Time;

/// The value of an empty slot.
pub const EMPTY: Time = Time::MAX;

/// A min segment tree over slots, with "leftmost slot ≤ x" queries.
#[derive(Debug, Clone, Default)]
pub struct MinTree {
    /// Number of leaves (a power of two).
    cap: usize,
    t: Vec<Time>,
}

impl MinTree {
    pub fn with_capacity(n: usize) -> Self {
        let cap = n.next_power_of_two().max(1);
        Self {
            cap,
            t: vec![EMPTY; 2 * cap],
        }
    }

    pub fn set(&mut self, i: usize, v: Time) {
        let mut k = i + self.cap;
        self.t[k] = v;
        while k > 1 {
            k /= 2;
            self.t[k] = self.t[2 * k].min(self.t[2 * k + 1]);
        }
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The leaf values, slot by slot.
    pub fn leaves(&self) -> &[Time] {
        &self.t[self.cap..]
    }

    pub fn get(&self, i: usize) -> Time {
        self.t[i + self.cap]
    }

    /// Grows to hold at least `n` slots (new ones empty).
    pub fn ensure(&mut self, n: usize) {
        if n <= self.cap {
            return;
        }
        let mut bigger = MinTree::with_capacity(n);
        for (i, &v) in self.leaves().iter().enumerate() {
            if v != EMPTY {
                bigger.set(i, v);
            }
        }
        *self = bigger;
    }

    pub fn min(&self) -> Time {
        self.t[1]
    }

    /// The leftmost slot whose value is ≤ x.
    pub fn leftmost_le(&self, x: Time) -> Option<usize> {
        if self.t[1] > x {
            return None;
        }
        let mut k = 1;
        while k < self.cap {
            k = if self.t[2 * k] <= x { 2 * k } else { 2 * k + 1 };
        }
        Some(k - self.cap)
    }

    /// The slot holding the minimum (leftmost on ties).
    pub fn argmin(&self) -> Option<usize> {
        self.leftmost_le(self.t[1].min(EMPTY - 1))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn queries() {
        let mut t = MinTree::with_capacity(3);
        assert_eq!(t.min(), EMPTY);
        assert_eq!(t.argmin(), None);
        t.set(0, 50);
        t.set(1, 10);
        t.set(2, 30);
        assert_eq!(t.min(), 10);
        assert_eq!(t.argmin(), Some(1));
        assert_eq!(t.leftmost_le(40), Some(1));
        assert_eq!(t.leftmost_le(60), Some(0));
        assert_eq!(t.leftmost_le(9), None);
        t.ensure(9);
        assert_eq!(t.capacity(), 16);
        assert_eq!((t.get(0), t.get(2), t.get(8)), (50, 30, EMPTY));
        t.set(8, 1);
        assert_eq!(t.argmin(), Some(8));
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// `set(slot % capacity, value)`.
        Set(usize, Time),
        Ensure(usize),
    }

    /// Values that collide often (ties decide "leftmost"), and the edges: an explicit
    /// [`EMPTY`], the largest real value and the smallest.
    fn value() -> impl Strategy<Value = Time> {
        prop_oneof![
            8 => -20 as Time..20,
            1 => Just(EMPTY),
            1 => Just(EMPTY - 1),
            1 => Just(Time::MIN),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..64usize, value()).prop_map(|(i, v)| Op::Set(i, v)),
            1 => (0..80usize).prop_map(Op::Ensure),
        ]
    }

    /// The naive model: the slots set so far (unset ones are [`EMPTY`]), scanned in full by
    /// every query over the slots `0..capacity`.
    fn at(model: &BTreeMap<usize, Time>, i: usize) -> Time {
        model.get(&i).copied().unwrap_or(EMPTY)
    }

    proptest! {
        #[test]
        fn answers_like_a_scan_of_every_slot(
            n in 0..20usize,
            steps in prop::collection::vec((op(), value()), 0..120),
        ) {
            let mut tree = MinTree::with_capacity(n);
            let mut model = BTreeMap::new();
            let mut needed = n;
            for (op, x) in steps {
                match op {
                    Op::Set(i, v) => {
                        let i = i % tree.capacity();
                        tree.set(i, v);
                        model.insert(i, v);
                    }
                    Op::Ensure(m) => {
                        tree.ensure(m);
                        needed = needed.max(m);
                    }
                }
                let cap = tree.capacity();
                prop_assert!(cap.is_power_of_two() && cap >= needed, "capacity {cap} for {needed} slots");
                let slots: Vec<Time> = (0..cap).map(|i| at(&model, i)).collect();
                prop_assert_eq!(tree.leaves(), &slots[..]);
                for (i, &v) in slots.iter().enumerate() {
                    prop_assert_eq!(tree.get(i), v);
                }
                let min = slots.iter().copied().min().unwrap_or(EMPTY);
                prop_assert_eq!(tree.min(), min);
                let argmin = (min != EMPTY).then(|| slots.iter().position(|&v| v == min)).flatten();
                prop_assert_eq!(tree.argmin(), argmin);
                // The random probe, and each value held with its neighbours (the boundaries).
                let probes = model.values().flat_map(|&v| [v.saturating_sub(1), v, v.saturating_add(1)]);
                for y in std::iter::once(x).chain(probes) {
                    let leftmost = slots.iter().position(|&v| v <= y);
                    prop_assert_eq!(tree.leftmost_le(y), leftmost, "leftmost_le({})", y);
                }
            }
        }
    }
}
