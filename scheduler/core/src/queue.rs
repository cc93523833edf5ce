//! A model's waiting requests, ordered by (deadline, id).
//!
//! A model's deadlines almost always arrive in order (one SLO, arrival
//! order), but not always: requests may bring their own SLO, and requests
//! come back from a lost worker. So the queue is two sorted parts: a FIFO
//! run that takes every request not earlier than its last one (O(1)), and an
//! ordered set for the rest (O(log n)). The earliest request is the smaller
//! of the two heads, and walking the queue in order merges them.

use std::collections::{BTreeSet, VecDeque};

use super::{RequestId, Time};

/// A waiting request as the core sees it: no payload, just its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    pub deadline: Time,
    pub id: RequestId,
}

#[derive(Debug, Clone, Default)]
pub struct Queue {
    run: VecDeque<Entry>,
    rest: BTreeSet<Entry>,
}

impl Queue {
    pub fn len(&self) -> usize {
        self.run.len() + self.rest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.run.is_empty() && self.rest.is_empty()
    }

    pub fn push(&mut self, e: Entry) {
        match self.run.back() {
            Some(last) if e < *last => {
                self.rest.insert(e);
            }
            _ => self.run.push_back(e),
        }
    }

    pub fn first(&self) -> Option<Entry> {
        match (self.run.front(), self.rest.first()) {
            (Some(a), Some(b)) => Some(*a.min(b)),
            (a, b) => a.or(b).copied(),
        }
    }

    pub fn pop_first(&mut self) -> Option<Entry> {
        match (self.run.front(), self.rest.first()) {
            (Some(a), Some(b)) if b < a => self.rest.pop_first(),
            (Some(_), _) => self.run.pop_front(),
            (None, _) => self.rest.pop_first(),
        }
    }

    /// From the earliest deadline on.
    pub fn iter(&self) -> impl Iterator<Item = Entry> + '_ {
        let mut a = self.run.iter().copied().peekable();
        let mut b = self.rest.iter().copied().peekable();
        std::iter::from_fn(move || match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if y < x => b.next(),
            (Some(_), _) => a.next(),
            (None, _) => b.next(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn e(deadline: Time, id: u64) -> Entry {
        Entry {
            deadline,
            id: RequestId(id),
        }
    }

    #[test]
    fn out_of_order_requests_come_out_in_order() {
        let mut q = Queue::default();
        for (i, d) in [10, 20, 15, 30, 5, 30].into_iter().enumerate() {
            q.push(e(d, i as u64));
        }
        let order: Vec<Time> = q.iter().map(|x| x.deadline).collect();
        assert_eq!(order, vec![5, 10, 15, 20, 30, 30]);
        assert_eq!(q.first(), Some(e(5, 4)));
        let mut popped = vec![];
        while let Some(x) = q.pop_first() {
            popped.push(x.deadline);
        }
        assert_eq!(popped, order);
        assert!(q.is_empty());
    }

    proptest! {
        #[test]
        fn behaves_like_a_sorted_set(ops in prop::collection::vec((0i64..50, any::<bool>()), 0..200)) {
            let mut q = Queue::default();
            let mut model = BTreeSet::new();
            for (i, (d, pop)) in ops.into_iter().enumerate() {
                if pop {
                    prop_assert_eq!(q.pop_first(), model.pop_first());
                } else {
                    q.push(e(d, i as u64));
                    model.insert(e(d, i as u64));
                }
                prop_assert_eq!(q.len(), model.len());
                prop_assert_eq!(q.first(), model.first().copied());
                prop_assert!(q.iter().eq(model.iter().copied()));
            }
        }
    }
}
