//! The control protocol between the scheduler and its workers (MessagePack
//! with named fields, like the client protocol; see `docs/protocol.md` §10).
//!
//! Control plane and data plane are apart. Gateways hold requests and send the dispatcher
//! their metadata only, batched ([`Arrivals`]); the dispatcher sends a worker the plan of a
//! batch ([`BatchPlanMsg`], naming each request by its gateway and the gateway's number for
//! it) and each gateway concerned a shipping order ([`GatewayOrders`]); the gateway sends the
//! inputs straight to the worker ([`BatchInputs`], as few messages as fit `max_payload`); the
//! worker sends the answers back to the gateway ([`BatchResults`]), which alone replies to
//! clients, and reports [`BatchDone`] to the dispatcher. The dispatcher never sees a tensor
//! byte or a client's inbox. Nobody waits on anybody: deadlines travel as remaining budgets,
//! never as wall-clock instants, so no clocks need to agree.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::{BatchUuid, ClientRequestId, GatewayName, WorkerName};
use crate::profile::Profile;
use crate::wire::{RejectReason, Tensor};

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

/// A gateway's share of a planned batch: which of its requests, in the plan's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanPart {
    pub gateway: GatewayName,
    /// The gateway's numbers for the requests ([`ArrivalItem::request`]).
    pub requests: Vec<u64>,
}

/// A batch to run (`baton.worker.<id>.plan`, from the dispatcher). Its items are the parts'
/// requests in order (item `i` of the batch is the `i`-th request counting across `parts`);
/// each part's gateway sends that part's inputs as [`BatchInputs`], possibly before the plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchPlanMsg {
    pub batch_id: BatchUuid,
    pub model: String,
    pub parts: Vec<PlanPart>,
    /// Remaining budget until the earliest item's deadline when sent, µs.
    pub budget_us: u64,
    /// The scheduler already knows the batch will be late (fcfs).
    pub late: bool,
}

impl BatchPlanMsg {
    /// Items in the batch.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.requests.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(gateway, request)` of every item, in the batch's order.
    pub fn items(&self) -> impl Iterator<Item = (&GatewayName, u64)> + '_ {
        self.parts
            .iter()
            .flat_map(|p| p.requests.iter().map(move |&r| (&p.gateway, r)))
    }
}

/// One request's inputs in [`BatchInputs`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputItem {
    /// Position of the request among the plan's items ([`ShipOrder::offset`] + its place in
    /// the order).
    pub index: u32,
    /// The client's id for the request, for its reply.
    pub id: ClientRequestId,
    /// Time the request had spent in Baton when the gateway shipped it, µs.
    pub queued_us: u64,
    pub inputs: Vec<Tensor>,
}

/// A gateway's inputs for (part of) a planned batch (`baton.worker.<id>.input`): as many
/// requests per message as fit in the server's `max_payload`, so usually one message per batch
/// and gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchInputs {
    pub batch_id: BatchUuid,
    pub items: Vec<InputItem>,
}

/// One answered request in [`BatchResults`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultItem {
    /// The gateway's number for the request.
    pub request: u64,
    /// The client's reply, a MessagePack-encoded `InferReply` (docs/protocol.md §4), which
    /// the gateway forwards as is.
    #[serde(with = "serde_bytes")]
    pub reply: Vec<u8>,
}

/// A request the worker could not run and has no reply body for (its inputs never came):
/// the gateway answers it with `reason` and `message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedItem {
    pub request: u64,
    pub reason: RejectReason,
    pub message: String,
}

/// A worker's answers for one gateway's requests of a batch (`baton.gateway.<gw>.results`),
/// split across messages when they do not fit in one. The gateway answers the clients: the
/// first answer for a request wins, a later one is dropped and counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchResults {
    pub batch_id: BatchUuid,
    pub worker_id: WorkerName,
    pub replies: Vec<ResultItem>,
    pub failed: Vec<FailedItem>,
}

/// One request's metadata in [`Arrivals`], a MessagePack array `[request, model, budget_us]`
/// (an array, not a map: it is the one message whose size grows with the request rate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrivalItem(
    /// The gateway's number for the request, unique per gateway instance.
    pub u64,
    /// Index into [`Arrivals::models`].
    pub u32,
    /// Remaining SLO budget when the gateway sent this, µs.
    pub u64,
);

impl ArrivalItem {
    pub fn request(&self) -> u64 {
        self.0
    }
    pub fn model(&self) -> u32 {
        self.1
    }
    pub fn budget_us(&self) -> u64 {
        self.2
    }
}

/// Requests a gateway took in, metadata only (`baton.sched.arrivals`): flushed every
/// `gateway.arrival_batch` requests or `gateway.arrival_flush_us`, whichever comes first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arrivals {
    pub gateway: GatewayName,
    /// New each time the gateway process starts (see [`GatewayBeat::instance`]).
    pub instance: Uuid,
    /// The model names the items refer to by index.
    pub models: Vec<String>,
    pub items: Vec<ArrivalItem>,
}

