//! Where a batch plan meets its inputs.
//!
//! The dispatcher sends a worker one [`BatchPlanMsg`] per batch, naming each request by its
//! gateway and the gateway's number for it; each gateway concerned sends that part's inputs as
//! [`BatchInputs`], as many requests per message as fit in NATS' `max_payload` (usually one
//! message per gateway and batch). They travel on different connections, so inputs may arrive
//! before their plan. The [`Assembler`] pairs them up, keeps what each [`InputItem`] says about its
//! request beside its tensors (the client's id and the time already spent in Baton: the plan
//! carries neither), and says when a batch is complete.
//!
//! Nothing here may accumulate forever: inputs waiting for a plan ("orphans") are bounded in
//! count and bytes and forgotten after a time-to-live, and a plan whose inputs have not all come
//! by its budget plus a grace expires, so that the worker can answer its requests with an error
//! rather than leave them silent. Batch ids recently closed — run, expired or declined — are
//! remembered, so inputs arriving after their batch was closed are dropped at once instead of
//! lingering as orphans. Batches the dispatcher revoked (it re-planned or rejected their
//! requests) are dropped without an answer, and their ids remembered for
//! [`AssemblyLimits::revoked_ttl`], so that nothing arriving for them later can run them.
//!
//! Like the scheduling core, this is a sans-IO state machine: time comes in as an argument
//! (`now`), [`Assembler::poll_timeout`] says when it next needs [`Assembler::handle_timeout`], and
//! it is tested without a runtime.
//!
//! Longer than ~600 lines on purpose: under 500 lines of code and the tests that pin it, kept
//! beside the code they check (STYLE.md).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use baton_common::control::{BatchPlanMsg, InputItem};
use baton_common::ids::{BatchUuid, ClientRequestId};
use baton_common::wire::Tensor;

/// Plans with absurd budgets still expire within this.
const MAX_BUDGET: Duration = Duration::from_secs(3600);

/// Bounds and timeouts of the [`Assembler`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssemblyLimits {
    /// How long after its budget (`budget_us`) a plan waits for missing inputs before it expires.
    pub grace: Duration,
    /// How long inputs wait for a plan that has not arrived.
    pub orphan_ttl: Duration,
    /// At most this many batches may have inputs waiting for their plan; more are dropped.
    pub max_orphan_batches: usize,
    /// At most this many bytes of tensor data may wait for plans; more are dropped.
    pub max_orphan_bytes: usize,
    /// How many closed batch ids to remember, to drop their late inputs at once; also the
    /// most revoked batch ids remembered.
    pub closed_memory: usize,
    /// How long a revoked batch id is remembered, so that its late plan or inputs are dropped.
    pub revoked_ttl: Duration,
}

impl Default for AssemblyLimits {
    fn default() -> Self {
        AssemblyLimits {
            grace: Duration::from_millis(50),
            orphan_ttl: Duration::from_secs(2),
            max_orphan_batches: 1024,
            max_orphan_bytes: 256 << 20,
            closed_memory: 4096,
            revoked_ttl: Duration::from_secs(60),
        }
    }
}

/// What a gateway said about one request besides its tensors (from its [`InputItem`]): what
/// the worker needs to build the request's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemMeta {
    /// The client's id for the request, echoed in its reply.
    pub id: ClientRequestId,
    /// Time the request had spent in Baton when its gateway shipped it, µs.
    pub queued_us: u64,
}

/// A plan with all its inputs, ready to run.
#[derive(Debug)]
pub struct ReadyBatch {
    pub plan: BatchPlanMsg,
    /// When the plan arrived at the worker.
    pub received: Instant,
    /// `items[i]` describes item `i` of the plan (the `i`-th of `plan.items()`).
    pub items: Vec<ItemMeta>,
    /// `inputs[i]` are item `i`'s tensors.
    pub inputs: Vec<Vec<Tensor>>,
}

/// A plan whose inputs did not all arrive in time.
#[derive(Debug)]
pub struct ExpiredBatch {
    pub plan: BatchPlanMsg,
    pub received: Instant,
    /// `items[i]` describes item `i` of the plan if its inputs came, and is `None` if they never
    /// did (the worker then does not know the request's client id).
    pub items: Vec<Option<ItemMeta>>,
}

