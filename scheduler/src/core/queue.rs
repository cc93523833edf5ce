//! A model's waiting requests, ordered by (deadline, id).
//!
//! Deadlines of one model mostly arrive in order, but not always (per-request
//! SLOs, requests coming back from a lost worker), so the queue is an ordered
//! set rather than a FIFO: every operation the core needs (insert, the
//! earliest, pop the earliest, walk from the earliest) is O(log n) or better.

use std::collections::BTreeSet;

use super::{RequestId, Time};

/// A waiting request as the core sees it: no payload, just its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Entry {
    pub deadline: Time,
    pub id: RequestId,
}

#[derive(Debug, Clone, Default)]
pub struct Queue {
    set: BTreeSet<Entry>,
}

impl Queue {
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Returns false if the same (deadline, id) is already queued.
    pub fn push(&mut self, e: Entry) -> bool {
        self.set.insert(e)
    }

    pub fn first(&self) -> Option<Entry> {
        self.set.first().copied()
    }

    pub fn pop_first(&mut self) -> Option<Entry> {
        self.set.pop_first()
    }

    /// From the earliest deadline on.
    pub fn iter(&self) -> impl Iterator<Item = Entry> + '_ {
        self.set.iter().copied()
    }
}
