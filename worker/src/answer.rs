//! How a batch is answered: every item exactly one [`InferReply`], then one [`BatchDone`].
//!
//! Whatever happens to a batch — it ran, some of its requests had bad inputs, the backend failed,
//! its inputs never came, the worker was draining or full — ends here, in a pure function that
//! turns the outcome into one reply per plan item and the report for the dispatcher. Keeping
//! that in one place is what makes "every request gets exactly one reply" checkable.

use std::time::{Duration, Instant};

use baton_common::control::{BatchDone, BatchPlanMsg};
use baton_common::ids::WorkerName;
use baton_common::subjects;
use baton_common::wire::{encode, InferReply, RejectReason, Timings};
use tracing::warn;

use crate::assembly::ExpiredBatch;
use crate::executor::Executed;

/// The messages that close one batch: `(reply_to, reply)` per item, in plan order, and the
/// report for `baton.sched.batch_done`.
#[derive(Debug)]
pub struct Answer {
    pub replies: Vec<(String, InferReply)>,
    pub done: BatchDone,
}

impl Answer {
    /// Publishes the replies, then the `BatchDone` (in that order, on one connection, so the
    /// dispatcher never hears of a batch before its requests have their answers on the way).
    pub async fn publish(self, client: &async_nats::Client) {
        for (reply_to, reply) in self.replies {
            if let Err(e) = client.publish(reply_to.clone(), encode(&reply).into()).await {
                warn!(reply_to, request = reply.id, error = %e, "could not publish a reply");
            }
        }
        if let Err(e) = client.publish(subjects::BATCH_DONE, encode(&self.done).into()).await {
            warn!(batch = %self.done.batch_id, error = %e, "could not publish BatchDone");
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// A batch that ran: `ok` with outputs, `rejected`/`bad_request` for requests whose inputs the
/// model refused, `error` for all when the backend failed the whole batch.
pub fn executed(worker_id: &WorkerName, ex: Executed) -> Answer {
    let plan = &ex.plan;
    let n = plan.items.len() as u32;
    let wait = ex.started.saturating_duration_since(ex.received);
    let exec_us = micros(ex.finished.saturating_duration_since(ex.started));
    // `budget_us` runs to the earliest deadline, which is item 0's (the plan is EDF-ordered).
    let overran = ex.finished.saturating_duration_since(ex.received) > Duration::from_micros(plan.budget_us);
    let mut failed = 0;
    let replies = plan
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let timings = Timings {
                queued_us: item.queued_us.saturating_add(micros(wait)),
                exec_us,
                batch_size: n,
            };
            let mut reply = match &ex.results {
                Ok(results) => match &results[i] {
                    Ok(outputs) => InferReply::ok(&item.request_id, outputs.clone(), timings),
                    Err(e) => {
                        failed += 1;
                        let mut r = InferReply::rejected(
                            &item.request_id,
                            RejectReason::BadRequest,
                            format!("model `{}` cannot take request `{}`: {e}", plan.model, item.request_id),
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
                        &item.request_id,
                        format!(
                            "worker `{worker_id}` failed to run model `{}` on batch {}: {e}",
                            plan.model, plan.batch_id
                        ),
                        timings,
                    )
                }
            };
            reply.late = plan.late || (i == 0 && overran);
            (item.reply_to.clone(), reply)
        })
        .collect();
    Answer {
        replies,
        done: BatchDone {
            batch_id: plan.batch_id,
            worker_id: worker_id.clone(),
            wait_us: micros(wait),
            exec_us,
            batch_size: n,
            failed,
        },
    }
}

/// A plan whose inputs did not all arrive by its budget plus grace: `error` for every item,
/// naming the requests whose inputs are missing. The batch does not run.
pub fn expired(worker_id: &WorkerName, ex: &ExpiredBatch, grace: Duration, now: Instant) -> Answer {
    let plan = &ex.plan;
    let missing: Vec<&str> = ex
        .missing
        .iter()
        .filter_map(|&i| plan.items.get(i as usize))
        .map(|item| item.request_id.as_str())
        .collect();
    let message = format!(
        "worker `{worker_id}` never received the inputs of request(s) {} of batch {} within the batch's \
         budget of {:.1} ms + {:.1} ms grace, so the batch was not run",
        missing.join(", "),
        plan.batch_id,
        plan.budget_us as f64 / 1000.0,
        grace.as_secs_f64() * 1000.0,
    );
    let waited = micros(now.saturating_duration_since(ex.received));
    not_run(worker_id, plan, waited, |id, queued_us| {
        InferReply::error(
            id,
            message.clone(),
            Timings {
                queued_us,
                exec_us: 0,
                batch_size: 0,
            },
        )
    })
}

/// A plan the worker declines as a whole (draining, full, model not loaded): `rejected` with
/// `reason` for every item.
pub fn rejected(worker_id: &WorkerName, plan: &BatchPlanMsg, reason: RejectReason, message: &str) -> Answer {
    not_run(worker_id, plan, 0, |id, _| InferReply::rejected(id, reason, message))
}

fn not_run(
    worker_id: &WorkerName,
    plan: &BatchPlanMsg,
    waited_us: u64,
    mut reply: impl FnMut(&str, u64) -> InferReply,
) -> Answer {
    let n = plan.items.len() as u32;
    Answer {
        replies: plan
            .items
            .iter()
            .map(|item| {
                let mut r = reply(item.request_id.as_str(), item.queued_us.saturating_add(waited_us));
                r.late = plan.late;
                (item.reply_to.clone(), r)
            })
            .collect(),
        done: BatchDone {
            batch_id: plan.batch_id,
            worker_id: worker_id.clone(),
            wait_us: waited_us,
            exec_us: 0,
            batch_size: n,
            failed: n,
        },
    }
}

#[cfg(test)]
mod tests {
    use baton_common::control::PlanItem;
    use baton_common::ids::BatchUuid;
    use baton_common::wire::{Status, Tensor};

    use super::*;
    use crate::backend::{BackendError, RequestError};

    fn plan(n: usize) -> BatchPlanMsg {
        BatchPlanMsg {
            batch_id: BatchUuid::from_u128(9),
            model: "m".into(),
            items: (0..n)
                .map(|i| PlanItem {
                    request_id: format!("r{i}").into(),
                    reply_to: format!("_INBOX.{i}"),
                    queued_us: 100 * i as u64,
                })
                .collect(),
            budget_us: 50_000,
            late: false,
        }
    }

    #[test]
    fn executed_batch_answers_each_item_with_its_own_outcome() {
        let t0 = Instant::now();
        let out = vec![Tensor::from_f32(vec![1], &[1.0])];
        let ex = Executed {
            plan: plan(2),
            received: t0,
            started: t0 + Duration::from_micros(300),
            finished: t0 + Duration::from_micros(5300),
            results: Ok(vec![Ok(out.clone()), Err(RequestError::Arity { expected: 1, got: 0 })]),
            revoked: false,
        };
        let a = executed(&WorkerName::new("w1"), ex);
        assert_eq!(a.replies.len(), 2);
        let (to0, r0) = &a.replies[0];
        assert_eq!(to0, "_INBOX.0");
        assert_eq!(
            r0,
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
        let (to1, r1) = &a.replies[1];
        assert_eq!(to1, "_INBOX.1");
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
    }

    #[test]
    fn backend_failure_is_an_error_for_every_item_and_overrun_flags_the_earliest_late() {
        let t0 = Instant::now();
        let ex = Executed {
            plan: plan(2),
            received: t0,
            started: t0,
            finished: t0 + Duration::from_millis(60),
            results: Err(BackendError::Failed("out of memory".into())),
            revoked: false,
        };
        let a = executed(&WorkerName::new("w1"), ex);
        for (_, r) in &a.replies {
            assert_eq!(r.status, Status::Error);
            assert!(
                r.error.as_deref().unwrap().ends_with("backend failure: out of memory"),
                "{r:?}"
            );
        }
        assert!(a.replies[0].1.late);
        assert!(!a.replies[1].1.late);
        assert_eq!(a.done.failed, 2);
    }

    #[test]
    fn expired_batch_names_the_missing_requests() {
        let t0 = Instant::now();
        let ex = ExpiredBatch {
            plan: plan(3),
            received: t0,
            missing: vec![0, 2],
        };
        let a = expired(
            &WorkerName::new("w1"),
            &ex,
            Duration::from_millis(50),
            t0 + Duration::from_millis(100),
        );
        assert_eq!(a.replies.len(), 3);
        for (_, r) in &a.replies {
            assert_eq!(r.status, Status::Error);
            assert_eq!(
                r.error.as_deref(),
                Some(
                    "worker `w1` never received the inputs of request(s) r0, r2 of batch \
                     00000000-0000-0000-0000-000000000009 within the batch's budget of 50.0 ms + 50.0 ms grace, \
                     so the batch was not run"
                )
            );
        }
        assert_eq!(a.replies[1].1.timings.queued_us, 100_100);
        assert_eq!((a.done.batch_size, a.done.failed, a.done.wait_us), (3, 3, 100_000));
    }

    #[test]
    fn rejected_plan_rejects_every_item() {
        let a = rejected(&WorkerName::new("w1"), &plan(2), RejectReason::ShuttingDown, "draining");
        assert!(a
            .replies
            .iter()
            .all(|(_, r)| r.reason == Some(RejectReason::ShuttingDown)));
        assert_eq!((a.done.batch_size, a.done.failed), (2, 2));
    }
}
