//! How a batch is answered: every item exactly one answer, sent to the gateway holding its
//! request, then one [`BatchDone`].
//!
//! Whatever happens to a batch — it ran, some of its requests had bad inputs, the backend failed,
//! its inputs never came, the worker was draining or full — ends here, in a pure function that
//! turns the outcome into one [`ItemAnswer`] per plan item and the report for the dispatcher.
//! Keeping that in one place is what makes "every request gets exactly one answer" checkable.
//!
//! An item's answer is the client's [`InferReply`], built here as before, when the worker has
//! the item's inputs: they carry the client's request id and the time the request had already
//! spent in Baton. When it has not — the inputs never came, or the worker declined the plan
//! without looking at them — the answer is only a reason and a message, a [`FailedItem`], from
//! which the gateway builds the reply. Answers travel per gateway as [`BatchResults`], split to
//! fit the server's `max_payload` ([`crate::results`]).

use std::time::{Duration, Instant};

use baton_common::control::{BatchDone, BatchPlanMsg, BatchResults, FailedItem, ResultItem};
use baton_common::ids::{GatewayName, WorkerName};
use baton_common::subjects;
use baton_common::wire::{encode, InferReply, RejectReason, Status, Timings};
use tracing::warn;

use crate::assembly::ExpiredBatch;
use crate::executor::Executed;
use crate::results;

/// NATS' default `max_payload`, assumed while the connection has not said otherwise.
const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

/// What one plan item gets.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemAnswer {
    /// The client's reply (the worker had the item's inputs, so its client id).
    Reply(InferReply),
    /// No reply body: the gateway answers the request with this reason and message.
    Failed { reason: RejectReason, message: String },
}

/// What closes one batch: an answer per plan item, and the report for
/// `baton.sched.batch_done`.
#[derive(Debug)]
pub struct Answer {
    /// The batch's plan, which says whose request each item is.
    pub plan: BatchPlanMsg,
    /// `items[i]` answers item `i` of the plan.
    pub items: Vec<ItemAnswer>,
    pub done: BatchDone,
}

/// An [`Answer`] as NATS messages, in the order to publish them.
#[derive(Debug)]
pub struct Messages {
    /// For each gateway of the plan (in the order of its first part) its answers, in one message
    /// or, when they do not fit in one, several; publish each on
    /// [`subjects::gateway_results`] of its gateway.
    pub results: Vec<(GatewayName, BatchResults)>,
    /// Last, on [`subjects::BATCH_DONE`].
    pub done: BatchDone,
}

impl Answer {
    /// The messages that carry this answer on a server whose `max_payload` is `max_payload`.
    ///
    /// A reply too large to fit in a message even alone (huge outputs on a server with a small
    /// `max_payload`) could not be delivered, so it is replaced by an `error` reply that says
    /// so, and counted as failed in the `BatchDone`.
    pub fn into_messages(self, max_payload: usize) -> Messages {
        let Answer { plan, items, mut done } = self;
        debug_assert_eq!(items.len(), plan.len(), "one answer per plan item");
        let budget = results::budget(max_payload);
        let envelope = results::envelope_size(plan.batch_id, &done.worker_id);
        let mut per_gateway: Vec<(GatewayName, BatchResults)> = Vec::new();
        for ((gateway, request), answer) in plan.items().zip(items) {
            let at = match per_gateway.iter().position(|(g, _)| g == gateway) {
                Some(at) => at,
                None => {
                    per_gateway.push((
                        gateway.clone(),
                        BatchResults {
                            batch_id: plan.batch_id,
                            worker_id: done.worker_id.clone(),
                            replies: Vec::new(),
                            failed: Vec::new(),
                        },
                    ));
                    per_gateway.len() - 1
                }
            };
            let results = &mut per_gateway[at].1;
            match answer {
                ItemAnswer::Reply(reply) => {
                    let mut bytes = encode(&reply);
                    if !results::fits_alone(envelope, results::result_item_size(bytes.len()), budget) {
                        warn!(batch = %plan.batch_id, request = reply.id, bytes = bytes.len(), max_payload,
                            "reply too large for NATS: answered with an error instead");
                        if reply.status == Status::Ok {
                            done.failed += 1;
                        }
                        let mut error = InferReply::error(
                            &reply.id,
                            format!(
                                "worker `{}` could not send the reply to request `{}`: its {} bytes do not fit \
                                 in the NATS server's max_payload of {max_payload} bytes; raise max_payload \
                                 (docs/protocol.md) or ask for smaller outputs",
                                done.worker_id,
                                reply.id,
                                bytes.len()
                            ),
                            reply.timings,
                        );
                        error.late = reply.late;
                        bytes = encode(&error);
                    }
                    results.replies.push(ResultItem { request, reply: bytes });
                }
                ItemAnswer::Failed { reason, message } => results.failed.push(FailedItem {
                    request,
                    reason,
                    message,
                }),
            }
        }
        let results = per_gateway
            .into_iter()
            .flat_map(|(gateway, r)| results::split(r, budget).into_iter().map(move |m| (gateway.clone(), m)))
            .collect();
        Messages { results, done }
    }

