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
}