impl ExpiredBatch {
    /// Indices (into the plan's items) of the requests whose inputs never came.
    pub fn missing(&self) -> Vec<u32> {
        self.items
            .iter()
            .enumerate()
            .filter(|(_, m)| m.is_none())
            .map(|(i, _)| i as u32)
            .collect()
    }
}

/// What became of a plan.
#[derive(Debug)]
pub enum PlanOutcome {
    /// All inputs were already here (or the plan has no items).
    Ready(ReadyBatch),
    /// Waiting for inputs.
    Waiting,
    /// A plan with this batch id is already assembling or was recently closed; ignored.
    Duplicate(BatchPlanMsg),
    /// The dispatcher revoked this batch before its plan came: dropped without an answer.
    Revoked(BatchPlanMsg),
}

/// What became of a plan the worker declines ([`Assembler::decline`]).
#[derive(Debug)]
pub enum DeclineOutcome {
    /// A new batch: closed here, answer its requests with the rejection.
    Declined(BatchPlanMsg),
    /// A plan with this batch id is already assembling or was recently closed: its requests
    /// are answered (or being answered) already; ignore this one.
    Duplicate(BatchPlanMsg),
    /// The dispatcher revoked this batch: drop the plan without an answer.
    Revoked(BatchPlanMsg),
}

/// What a revoke did to one batch id.
#[derive(Debug)]
pub enum RevokeOutcome {
    /// The plan was waiting for inputs: dropped (its requests are not answered here).
    Dropped(BatchPlanMsg),
    /// Only inputs had come (no plan yet): dropped.
    OrphansDropped,
    /// Not assembling here: it is queued, running, finished, or unknown. The caller decides.
    NotAssembling,
}

/// What became of an input.
#[derive(Debug)]
pub enum InputOutcome {
    /// It completed its batch.
    Ready(ReadyBatch),
    /// Stored; its batch still misses inputs.
    Stored,
    /// Stored until its plan arrives.
    Orphan,
    /// Not stored, for this reason.
    Dropped(DropReason),
}

/// Why an input was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// Its index is not an item of the plan.
    IndexOutOfRange { index: u32, items: usize },
    /// An input for this index was already received.
    Duplicate { index: u32 },
    /// Its batch was already run, answered, declined or expired.
    Closed,
    /// The dispatcher revoked its batch.
    Revoked,
    /// Too many inputs are already waiting for their plans.
    OrphansFull,
}

/// What [`Assembler::handle_timeout`] found.
#[derive(Debug, Default)]
pub struct Timeouts {
    /// Plans that expired waiting for inputs: answer their requests.
    pub expired: Vec<ExpiredBatch>,
    /// Batch ids whose inputs waited for a plan that never came; the inputs are dropped.
    pub orphans_dropped: Vec<BatchUuid>,
}

#[derive(Debug)]
struct Assembling {
    plan: BatchPlanMsg,
    received: Instant,
    expires: Instant,
    /// `slots[i]` is item `i`'s input, once it has come.
    slots: Vec<Option<InputItem>>,
    missing: usize,
}

#[derive(Debug)]
struct Orphans {
    expires: Instant,
    inputs: Vec<InputItem>,
    bytes: usize,
}

/// Pairs plans with their inputs. See the module docs.
#[derive(Debug)]
pub struct Assembler {
    limits: AssemblyLimits,
    batches: HashMap<BatchUuid, Assembling>,
    batch_timers: BTreeSet<(Instant, BatchUuid)>,
    orphans: HashMap<BatchUuid, Orphans>,
    orphan_timers: BTreeSet<(Instant, BatchUuid)>,
    orphan_bytes: usize,
    closed: HashSet<BatchUuid>,
    closed_order: VecDeque<BatchUuid>,
    revoked: HashSet<BatchUuid>,
    /// Revoked ids in order of revocation, with when to forget them.
    revoked_order: VecDeque<(Instant, BatchUuid)>,
}

fn tensor_bytes(inputs: &[Tensor]) -> usize {
    inputs.iter().map(|t| t.data.len()).sum()
}