    /// Publishes the results, each gateway its own, then the `BatchDone` (in that order, on one
    /// connection, so the dispatcher never hears of a batch before its answers are on the way).
    pub async fn publish(self, client: &async_nats::Client) {
        let max_payload = match client.max_payload() {
            0 => DEFAULT_MAX_PAYLOAD,
            n => n,
        };
        let Messages { results, done } = self.into_messages(max_payload);
        for (gateway, msg) in results {
            let answers = msg.replies.len() + msg.failed.len();
            if let Err(e) = client
                .publish(subjects::gateway_results(&gateway), encode(&msg).into())
                .await
            {
                warn!(%gateway, batch = %msg.batch_id, answers, error = %e, "could not publish results");
            }
        }
        if let Err(e) = client.publish(subjects::BATCH_DONE, encode(&done).into()).await {
            warn!(batch = %done.batch_id, error = %e, "could not publish BatchDone");
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A batch that ran: `ok` with outputs, `rejected`/`bad_request` for requests whose inputs the
/// model refused, `error` for all when the backend failed the whole batch.
pub fn executed(worker_id: &WorkerName, ex: Executed) -> Answer {
    let plan = ex.plan;
    let n = plan.len() as u32;
    let wait = ex.started.saturating_duration_since(ex.received);
    let exec_us = micros(ex.finished.saturating_duration_since(ex.started));
    // `budget_us` runs to the earliest deadline, which is item 0's (the plan is EDF-ordered).
    let overran = ex.finished.saturating_duration_since(ex.received) > Duration::from_micros(plan.budget_us);
    let mut failed = 0;
    let items = ex
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let id = item.id.as_str();
            let timings = Timings {
                queued_us: item.queued_us.saturating_add(micros(wait)),
                exec_us,
                batch_size: n,
            };
            let mut reply = match &ex.results {
                Ok(results) => match &results[i] {
                    Ok(outputs) => InferReply::ok(id, outputs.clone(), timings),
                    Err(e) => {
                        failed += 1;
                        let mut r = InferReply::rejected(
                            id,
                            RejectReason::BadRequest,
                            format!("model `{}` cannot take request `{id}`: {e}", plan.model),
                        );
                        r.timings = Timings {
                            batch_size: 0,
                            exec_us: 0,
                            ..timings
                        };
                        r
                    }
                },
                Err(e) => {
                    failed += 1;
                    InferReply::error(
                        id,
                        format!(
                            "worker `{worker_id}` failed to run model `{}` on batch {}: {e}",
                            plan.model, plan.batch_id
                        ),
                        timings,
                    )
                }
            };
            reply.late = plan.late || (i == 0 && overran);
            ItemAnswer::Reply(reply)
        })
        .collect();
    let done = BatchDone {
        batch_id: plan.batch_id,
        worker_id: worker_id.clone(),
        wait_us: micros(wait),
        exec_us,
        batch_size: n,
        failed,
    };
    Answer { plan, items, done }
}

/// A plan whose inputs did not all arrive by its budget plus grace. The batch does not run: the
/// requests whose inputs came get an `error` reply; those whose inputs never came (the worker
/// has not their client ids) a failed item with reason `worker_lost`. Both say why, naming the
/// missing requests as `gateway:number`.
pub fn expired(worker_id: &WorkerName, ex: ExpiredBatch, grace: Duration, now: Instant) -> Answer {
    let plan = ex.plan;
    let missing: Vec<String> = plan
        .items()
        .zip(&ex.items)
        .filter(|(_, meta)| meta.is_none())
        .map(|((gateway, request), _)| format!("{gateway}:{request}"))
        .collect();
    let message = format!(
        "worker `{worker_id}` never received the inputs of request(s) {} (gateway:number) of batch {} within \
         the batch's budget of {:.1} ms + {:.1} ms grace, so the batch was not run",
        missing.join(", "),
        plan.batch_id,
        plan.budget_us as f64 / 1000.0,
        grace.as_secs_f64() * 1000.0,
    );
    let waited = micros(now.saturating_duration_since(ex.received));
    let items = ex
        .items
        .into_iter()
        .map(|meta| match meta {
            Some(meta) => {
                let mut r = InferReply::error(
                    meta.id.as_str(),
                    message.clone(),
                    Timings {
                        queued_us: meta.queued_us.saturating_add(waited),
                        exec_us: 0,
                        batch_size: 0,
                    },
                );
                r.late = plan.late;
                ItemAnswer::Reply(r)
            }
            None => ItemAnswer::Failed {
                reason: RejectReason::WorkerLost,
                message: message.clone(),
            },
        })
        .collect();
    not_run(worker_id, plan, waited, items)
}

/// A plan the worker declines as a whole (draining, full, model not loaded): every item a
/// failed item with `reason` (the gateway answers `rejected`).
pub fn rejected(worker_id: &WorkerName, plan: BatchPlanMsg, reason: RejectReason, message: &str) -> Answer {
    let items = (0..plan.len())
        .map(|_| ItemAnswer::Failed {
            reason,
            message: message.to_string(),
        })
        .collect();
    not_run(worker_id, plan, 0, items)
}

fn not_run(worker_id: &WorkerName, plan: BatchPlanMsg, waited_us: u64, items: Vec<ItemAnswer>) -> Answer {
    let n = plan.len() as u32;
    let done = BatchDone {
        batch_id: plan.batch_id,
        worker_id: worker_id.clone(),
        wait_us: waited_us,
        exec_us: 0,
        batch_size: n,
        failed: n,
    };
    Answer { plan, items, done }
}

#[cfg(test)]
mod tests {
    use baton_common::control::PlanPart;
    use baton_common::ids::BatchUuid;
    use baton_common::wire::{decode, Tensor};

