//! The control protocol between the scheduler and its workers (MessagePack
//! with named fields, like the client protocol; see `docs/protocol.md` §10).
//!
//! The scheduler never sends a worker anything it must wait for: a plan
//! names the requests of a batch and where to reply; the inputs follow as
//! one message per request (so no message outgrows NATS' `max_payload`
//! however large the batch); the worker answers each request's own inbox
//! and reports [`BatchDone`] with what the batch really took. Deadlines
//! travel as remaining budgets, never as wall-clock instants, so no clocks
//! need to agree.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{BatchUuid, ClientRequestId, WorkerName};
use crate::profile::Profile;
use crate::wire::Tensor;

/// A model a worker serves, with the profile the scheduler plans with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerModel {
    pub name: String,
    pub profile: Profile,
}

/// A worker announces itself (`baton.worker.hello`), at start and when the
/// registry asks (`baton.worker.<id>.rehello`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerHello {
    pub worker_id: WorkerName,
    /// New each time the worker process starts: a restarted worker with the
    /// same id is a different instance, and whatever the old one was
    /// running is lost.
    pub instance: Uuid,
    /// Hardware class, e.g. `t4`, `a100`, `cpu`.
    pub hardware: String,
    /// `emulated` or `torch`.
    pub backend: String,
    pub models: Vec<WorkerModel>,
}

/// A worker's state as it reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Taking work.
    Ready,
    /// Finishing what it has; send it nothing new.
    Draining,
}

/// Liveness, every `heartbeat_ms` (`baton.worker.heartbeat`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub worker_id: WorkerName,
    /// The instance that said hello (see [`WorkerHello::instance`]).
    pub instance: Uuid,
    pub state: WorkerState,
    /// Batches received and not yet finished.
    pub pending_batches: u32,
}

/// A worker leaves after draining (`baton.worker.goodbye`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Goodbye {
    pub worker_id: WorkerName,
}

/// One request of a planned batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanItem {
    /// The client's request id, echoed in the reply.
    pub request_id: ClientRequestId,
    /// The request's reply inbox.
    pub reply_to: String,
    /// Time the request had already spent in Baton when the plan was sent, µs.
    pub queued_us: u64,
}

/// A batch to run (`baton.worker.<id>.plan`). Its inputs follow as
/// [`BatchInput`] messages, one per item, possibly before the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchPlanMsg {
    pub batch_id: BatchUuid,
    pub model: String,
    /// Earliest deadline first.
    pub items: Vec<PlanItem>,
    /// Remaining budget until the earliest item's deadline when sent, µs.
    pub budget_us: u64,
    /// The scheduler already knows the batch will be late (fcfs).
    pub late: bool,
}

/// One request's inputs for a planned batch (`baton.worker.<id>.input`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchInput {
    pub batch_id: BatchUuid,
    /// Position of the request in the plan's `items`.
    pub index: u32,
    pub inputs: Vec<Tensor>,
}

/// The scheduler has answered these batches' requests itself (`worker_lost`, after declaring
/// the worker dead) and withdraws them (`baton.worker.<id>.revoke`). Published on the same
/// connection as their plans and inputs, so it reaches the worker after them. The worker drops
/// a revoked batch that has not started running, without replying and without a `BatchDone`,
/// and remembers the ids for a while so that a late plan or input for them is not run either.
/// A batch already running is finished and answered as usual (a second reply, the one case
/// the fence cannot prevent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revoke {
    pub batch_ids: Vec<BatchUuid>,
}

/// A batch finished (`baton.sched.batch_done`): every item has been answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchDone {
    pub batch_id: BatchUuid,
    pub worker_id: WorkerName,
    /// From the plan's arrival to the batch's start, µs (waiting for inputs or the device).
    pub wait_us: u64,
    /// Execution time of the batch, µs.
    pub exec_us: u64,
    pub batch_size: u32,
    /// Items answered with an error (bad inputs, backend failure).
    pub failed: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode, encode};

    #[test]
    fn round_trips() {
        let plan = BatchPlanMsg {
            batch_id: BatchUuid::from_u128(7),
            model: "resnet50".into(),
            items: vec![PlanItem {
                request_id: "r1".into(),
                reply_to: "_INBOX.x.1".into(),
                queued_us: 1500,
            }],
            budget_us: 40_000,
            late: false,
        };
        assert_eq!(decode::<BatchPlanMsg>(&encode(&plan)).unwrap(), plan);
        let hello = WorkerHello {
            worker_id: "w1".into(),
            instance: Uuid::from_u128(1),
            hardware: "cpu".into(),
            backend: "emulated".into(),
            models: vec![WorkerModel {
                name: "m".into(),
                profile: Profile::from_spec("sleep#1000,2000,0,0", 8).unwrap(),
            }],
        };
        assert_eq!(decode::<WorkerHello>(&encode(&hello)).unwrap(), hello);
        let done = BatchDone {
            batch_id: BatchUuid::from_u128(7),
            worker_id: "w1".into(),
            wait_us: 10,
            exec_us: 5000,
            batch_size: 1,
            failed: 0,
        };
        assert_eq!(decode::<BatchDone>(&encode(&done)).unwrap(), done);
        let revoke = Revoke {
            batch_ids: vec![BatchUuid::from_u128(7), BatchUuid::from_u128(8)],
        };
        assert_eq!(decode::<Revoke>(&encode(&revoke)).unwrap(), revoke);
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The id fields' encoding is pinned byte for byte: batch ids are 16-byte MessagePack bin,
    /// worker and request ids plain strings, whatever Rust types carry them.
    #[test]
    fn id_fields_encode_as_before() {
        let plan = BatchPlanMsg {
            batch_id: BatchUuid::from_u128(7),
            model: "m".into(),
            items: vec![PlanItem {
                request_id: "r1".into(),
                reply_to: "i".into(),
                queued_us: 2,
            }],
            budget_us: 3,
            late: false,
        };
        let done = BatchDone {
            batch_id: BatchUuid::from_u128(7),
            worker_id: "w1".into(),
            wait_us: 1,
            exec_us: 2,
            batch_size: 1,
            failed: 0,
        };
        let revoke = Revoke {
            batch_ids: vec![BatchUuid::from_u128(7)],
        };
        let bye = Goodbye { worker_id: "w1".into() };
        // Bytes encoded when the ids were `Uuid` and `String` (before the id newtypes).
        let plan_bytes = "85a862617463685f6964c41000000000000000000000000000000007a56d6f64656ca16da56974656d739183aa\
                          726571756573745f6964a27231a87265706c795f746fa169a97175657565645f757302a96275646765745f757303\
                          a46c617465c2";
        let done_bytes = "86a862617463685f6964c41000000000000000000000000000000007a9776f726b65725f6964a27731a7776169\
                          745f757301a7657865635f757302aa62617463685f73697a6501a66661696c656400";
        assert_eq!(hex(&encode(&plan)), plan_bytes);
        assert_eq!(hex(&encode(&done)), done_bytes);
        assert_eq!(
            hex(&encode(&revoke)),
            "81a962617463685f69647391c41000000000000000000000000000000007"
        );
        assert_eq!(hex(&encode(&bye)), "81a9776f726b65725f6964a27731");
        assert_eq!(decode::<BatchPlanMsg>(&encode(&plan)).unwrap(), plan);
        assert_eq!(decode::<Revoke>(&encode(&revoke)).unwrap(), revoke);
    }
}
