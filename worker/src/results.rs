//! How a batch's answers travel back to the gateways: [`BatchResults`] messages no larger than the
//! NATS server's `max_payload`.
//!
//! A gateway ships a batch's inputs in as few messages as fit in `max_payload`, and the answers
//! come back the same way: usually one message per gateway and batch, several when the outputs
//! are large. NATS refuses a message larger than `max_payload` (async-nats does not even send
//! it), and a refused results message would leave every request in it unanswered, so the split
//! is decided before publishing, from an upper bound of each item's encoded size — exact
//! framing arithmetic, no trial encodings — against a [`budget`] that keeps a margin below
//! `max_payload` for message headers.
//!
//! A single reply too large to fit even alone is not this module's to fix: [`crate::answer`]
//! replaces it with an error reply that fits, using [`fits_alone`].

use baton_common::control::{BatchResults, FailedItem};
use baton_common::ids::{BatchUuid, WorkerName};
use baton_common::wire::encode;

/// At most this many bytes below `max_payload` are kept free for message headers (NATS counts
/// headers against `max_payload` too).
pub const HEADROOM: usize = 1024;

/// Framing of one [`ResultItem`] around its reply bytes, at most: a 2-entry map (1 byte), the
/// key `request` (8) and a `u64` (up to 9), the key `reply` (6) and a `bin32` header (5).
const RESULT_ITEM_FRAMING: usize = 1 + 8 + 9 + 6 + 5;

/// How much an array header may grow from an empty array (`fixarray`, 1 byte) to an `array32`
/// (5 bytes); a [`BatchResults`] has two.
const ARRAY_HEADERS_GROWTH: usize = 2 * 4;

/// The most bytes one [`BatchResults`] message may take on a server whose `max_payload` is
/// `max_payload`: all of it but [`HEADROOM`], or an eighth of it on a server with a tiny one.
pub fn budget(max_payload: usize) -> usize {
    max_payload - HEADROOM.min(max_payload / 8)
}

/// The encoded size of a [`BatchResults`] of batch `batch_id` from `worker_id`, without its
/// items, at most.
pub fn envelope_size(batch_id: BatchUuid, worker_id: &WorkerName) -> usize {
    let empty = BatchResults {
        batch_id,
        worker_id: worker_id.clone(),
        replies: Vec::new(),
        failed: Vec::new(),
    };
    encode(&empty).len() + ARRAY_HEADERS_GROWTH
}

/// The encoded size of a [`ResultItem`] carrying `reply_len` bytes of reply, at most.
pub fn result_item_size(reply_len: usize) -> usize {
    reply_len + RESULT_ITEM_FRAMING
}

fn failed_item_size(item: &FailedItem) -> usize {
    encode(item).len()
}

/// Whether a message of `envelope` bytes holding one item of `item_size` bytes fits in `budget`.
pub fn fits_alone(envelope: usize, item_size: usize, budget: usize) -> bool {
    envelope + item_size <= budget
}