    use super::*;
    use crate::assembly::ItemMeta;
    use crate::backend::{BackendError, RequestError};

    /// A plan of `n` requests of gateway `g1`, numbered 10, 11, …
    fn plan(n: usize) -> BatchPlanMsg {
        BatchPlanMsg {
            batch_id: BatchUuid::from_u128(9),
            model: "m".into(),
            parts: vec![PlanPart {
                gateway: "g1".into(),
                requests: (0..n as u64).map(|i| 10 + i).collect(),
            }],
            budget_us: 50_000,
            late: false,
        }
    }

    /// Item `i` is the client's request `r<i>`, queued `100·i` µs when shipped.
    fn items(n: usize) -> Vec<ItemMeta> {
        (0..n)
            .map(|i| ItemMeta {
                id: format!("r{i}").into(),
                queued_us: 100 * i as u64,
            })
            .collect()
    }

    fn reply(a: &ItemAnswer) -> &InferReply {
        match a {
            ItemAnswer::Reply(r) => r,
            ItemAnswer::Failed { .. } => panic!("a reply expected, got {a:?}"),
        }
    }

    #[test]
    fn executed_batch_answers_each_item_with_its_own_outcome() {
        let t0 = Instant::now();
        let out = vec![Tensor::from_f32(vec![1], &[1.0])];
        let ex = Executed {
            plan: plan(2),
            received: t0,
            items: items(2),
            started: t0 + Duration::from_micros(300),
            finished: t0 + Duration::from_micros(5300),
            results: Ok(vec![Ok(out.clone()), Err(RequestError::Arity { expected: 1, got: 0 })]),
            revoked: false,
        };
        let a = executed(&WorkerName::new("w1"), ex);
        assert_eq!(a.items.len(), 2);
        assert_eq!(
            reply(&a.items[0]),
            &InferReply::ok(
                "r0",
                out,
                Timings {
                    queued_us: 300,
                    exec_us: 5000,
                    batch_size: 2
                }
            )
        );
        let r1 = reply(&a.items[1]);
        assert_eq!(r1.status, Status::Rejected);
        assert_eq!(r1.reason, Some(RejectReason::BadRequest));
        assert_eq!(
            r1.error.as_deref(),
            Some("model `m` cannot take request `r1`: expected 1 input tensors, got 0")
        );
        assert_eq!(r1.timings.queued_us, 400);
        assert_eq!(
            a.done,
            BatchDone {
                batch_id: BatchUuid::from_u128(9),
                worker_id: "w1".into(),
                wait_us: 300,
                exec_us: 5000,
                batch_size: 2,
                failed: 1,
            }
        );
        // One message, to g1, naming each reply by g1's number for the request.
        let m = a.into_messages(1 << 20);
        assert_eq!(m.results.len(), 1);
        let (gateway, results) = &m.results[0];
        assert_eq!(gateway.as_str(), "g1");
        let numbered: Vec<(u64, String)> = results
            .replies
            .iter()
            .map(|r| (r.request, decode::<InferReply>(&r.reply).unwrap().id))
            .collect();
        assert_eq!(numbered, [(10, "r0".to_string()), (11, "r1".to_string())]);
        assert!(results.failed.is_empty());
        assert_eq!(m.done.failed, 1);
    }