/// A complete batch: every slot filled.
fn ready(plan: BatchPlanMsg, received: Instant, slots: Vec<Option<InputItem>>) -> ReadyBatch {
    let (items, inputs) = slots
        .into_iter()
        .flatten()
        .map(|item| {
            let meta = ItemMeta {
                id: item.id,
                queued_us: item.queued_us,
            };
            (meta, item.inputs)
        })
        .unzip();
    ReadyBatch {
        plan,
        received,
        items,
        inputs,
    }
}

impl Assembler {
    pub fn new(limits: AssemblyLimits) -> Self {
        Assembler {
            limits,
            batches: HashMap::new(),
            batch_timers: BTreeSet::new(),
            orphans: HashMap::new(),
            orphan_timers: BTreeSet::new(),
            orphan_bytes: 0,
            closed: HashSet::new(),
            closed_order: VecDeque::new(),
            revoked: HashSet::new(),
            revoked_order: VecDeque::new(),
        }
    }

    /// Plans waiting for inputs.
    pub fn assembling(&self) -> usize {
        self.batches.len()
    }

    /// Batches with inputs waiting for their plan.
    pub fn orphan_batches(&self) -> usize {
        self.orphans.len()
    }

    /// A plan arrived at `now`.
    pub fn on_plan(&mut self, plan: BatchPlanMsg, now: Instant) -> PlanOutcome {
        let id = plan.batch_id;
        if self.revoked.contains(&id) {
            return PlanOutcome::Revoked(plan);
        }
        if self.batches.contains_key(&id) || self.closed.contains(&id) {
            return PlanOutcome::Duplicate(plan);
        }
        let mut slots: Vec<Option<InputItem>> = (0..plan.len()).map(|_| None).collect();
        if let Some(orphans) = self.take_orphans(&id) {
            for item in orphans.inputs {
                // Out-of-range or repeated indices cannot be answered anyway: drop them.
                if let Some(slot @ None) = slots.get_mut(item.index as usize) {
                    *slot = Some(item);
                }
            }
        }
        let missing = slots.iter().filter(|s| s.is_none()).count();
        if missing == 0 {
            self.close(id);
            return PlanOutcome::Ready(ready(plan, now, slots));
        }
        let budget = Duration::from_micros(plan.budget_us).min(MAX_BUDGET);
        let expires = now + budget + self.limits.grace;
        self.batch_timers.insert((expires, id));
        self.batches.insert(
            id,
            Assembling {
                plan,
                received: now,
                expires,
                slots,
                missing,
            },
        );
        PlanOutcome::Waiting
    }

    /// The worker declines `plan` as a whole (it is draining, full, or does not serve the
    /// model) and will answer its requests with a rejection — unless the batch is already
    /// known here: a duplicate, or revoked. A declined batch is closed: inputs already waiting
    /// for it are dropped, and those still on their way will be.
    pub fn decline(&mut self, plan: BatchPlanMsg) -> DeclineOutcome {
        let id = plan.batch_id;
        if self.revoked.contains(&id) {
            return DeclineOutcome::Revoked(plan);
        }
        if self.batches.contains_key(&id) || self.closed.contains(&id) {
            return DeclineOutcome::Duplicate(plan);
        }
        self.take_orphans(&id);
        self.close(id);
        DeclineOutcome::Declined(plan)
    }

