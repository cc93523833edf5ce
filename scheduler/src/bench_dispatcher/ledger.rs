//! One emulated gateway's accounting: every request it sent ends shipped or rejected, once.
//!
//! A gateway numbers its requests `0, 1, 2, …` and the dispatcher's orders name them by those
//! numbers, so a bit per request says whether it has been answered. Counting answers alone
//! would let a duplicate hide a loss (one request shipped twice, another never); the bits
//! catch both, and an order for a number never sent.

use std::collections::BTreeMap;

use baton_common::wire::RejectReason;
use serde::Serialize;

/// What became of a gateway's requests so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub sent: u64,
    pub shipped: u64,
    pub rejected: u64,
    /// Ship or reject orders for a request already answered (not counted again).
    pub duplicates: u64,
    /// Orders for a request number this gateway never sent.
    pub unknown: u64,
}

impl Counts {
    /// Requests answered (shipped or rejected), each once.
    pub fn answered(&self) -> u64 {
        self.shipped + self.rejected
    }

    /// Requests sent and neither shipped nor rejected.
    pub fn unaccounted(&self) -> u64 {
        self.sent.saturating_sub(self.answered())
    }

    /// Adds another gateway's counts.
    pub fn add(&mut self, o: &Counts) {
        self.sent += o.sent;
        self.shipped += o.shipped;
        self.rejected += o.rejected;
        self.duplicates += o.duplicates;
        self.unknown += o.unknown;
    }
}

/// A gateway's ledger of the requests it sent and the orders it got for them.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    counts: Counts,
    /// Bit `n` is set once request `n` has been answered.
    answered: Vec<u64>,
    rejected_by_reason: BTreeMap<&'static str, u64>,
}

impl Ledger {
    /// Requests `0..n` have been sent (call it before sending them, so that no order can
    /// arrive for a request the ledger does not know yet).
    pub fn sent_up_to(&mut self, n: u64) {
        self.counts.sent = self.counts.sent.max(n);
        let words = n.div_ceil(64) as usize;
        if self.answered.len() < words {
            self.answered.resize(words, 0);
        }
    }

    /// An order to ship `request`.
    pub fn ship(&mut self, request: u64) {
        if self.first_answer(request) {
            self.counts.shipped += 1;
        }
    }

    /// An order to reject `request` for `reason`.
    pub fn reject(&mut self, request: u64, reason: RejectReason) {
        if self.first_answer(request) {
            self.counts.rejected += 1;
            *self.rejected_by_reason.entry(reason.as_str()).or_default() += 1;
        }
    }

    fn first_answer(&mut self, request: u64) -> bool {
        if request >= self.counts.sent {
            self.counts.unknown += 1;
            return false;
        }
        let (word, bit) = ((request / 64) as usize, 1u64 << (request % 64));
        if self.answered[word] & bit != 0 {
            self.counts.duplicates += 1;
            return false;
        }
        self.answered[word] |= bit;
        true
    }

    pub fn counts(&self) -> Counts {
        self.counts.clone()
    }

    pub fn rejected_by_reason(&self) -> &BTreeMap<&'static str, u64> {
        &self.rejected_by_reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_is_answered_once() {
        let mut l = Ledger::default();
        l.sent_up_to(130);
        for r in 0..100 {
            l.ship(r);
        }
        for r in 100..128 {
            l.reject(r, RejectReason::DeadlineUnattainable);
        }
        l.reject(128, RejectReason::Overloaded);
        let c = l.counts();
        assert_eq!(
            c,
            Counts {
                sent: 130,
                shipped: 100,
                rejected: 29,
                duplicates: 0,
                unknown: 0
            }
        );
        assert_eq!(c.answered(), 129);
        assert_eq!(c.unaccounted(), 1); // request 129
        let reasons: Vec<_> = l.rejected_by_reason().iter().map(|(r, n)| (*r, *n)).collect();
        assert_eq!(reasons, [("deadline_unattainable", 28), ("overloaded", 1)]);
    }

    #[test]
    fn a_duplicate_cannot_hide_a_loss() {
        let mut l = Ledger::default();
        l.sent_up_to(3);
        l.ship(0);
        l.ship(1);
        l.ship(1); // request 2 never answered, request 1 twice
        l.reject(0, RejectReason::WorkerLost);
        let c = l.counts();
        assert_eq!((c.shipped, c.rejected, c.duplicates, c.unaccounted()), (2, 0, 2, 1));
        assert!(l.rejected_by_reason().is_empty());
    }

    #[test]
    fn orders_for_requests_never_sent_are_counted_apart() {
        let mut l = Ledger::default();
        l.ship(0); // nothing sent yet
        l.sent_up_to(64);
        l.ship(63);
        l.ship(64);
        l.sent_up_to(10); // never shrinks
        let c = l.counts();
        assert_eq!((c.sent, c.shipped, c.unknown, c.unaccounted()), (64, 1, 2, 63));
        let mut total = Counts::default();
        total.add(&c);
        total.add(&c);
        assert_eq!((total.sent, total.shipped, total.unknown), (128, 2, 4));
    }
}