/// Send a batch's inputs to its worker (in [`GatewayOrders`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShipOrder {
    pub batch_id: BatchUuid,
    pub worker: WorkerName,
    /// Index of the first of these requests among the plan's items.
    pub offset: u32,
    pub requests: Vec<u64>,
}

/// Answer a request with a rejection and forget it (in [`GatewayOrders`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectOrder {
    pub request: u64,
    pub reason: RejectReason,
    pub message: String,
}

/// What the dispatcher asks of one gateway (`baton.gateway.<gw>.orders`): everything decided
/// for that gateway in one pass of the scheduling loop, in one message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GatewayOrders {
    /// The gateway instance the orders are for; a restarted gateway ignores its
    /// predecessor's orders.
    pub instance: Uuid,
    pub ships: Vec<ShipOrder>,
    pub rejects: Vec<RejectOrder>,
}

/// A gateway's liveness and load (`baton.gateway.heartbeat`), every `heartbeat_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayBeat {
    pub gateway: GatewayName,
    pub instance: Uuid,
    /// Requests held (received, not yet answered) and their bytes, counting the fixed
    /// per-request overhead the budget charges.
    pub held_requests: u64,
    pub held_bytes: u64,
    /// Answers dropped because the request had already been answered (since start).
    pub duplicates_dropped: u64,
    /// The gateway is shutting down: it takes no new requests.
    pub leaving: bool,
}

/// The dispatcher has re-planned or rejected these batches' requests (after declaring the
/// worker dead) and withdraws them (`baton.worker.<id>.revoke`). Published on the same
/// connection as their plans, so it reaches the worker after them. The worker drops
/// a revoked batch that has not started running, without replying and without a `BatchDone`,
/// and remembers the ids for a while so that a late plan or input for them is not run either.
/// A batch already running is finished and answered as usual; its gateway drops the answers
/// of requests already answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revoke {
    pub batch_ids: Vec<BatchUuid>,
}

/// A batch finished (`baton.sched.batch_done`): every item's answer is on its way to its
/// gateway.
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
            parts: vec![
                PlanPart {
                    gateway: "g1".into(),
                    requests: vec![4, 9],
                },
                PlanPart {
                    gateway: "g2".into(),
                    requests: vec![1],
                },
            ],
            budget_us: 40_000,
            late: false,
        };
        assert_eq!(decode::<BatchPlanMsg>(&encode(&plan)).unwrap(), plan);
        assert_eq!(plan.len(), 3);
        let items: Vec<(String, u64)> = plan.items().map(|(g, r)| (g.to_string(), r)).collect();
        assert_eq!(items, [("g1".into(), 4), ("g1".into(), 9), ("g2".into(), 1)]);
        let orders = GatewayOrders {
            instance: Uuid::from_u128(3),
            ships: vec![ShipOrder {
                batch_id: BatchUuid::from_u128(7),
                worker: "w1".into(),
                offset: 2,
                requests: vec![1],
            }],
            rejects: vec![RejectOrder {
                request: 5,
                reason: RejectReason::DeadlineUnattainable,
                message: "late".into(),
            }],
        };
        assert_eq!(decode::<GatewayOrders>(&encode(&orders)).unwrap(), orders);
        let results = BatchResults {
            batch_id: BatchUuid::from_u128(7),
            worker_id: "w1".into(),
            replies: vec![ResultItem {
                request: 4,
                reply: vec![0x80],
            }],
            failed: vec![FailedItem {
                request: 9,
                reason: RejectReason::WorkerLost,
                message: "inputs never came".into(),
            }],
        };
        assert_eq!(decode::<BatchResults>(&encode(&results)).unwrap(), results);
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
        let arrivals = Arrivals {
            gateway: "g".into(),
            instance: Uuid::from_u128(1),
            models: vec!["m".into()],
            items: vec![ArrivalItem(7, 0, 100_000)],
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
        let done_bytes = "86a862617463685f6964c41000000000000000000000000000000007a9776f726b65725f6964a27731a7776169\
                          745f757301a7657865635f757302aa62617463685f73697a6501a66661696c656400";
        // An arrival is a 3-element array: `[7, 0, 100000]` is 93 07 00 ce 000186a0.
        assert!(hex(&encode(&arrivals)).ends_with("a56974656d7391930700ce000186a0"));
        assert_eq!(hex(&encode(&done)), done_bytes);
        assert_eq!(
            hex(&encode(&revoke)),
            "81a962617463685f69647391c41000000000000000000000000000000007"
        );
        assert_eq!(hex(&encode(&bye)), "81a9776f726b65725f6964a27731");
        assert_eq!(decode::<Arrivals>(&encode(&arrivals)).unwrap(), arrivals);
        assert_eq!(decode::<Revoke>(&encode(&revoke)).unwrap(), revoke);
    }
}