    /// One request's input for batch `batch_id` arrived at `now` (an item of a
    /// [`BatchInputs`](baton_common::control::BatchInputs) message, which may carry several).
    pub fn on_input(&mut self, batch_id: BatchUuid, item: InputItem, now: Instant) -> InputOutcome {
        let id = batch_id;
        let index = item.index;
        if self.revoked.contains(&id) {
            return InputOutcome::Dropped(DropReason::Revoked);
        }
        if let Some(batch) = self.batches.get_mut(&id) {
            let items = batch.slots.len();
            let Some(slot) = batch.slots.get_mut(index as usize) else {
                return InputOutcome::Dropped(DropReason::IndexOutOfRange { index, items });
            };
            if slot.is_some() {
                return InputOutcome::Dropped(DropReason::Duplicate { index });
            }
            *slot = Some(item);
            batch.missing -= 1;
            if batch.missing > 0 {
                return InputOutcome::Stored;
            }
            let batch = self.batches.remove(&id).expect("batch is present");
            self.batch_timers.remove(&(batch.expires, id));
            self.close(id);
            return InputOutcome::Ready(ready(batch.plan, batch.received, batch.slots));
        }
        if self.closed.contains(&id) {
            return InputOutcome::Dropped(DropReason::Closed);
        }
        let bytes = tensor_bytes(&item.inputs);
        let is_new = !self.orphans.contains_key(&id);
        if (is_new && self.orphans.len() >= self.limits.max_orphan_batches)
            || self.orphan_bytes + bytes > self.limits.max_orphan_bytes
        {
            return InputOutcome::Dropped(DropReason::OrphansFull);
        }
        let expires = now + self.limits.orphan_ttl;
        let entry = self.orphans.entry(id).or_insert_with(|| Orphans {
            expires,
            inputs: Vec::new(),
            bytes: 0,
        });
        if is_new {
            self.orphan_timers.insert((expires, id));
        }
        if entry.inputs.iter().any(|i| i.index == index) {
            return InputOutcome::Dropped(DropReason::Duplicate { index });
        }
        entry.inputs.push(item);
        entry.bytes += bytes;
        self.orphan_bytes += bytes;
        InputOutcome::Orphan
    }

    /// The dispatcher revoked batch `id` at `now`: drops it if it is assembling (plan or
    /// inputs), and remembers the id for [`AssemblyLimits::revoked_ttl`] whatever became of it,
    /// so that a plan or input arriving later for it is dropped.
    pub fn revoke(&mut self, id: BatchUuid, now: Instant) -> RevokeOutcome {
        if self.revoked.insert(id) {
            self.revoked_order.push_back((now + self.limits.revoked_ttl, id));
            if self.revoked_order.len() > self.limits.closed_memory.max(1) {
                if let Some((_, old)) = self.revoked_order.pop_front() {
                    self.revoked.remove(&old);
                }
            }
        }
        if let Some(batch) = self.batches.remove(&id) {
            self.batch_timers.remove(&(batch.expires, id));
            self.close(id);
            return RevokeOutcome::Dropped(batch.plan);
        }
        if self.take_orphans(&id).is_some() {
            return RevokeOutcome::OrphansDropped;
        }
        RevokeOutcome::NotAssembling
    }