/// Splits one gateway's answers into messages of at most `budget` encoded bytes each (see
/// [`budget`]), filling each in turn: the replies in order, then the failed items in order.
/// No message is empty, so no answers, no messages. An item too large for any message still
/// goes out, alone in one (the caller sees to it that none is: see [`fits_alone`]).
pub fn split(results: BatchResults, budget: usize) -> Vec<BatchResults> {
    let BatchResults {
        batch_id,
        worker_id,
        replies,
        failed,
    } = results;
    let envelope = envelope_size(batch_id, &worker_id);
    let empty = || BatchResults {
        batch_id,
        worker_id: worker_id.clone(),
        replies: Vec::new(),
        failed: Vec::new(),
    };
    let mut out = Vec::new();
    let mut current = empty();
    let mut size = envelope;
    let mut make_room = |current: &mut BatchResults, size: &mut usize, item: usize| {
        let is_empty = current.replies.is_empty() && current.failed.is_empty();
        if !is_empty && *size + item > budget {
            out.push(std::mem::replace(current, empty()));
            *size = envelope;
        }
        *size += item;
    };
    for reply in replies {
        make_room(&mut current, &mut size, result_item_size(reply.reply.len()));
        current.replies.push(reply);
    }
    for item in failed {
        make_room(&mut current, &mut size, failed_item_size(&item));
        current.failed.push(item);
    }
    if !current.replies.is_empty() || !current.failed.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use baton_common::control::ResultItem;
    use baton_common::wire::RejectReason;

    use super::*;

    fn results(replies: &[usize], failed: usize) -> BatchResults {
        BatchResults {
            batch_id: BatchUuid::from_u128(5),
            worker_id: "w1".into(),
            replies: replies
                .iter()
                .enumerate()
                .map(|(i, &len)| ResultItem {
                    // Large request numbers: the framing bound must hold for the widest u64.
                    request: u64::MAX - i as u64,
                    reply: vec![0xab; len],
                })
                .collect(),
            failed: (0..failed)
                .map(|i| FailedItem {
                    request: 1000 + i as u64,
                    reason: RejectReason::WorkerLost,
                    message: "inputs never came".into(),
                })
                .collect(),
        }
    }

    fn requests(msgs: &[BatchResults]) -> Vec<u64> {
        msgs.iter()
            .flat_map(|m| {
                m.replies
                    .iter()
                    .map(|r| r.request)
                    .chain(m.failed.iter().map(|f| f.request))
            })
            .collect()
    }

    #[test]
    fn the_bounds_hold_for_every_size_of_bin_header() {
        // bin8, bin16 and bin32 headers, and the largest u64.
        for len in [0, 1, 255, 256, 65_535, 65_536, 70_000] {
            let one = results(&[len], 0);
            let env = envelope_size(one.batch_id, &one.worker_id);
            assert!(
                encode(&one).len() <= env + result_item_size(len),
                "reply of {len} bytes"
            );
        }
        let f = results(&[], 1);
        let env = envelope_size(f.batch_id, &f.worker_id);
        assert!(encode(&f).len() <= env + failed_item_size(&f.failed[0]));
    }

    #[test]
    fn answers_that_fit_go_in_one_message() {
        let r = results(&[100, 100, 100], 2);
        let msgs = split(r.clone(), budget(1 << 20));
        assert_eq!(msgs, [r]);
    }

    #[test]
    fn larger_answers_are_split_in_order_each_message_within_the_budget() {
        let r = results(&[300, 300, 300, 300, 300], 3);
        let envelope = envelope_size(r.batch_id, &r.worker_id);
        // Room for exactly two replies per message.
        let budget = envelope + 2 * result_item_size(300) + 10;
        let msgs = split(r.clone(), budget);
        let shape: Vec<(usize, usize)> = msgs.iter().map(|m| (m.replies.len(), m.failed.len())).collect();
        // The fifth reply leaves room for the three failed items (under 60 bytes each) after it.
        assert!(3 * failed_item_size(&r.failed[0]) <= result_item_size(300) + 10);
        assert_eq!(shape, [(2, 0), (2, 0), (1, 3)]);
        assert_eq!(requests(&msgs), requests(&[r]));
        for m in &msgs {
            assert!(encode(m).len() <= budget, "{} > {budget}", encode(m).len());
            assert_eq!((m.batch_id, m.worker_id.as_str()), (BatchUuid::from_u128(5), "w1"));
        }
    }

    #[test]
    fn an_item_too_large_for_any_message_goes_alone_and_nothing_goes_empty() {
        let r = results(&[10, 5000, 10], 0);
        let msgs = split(r, 1000);
        let sizes: Vec<usize> = msgs.iter().map(|m| m.replies.len()).collect();
        assert_eq!(sizes, [1, 1, 1]);
        assert!(split(results(&[], 0), 1000).is_empty());
        let env = envelope_size(BatchUuid::from_u128(5), &"w1".into());
        assert!(fits_alone(env, result_item_size(10), 1000));
        assert!(!fits_alone(env, result_item_size(5000), 1000));
    }

    #[test]
    fn the_budget_keeps_headroom_for_headers() {
        assert_eq!(budget(1 << 20), (1 << 20) - 1024);
        assert_eq!(budget(4096), 4096 - 512);
        assert_eq!(budget(0), 0);
    }
}