    #[test]
    fn backend_failure_is_an_error_for_every_item_and_overrun_flags_the_earliest_late() {
        let t0 = Instant::now();
        let ex = Executed {
            plan: plan(2),
            received: t0,
            items: items(2),
            started: t0,
            finished: t0 + Duration::from_millis(60),
            results: Err(BackendError::Failed("out of memory".into())),
            revoked: false,
        };
        let a = executed(&WorkerName::new("w1"), ex);
        for r in a.items.iter().map(reply) {
            assert_eq!(r.status, Status::Error);
            assert!(
                r.error.as_deref().unwrap().ends_with("backend failure: out of memory"),
                "{r:?}"
            );
        }
        assert!(reply(&a.items[0]).late);
        assert!(!reply(&a.items[1]).late);
        assert_eq!(a.done.failed, 2);
    }

    #[test]
    fn expired_batch_names_the_missing_requests_and_fails_those_it_has_no_id_for() {
        let t0 = Instant::now();
        let mut got = items(3);
        let ex = ExpiredBatch {
            plan: plan(3),
            received: t0,
            items: vec![None, Some(got.remove(1)), None],
        };
        let a = expired(
            &WorkerName::new("w1"),
            ex,
            Duration::from_millis(50),
            t0 + Duration::from_millis(100),
        );
        let message = "worker `w1` never received the inputs of request(s) g1:10, g1:12 (gateway:number) of batch \
                       00000000-0000-0000-0000-000000000009 within the batch's budget of 50.0 ms + 50.0 ms grace, \
                       so the batch was not run";
        let failed = ItemAnswer::Failed {
            reason: RejectReason::WorkerLost,
            message: message.into(),
        };
        assert_eq!(a.items[0], failed);
        assert_eq!(a.items[2], failed);
        let r1 = reply(&a.items[1]);
        assert_eq!((r1.id.as_str(), r1.status), ("r1", Status::Error));
        assert_eq!(r1.error.as_deref(), Some(message));
        assert_eq!(r1.timings.queued_us, 100_100);
        assert_eq!((a.done.batch_size, a.done.failed, a.done.wait_us), (3, 3, 100_000));
        let m = a.into_messages(1 << 20);
        let (_, results) = &m.results[0];
        assert_eq!(results.replies.iter().map(|r| r.request).collect::<Vec<_>>(), [11]);
        assert_eq!(results.failed.iter().map(|f| f.request).collect::<Vec<_>>(), [10, 12]);
    }