    /// Revoked batch ids remembered.
    pub fn revoked(&self) -> usize {
        self.revoked.len()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.batch_timers.first().map(|(t, _)| *t),
            self.orphan_timers.first().map(|(t, _)| *t),
            self.revoked_order.front().map(|(t, _)| *t),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Expires plans and orphans whose time is up at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Timeouts {
        let mut out = Timeouts::default();
        while let Some(&(t, id)) = self.batch_timers.first() {
            if t > now {
                break;
            }
            self.batch_timers.pop_first();
            let batch = self.batches.remove(&id).expect("every batch timer has its batch");
            self.close(id);
            let items = batch
                .slots
                .into_iter()
                .map(|slot| {
                    slot.map(|item| ItemMeta {
                        id: item.id,
                        queued_us: item.queued_us,
                    })
                })
                .collect();
            out.expired.push(ExpiredBatch {
                plan: batch.plan,
                received: batch.received,
                items,
            });
        }
        while let Some(&(t, id)) = self.orphan_timers.first() {
            if t > now {
                break;
            }
            self.take_orphans(&id);
            out.orphans_dropped.push(id);
        }
        while let Some(&(t, id)) = self.revoked_order.front() {
            if t > now {
                break;
            }
            self.revoked_order.pop_front();
            self.revoked.remove(&id);
        }
        out
    }

    fn take_orphans(&mut self, id: &BatchUuid) -> Option<Orphans> {
        let orphans = self.orphans.remove(id)?;
        self.orphan_timers.remove(&(orphans.expires, *id));
        self.orphan_bytes -= orphans.bytes;
        Some(orphans)
    }

    fn close(&mut self, id: BatchUuid) {
        if self.limits.closed_memory == 0 || !self.closed.insert(id) {
            return;
        }
        self.closed_order.push_back(id);
        if self.closed_order.len() > self.limits.closed_memory {
            if let Some(old) = self.closed_order.pop_front() {
                self.closed.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use baton_common::control::PlanPart;

    use super::*;

    fn b(id: u128) -> BatchUuid {
        BatchUuid::from_u128(id)
    }

    /// A plan of `n` requests (numbers 100, 101, …) from gateway `g1`.
    fn plan(id: u128, n: usize, budget_us: u64) -> BatchPlanMsg {
        BatchPlanMsg {
            batch_id: b(id),
            model: "m".into(),
            parts: vec![PlanPart {
                gateway: "g1".into(),
                requests: (0..n as u64).map(|i| 100 + i).collect(),
            }],
            budget_us,
            late: false,
        }
    }

    /// Item `index`'s input: request `r<index>`, queued `10·index` µs, one byte of data.
    fn input(index: u32, byte: u8) -> InputItem {
        InputItem {
            index,
            id: format!("r{index}").into(),
            queued_us: 10 * u64::from(index),
            inputs: vec![Tensor {
                dtype: baton_common::wire::DType::U8,
                shape: vec![1],
                data: vec![byte],
            }],
        }
    }

    fn meta(index: u32) -> ItemMeta {
        ItemMeta {
            id: format!("r{index}").into(),
            queued_us: 10 * u64::from(index),
        }
    }

    fn limits() -> AssemblyLimits {
        AssemblyLimits {
            grace: Duration::from_millis(10),
            orphan_ttl: Duration::from_millis(100),
            max_orphan_batches: 2,
            max_orphan_bytes: 3,
            closed_memory: 2,
            revoked_ttl: Duration::from_millis(1000),
        }
    }

    #[test]
    fn inputs_before_and_after_the_plan_complete_it_in_item_order() {
        let t0 = Instant::now();
        let mut a = Assembler::new(limits());
        assert!(matches!(a.on_input(b(1), input(2, 12), t0), InputOutcome::Orphan));
        assert!(matches!(a.on_input(b(1), input(0, 10), t0), InputOutcome::Orphan));
        assert!(matches!(a.on_plan(plan(1, 3, 1000), t0), PlanOutcome::Waiting));
        assert_eq!(a.orphan_batches(), 0);
        assert_eq!(a.poll_timeout(), Some(t0 + Duration::from_millis(11)));
        let InputOutcome::Ready(ready) = a.on_input(b(1), input(1, 11), t0) else {
            panic!("the last input completes the batch");
        };
        let bytes: Vec<u8> = ready.inputs.iter().map(|i| i[0].data[0]).collect();
        assert_eq!(bytes, [10, 11, 12]);
        assert_eq!(ready.items, [meta(0), meta(1), meta(2)]);
        assert_eq!(ready.received, t0);
        assert_eq!(a.assembling(), 0);
        assert_eq!(a.poll_timeout(), None);
        // A late duplicate input is recognised as belonging to a closed batch.
        assert!(matches!(
            a.on_input(b(1), input(1, 11), t0),
            InputOutcome::Dropped(DropReason::Closed)
        ));
    }

    #[test]
    fn plan_with_all_inputs_or_no_items_is_ready_at_once() {
        let t0 = Instant::now();
        let mut a = Assembler::new(limits());
        a.on_input(b(1), input(0, 1), t0);
        assert!(matches!(a.on_plan(plan(1, 1, 1000), t0), PlanOutcome::Ready(_)));
        assert!(matches!(a.on_plan(plan(2, 0, 1000), t0), PlanOutcome::Ready(_)));
        assert!(matches!(a.on_plan(plan(2, 0, 1000), t0), PlanOutcome::Duplicate(_)));
    }

    #[test]
    fn bad_inputs_are_dropped_with_a_reason() {
        let t0 = Instant::now();
        let mut a = Assembler::new(limits());
        a.on_plan(plan(1, 2, 1000), t0);
        assert!(matches!(
            a.on_input(b(1), input(5, 0), t0),
            InputOutcome::Dropped(DropReason::IndexOutOfRange { index: 5, items: 2 })
        ));
        assert!(matches!(a.on_input(b(1), input(0, 0), t0), InputOutcome::Stored));
        assert!(matches!(
            a.on_input(b(1), input(0, 0), t0),
            InputOutcome::Dropped(DropReason::Duplicate { index: 0 })
        ));
        assert!(matches!(a.on_plan(plan(1, 2, 1000), t0), PlanOutcome::Duplicate(_)));
    }

    #[test]
    fn plan_expires_after_budget_plus_grace_naming_the_missing_inputs() {
        let t0 = Instant::now();
        let mut a = Assembler::new(limits());
        a.on_plan(plan(1, 3, 5_000), t0);
        a.on_input(b(1), input(1, 0), t0);
        let deadline = t0 + Duration::from_millis(15);
        assert_eq!(a.poll_timeout(), Some(deadline));
        let early = a.handle_timeout(deadline - Duration::from_micros(1));
        assert!(early.expired.is_empty());
        let t = a.handle_timeout(deadline);
        assert_eq!(t.expired.len(), 1);
        assert_eq!(t.expired[0].missing(), [0, 2]);
        assert_eq!(t.expired[0].items, [None, Some(meta(1)), None]);
        assert_eq!(a.assembling(), 0);
        assert_eq!(a.poll_timeout(), None);
        assert!(matches!(
            a.on_input(b(1), input(0, 0), deadline),
            InputOutcome::Dropped(DropReason::Closed)
        ));
    }

    #[test]
    fn orphans_are_bounded_and_forgotten() {
        let t0 = Instant::now();
        let mut a = Assembler::new(limits());
        assert!(matches!(a.on_input(b(1), input(0, 0), t0), InputOutcome::Orphan));
        assert!(matches!(a.on_input(b(2), input(0, 0), t0), InputOutcome::Orphan));
        // Third batch: over max_orphan_batches.
        assert!(matches!(
            a.on_input(b(3), input(0, 0), t0),
            InputOutcome::Dropped(DropReason::OrphansFull)
        ));
        // Same batch, third byte fits; fourth does not (max_orphan_bytes = 3).
        assert!(matches!(a.on_input(b(2), input(1, 0), t0), InputOutcome::Orphan));
        assert!(matches!(
            a.on_input(b(2), input(2, 0), t0),
            InputOutcome::Dropped(DropReason::OrphansFull)
        ));
        let later = t0 + Duration::from_millis(100);
        assert_eq!(a.poll_timeout(), Some(later));
        let t = a.handle_timeout(later);
        let mut dropped = t.orphans_dropped.clone();
        dropped.sort();
        assert_eq!(dropped, [BatchUuid::from_u128(1), BatchUuid::from_u128(2)]);
        assert_eq!(a.orphan_batches(), 0);
        assert_eq!(a.poll_timeout(), None);
        // The space is free again.
        assert!(matches!(a.on_input(b(3), input(0, 0), later), InputOutcome::Orphan));
    }

    #[test]
    fn closed_memory_is_bounded() {
        let t0 = Instant::now();
        let mut a = Assembler::new(limits());
        for id in 1..=3 {
            assert!(matches!(a.on_plan(plan(id, 0, 0), t0), PlanOutcome::Ready(_)));
        }
        // closed_memory = 2: batch 1 is forgotten, 2 and 3 are remembered.
        assert!(matches!(a.on_input(b(1), input(0, 0), t0), InputOutcome::Orphan));
        assert!(matches!(
            a.on_input(b(3), input(0, 0), t0),
            InputOutcome::Dropped(DropReason::Closed)
        ));
    }

    #[test]
    fn a_revoked_batch_is_dropped_and_its_late_messages_too() {
        let t0 = Instant::now();
        let mut a = Assembler::new(limits());
        // Assembling: the plan is dropped, unanswered, and so are later inputs.
        assert!(matches!(a.on_plan(plan(1, 2, 1000), t0), PlanOutcome::Waiting));
        a.on_input(b(1), input(0, 0), t0);
        let RevokeOutcome::Dropped(p) = a.revoke(BatchUuid::from_u128(1), t0) else {
            panic!("an assembling batch is dropped");
        };
        assert_eq!(p.batch_id, BatchUuid::from_u128(1));
        assert_eq!(a.assembling(), 0);
        assert!(matches!(
            a.on_input(b(1), input(1, 0), t0),
            InputOutcome::Dropped(DropReason::Revoked)
        ));
        // Orphans only.
        a.on_input(b(2), input(0, 0), t0);
        assert!(matches!(
            a.revoke(BatchUuid::from_u128(2), t0),
            RevokeOutcome::OrphansDropped
        ));
        assert_eq!(a.orphan_batches(), 0);
        // Unknown: remembered, so a plan arriving after its revoke is not run.
        assert!(matches!(
            a.revoke(BatchUuid::from_u128(3), t0),
            RevokeOutcome::NotAssembling
        ));
        assert!(matches!(a.on_plan(plan(3, 0, 1000), t0), PlanOutcome::Revoked(_)));
        // Only `closed_memory` (2) ids are remembered, each for `revoked_ttl`.
        assert_eq!(a.revoked(), 2);
        let later = t0 + Duration::from_millis(1000);
        assert_eq!(a.poll_timeout(), Some(later));
        a.handle_timeout(later);
        assert_eq!(a.revoked(), 0);
        assert_eq!(a.poll_timeout(), None);
        assert!(matches!(a.on_plan(plan(3, 0, 1000), later), PlanOutcome::Ready(_)));
    }

    #[test]
    fn a_plan_with_parts_from_two_gateways_takes_each_gateways_inputs_at_their_offsets() {
        let t0 = Instant::now();
        let mut a = Assembler::new(limits());
        let two = BatchPlanMsg {
            parts: vec![
                PlanPart {
                    gateway: "g1".into(),
                    requests: vec![7, 8],
                },
                PlanPart {
                    gateway: "g2".into(),
                    requests: vec![3],
                },
            ],
            ..plan(1, 0, 1000)
        };
        // g2 ships its one request (offset 2) before the plan, g1 both of its own after it,
        // in one message each.
        assert!(matches!(a.on_input(b(1), input(2, 12), t0), InputOutcome::Orphan));
        assert!(matches!(a.on_plan(two, t0), PlanOutcome::Waiting));
        assert!(matches!(a.on_input(b(1), input(0, 10), t0), InputOutcome::Stored));
        let InputOutcome::Ready(ready) = a.on_input(b(1), input(1, 11), t0) else {
            panic!("g1's second input completes the batch");
        };
        assert_eq!(ready.items, [meta(0), meta(1), meta(2)]);
        let bytes: Vec<u8> = ready.inputs.iter().map(|i| i[0].data[0]).collect();
        assert_eq!(bytes, [10, 11, 12]);
    }

    #[test]
    fn a_declined_plan_closes_its_batch_unless_it_is_known() {
        let t0 = Instant::now();
        let mut a = Assembler::new(limits());
        // Its inputs came first: dropped with the plan, and later ones at once.
        a.on_input(b(1), input(0, 0), t0);
        assert!(matches!(a.decline(plan(1, 2, 1000)), DeclineOutcome::Declined(_)));
        assert_eq!(a.orphan_batches(), 0);
        assert!(matches!(
            a.on_input(b(1), input(1, 0), t0),
            InputOutcome::Dropped(DropReason::Closed)
        ));
        assert!(matches!(a.on_plan(plan(1, 2, 1000), t0), PlanOutcome::Duplicate(_)));
        // Already assembling: its requests will be answered by the batch, not declined twice.
        a.on_plan(plan(2, 1, 1000), t0);
        assert!(matches!(a.decline(plan(2, 1, 1000)), DeclineOutcome::Duplicate(_)));
        assert_eq!(a.assembling(), 1);
        // Revoked: the dispatcher has dealt with its requests.
        a.revoke(b(3), t0);
        assert!(matches!(a.decline(plan(3, 1, 1000)), DeclineOutcome::Revoked(_)));
    }

    #[test]
    fn huge_budgets_do_not_overflow() {
        let t0 = Instant::now();
        let mut a = Assembler::new(limits());
        a.on_plan(plan(1, 1, u64::MAX), t0);
        assert_eq!(a.poll_timeout(), Some(t0 + MAX_BUDGET + Duration::from_millis(10)));
    }
}
