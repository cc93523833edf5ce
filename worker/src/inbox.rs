//! The worker's inbox: everything NATS delivers on `baton.worker.<id>.>`, decoded and queued.
//!
//! async-nats drops messages when a subscription's channel overflows (a *slow consumer*), and
//! dropping a plan would leave its requests unanswered. So a dedicated task drains the
//! subscription as fast as messages come, decodes them (off the runtime loop) and puts them in the
//! worker's own bounded queue. If that queue is full, the task decides what is lost, and makes
//! sure it is never silent: an overflowing plan's requests are answered `overloaded` on the spot,
//! through their gateways (and its batch reported done); an overflowing inputs message (a
//! gateway's share of a batch) is dropped and counted, and its plan then expires and its
//! requests are answered with an error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_nats::{Client, Subscriber};
use baton_common::control::{BatchInputs, BatchPlanMsg, Revoke};
use baton_common::ids::WorkerName;
use baton_common::subjects;
use baton_common::wire::{decode, RejectReason};
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc::{error::TrySendError, Sender};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use crate::answer;

/// A decoded message for the worker.
#[derive(Debug)]
pub enum Inbound {
    /// A batch to run, from the dispatcher.
    Plan { plan: BatchPlanMsg, received: Instant },
    /// A gateway's inputs for (part of) a batch.
    Inputs { inputs: BatchInputs, received: Instant },
    /// Sent by the dispatcher, on the connection of the plans it names.
    Revoke(Revoke),
    /// The registry asks the worker to say hello again.
    Rehello,
}

/// Counters of what went wrong on the way in (read for logs and tests).
#[derive(Debug, Default)]
pub struct InboxStats {
    /// async-nats reported the subscription as a slow consumer (it dropped messages).
    pub slow_consumer_events: AtomicU64,
    /// Messages that could not be decoded or had an unknown subject.
    pub malformed: AtomicU64,
    /// Plans answered `overloaded` because the queue was full.
    pub plans_overflowed: AtomicU64,
    /// Inputs messages dropped because the queue was full.
    pub inputs_overflowed: AtomicU64,
    /// Revoked batches dropped before they ran (not answered: the dispatcher re-planned or
    /// rejected their requests).
    pub revoked_dropped: AtomicU64,
    /// Revoked batches that had already started, so ran and were answered anyway.
    pub revoked_too_late: AtomicU64,
}

impl InboxStats {
    pub(crate) fn bump(counter: &AtomicU64) -> u64 {
        counter.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// Drains `subscriber` into `queue` until the subscription ends or the queue's receiver is gone.
///
/// When `stop` fires, the subscription is drained the NATS way: unsubscribed, with the messages
/// already on their way still delivered (and queued), after which the task ends and `queue`
/// closes. The runtime answers those last messages before it says goodbye.
pub async fn drain(
    mut subscriber: Subscriber,
    queue: Sender<Inbound>,
    client: Client,
    worker_id: WorkerName,
    stats: Arc<InboxStats>,
    stop: oneshot::Receiver<()>,
) {
    let plan_subject = subjects::worker_plans(&worker_id);
    let input_subject = subjects::worker_inputs(&worker_id);
    let rehello_subject = subjects::worker_rehello(&worker_id);
    let revoke_subject = subjects::worker_revoke(&worker_id);
    let mut stop = stop.fuse();
    let mut stopping = false;
    loop {
        let msg = tokio::select! {
            msg = subscriber.next() => msg,
            _ = &mut stop, if !stopping => {
                stopping = true;
                if let Err(e) = subscriber.drain().await {
                    warn!(error = %e, "could not unsubscribe; closing the inbox now");
                    break;
                }
                continue;
            }
        };
        let Some(msg) = msg else { break };
        let received = Instant::now();
        let subject = msg.subject.as_str();
        let inbound = if subject == input_subject {
            decode::<BatchInputs>(&msg.payload).map(|inputs| Inbound::Inputs { inputs, received })
        } else if subject == plan_subject {
            decode::<BatchPlanMsg>(&msg.payload).map(|plan| Inbound::Plan { plan, received })
        } else if subject == rehello_subject {
            Ok(Inbound::Rehello)
        } else if subject == revoke_subject {
            decode::<Revoke>(&msg.payload).map(Inbound::Revoke)
        } else {
            let n = InboxStats::bump(&stats.malformed);
            warn!(subject, total = n, "message on an unknown worker subject ignored");
            continue;
        };
        let inbound = match inbound {
            Ok(m) => m,
            Err(e) => {
                let n = InboxStats::bump(&stats.malformed);
                warn!(subject, error = %e, total = n, "undecodable message ignored");
                continue;
            }
        };
        match queue.try_send(inbound) {
            Ok(()) => {}
            Err(TrySendError::Closed(_)) => break,
            Err(TrySendError::Full(Inbound::Plan { plan, .. })) => {
                let n = InboxStats::bump(&stats.plans_overflowed);
                let batch = plan.batch_id;
                warn!(%batch, total = n, "inbox full: plan answered `overloaded`");
                let a = answer::rejected(
                    &worker_id,
                    plan,
                    RejectReason::Overloaded,
                    &format!("worker `{worker_id}` is overloaded: its inbox is full"),
                );
                a.publish(&client).await;
            }
            Err(TrySendError::Full(Inbound::Inputs { inputs, .. })) => {
                let n = InboxStats::bump(&stats.inputs_overflowed);
                warn!(batch = %inputs.batch_id, items = inputs.items.len(), total = n,
                    "inbox full: inputs dropped (their batch will expire and be answered with an error)");
            }
            Err(TrySendError::Full(Inbound::Rehello)) => debug!("inbox full: rehello dropped"),
            // Rare and small, and losing one could let a revoked batch run: wait for room.
            Err(TrySendError::Full(revoke @ Inbound::Revoke(_))) => {
                if queue.send(revoke).await.is_err() {
                    break;
                }
            }
        }
    }
}