    #[test]
    fn rejected_plan_rejects_every_item() {
        let a = rejected(&WorkerName::new("w1"), plan(2), RejectReason::ShuttingDown, "draining");
        assert!(a.items.iter().all(|i| i
            == &ItemAnswer::Failed {
                reason: RejectReason::ShuttingDown,
                message: "draining".into()
            }));
        assert_eq!((a.done.batch_size, a.done.failed), (2, 2));
    }

    #[test]
    fn each_gateway_gets_only_its_own_answers() {
        let mut two = plan(0);
        two.parts = vec![
            PlanPart {
                gateway: "g1".into(),
                requests: vec![4, 9],
            },
            PlanPart {
                gateway: "g2".into(),
                requests: vec![1],
            },
            // A gateway may come back in a later part: still one message for it.
            PlanPart {
                gateway: "g1".into(),
                requests: vec![2],
            },
        ];
        let a = rejected(&WorkerName::new("w1"), two, RejectReason::Overloaded, "full");
        let m = a.into_messages(1 << 20);
        let per: Vec<(&str, Vec<u64>)> = m
            .results
            .iter()
            .map(|(g, r)| (g.as_str(), r.failed.iter().map(|f| f.request).collect()))
            .collect();
        assert_eq!(per, [("g1", vec![4, 9, 2]), ("g2", vec![1])]);
        assert!(m.results.iter().all(|(_, r)| r.batch_id == BatchUuid::from_u128(9)));
    }

    #[test]
    fn results_larger_than_max_payload_are_split_and_a_reply_too_large_alone_becomes_an_error() {
        let t0 = Instant::now();
        let small = vec![Tensor::from_f32(vec![100], &[0.5; 100])];
        let huge = vec![Tensor::from_f32(vec![2000], &[0.5; 2000])];
        let ex = Executed {
            plan: plan(6),
            received: t0,
            items: items(6),
            started: t0,
            finished: t0,
            results: Ok(vec![
                Ok(small.clone()),
                Ok(small.clone()),
                Ok(huge),
                Ok(small.clone()),
                Ok(small.clone()),
                Ok(small),
            ]),
            revoked: false,
        };
        let a = executed(&WorkerName::new("w1"), ex);
        // About 460 bytes per small reply, 8 KB for the huge one; 1,792 bytes per message.
        let max_payload = 2048;
        let m = a.into_messages(max_payload);
        assert!(m.results.len() >= 2, "{} message(s)", m.results.len());
        let mut requests = Vec::new();
        for (gateway, r) in &m.results {
            assert_eq!(gateway.as_str(), "g1");
            assert!(encode(r).len() <= results::budget(max_payload));
            for item in &r.replies {
                let reply: InferReply = decode(&item.reply).unwrap();
                assert_eq!(reply.id, format!("r{}", item.request - 10));
                let expected = if item.request == 12 { Status::Error } else { Status::Ok };
                assert_eq!(reply.status, expected, "{reply:?}");
                if item.request == 12 {
                    assert!(reply.error.unwrap().contains("max_payload of 2048 bytes"));
                }
            }
            requests.extend(r.replies.iter().map(|i| i.request));
        }
        assert_eq!(requests, [10, 11, 12, 13, 14, 15]);
        assert_eq!(m.done.failed, 1);
    }
}
