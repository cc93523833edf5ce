//! The dispatcher: the actor that owns the sans-IO scheduling core and runs
//! it on the wall clock.
//!
//! It is the control plane alone: it sees request metadata only (the gateway's number for a
//! request, its model, its remaining budget), batched in [`Arrivals`] messages; tensors and
//! clients' inboxes stay in the gateways. Every message it handles is input to the core
//! (arrivals, `BatchDone`, a worker joining, draining or lost, a gateway lost), after which it
//! carries out the core's actions and re-arms one timer for `poll_timeout`: a batch becomes a
//! plan for its worker and one shipping order per gateway that holds some of its requests; a
//! rejection becomes a reject order to the request's gateway. The orders of one pass go to each
//! gateway as one [`GatewayOrders`] message.
//!
//! A request is known to the core as `RequestId(gateway index << 40 | gateway's number)`, so no
//! per-request map is needed to find its gateway again. A gateway that falls silent for
//! `scheduler.gateway_dead_after_ms` is forgotten: its requests still in the core are left out
//! of the plans they fall into and their rejections are not sent (nobody could deliver them).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use baton_common::control::{
    Arrivals, BatchPlanMsg, GatewayBeat, GatewayOrders, PlanPart, RejectOrder, Revoke, ShipOrder,
};
use baton_common::ids::{BatchUuid, GatewayName, WorkerName};
use baton_common::subjects;
use baton_common::wire::{self, RejectReason};
use bytes::Bytes;
use uuid::Uuid;

use super::clock::Clock;
use super::messages::{WorkerDown, WorkerDraining, WorkerUp};
use super::outbox::Outbox;
use super::status::{GatewayStatus, LagHistogram, ModelStatus, Status};
use super::telemetry;
use super::timer::PreciseTimer;
use crate::core::{
    Action, Arrival, BatchId, CoreConfig, LatencyTable, ModelId, ModelSpec, RequestId, Scheduler, Time, WorkerId,
};

/// Arrivals from a gateway.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ArrivalBatch(pub Arrivals);

/// A gateway's heartbeat.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct GatewayAlive(pub GatewayBeat);

/// Bits of a core `RequestId` that hold the gateway's number for the request.
const REQUEST_BITS: u32 = 40;

fn request_id(gateway: u32, request: u64) -> RequestId {
    RequestId((u64::from(gateway) << REQUEST_BITS) | (request & ((1 << REQUEST_BITS) - 1)))
}

fn split(id: RequestId) -> (u32, u64) {
    ((id.0 >> REQUEST_BITS) as u32, id.0 & ((1 << REQUEST_BITS) - 1))
}

#[derive(Debug)]
struct GatewayEntry {
    name: GatewayName,
    instance: Uuid,
    orders: String,
    last_seen: Instant,
    alive: bool,
    beat: Option<GatewayBeat>,
    /// Requests of this gateway the dispatcher has taken and not finished with.
    inflight: u64,
}

/// A worker finished a batch.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Done {
    pub batch: BatchUuid,
    /// How long the batch ran on the worker.
    pub exec_us: u64,
    /// From the plan reaching the worker to the batch starting.
    pub wait_us: u64,
}

/// The precise timer fired.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Tick;

/// A status snapshot of the core.
#[derive(Debug, Message)]
#[rtype(result = "Status")]
pub struct GetStatus;

#[derive(Debug)]
struct Batch {
    uuid: BatchUuid,
    worker: WorkerId,
    requests: Vec<RequestId>,
    sent_at: Time,
    /// When the core planned it to start (the GPU may have been busy).
    exec_at: Time,
}

/// Least-squares fit of plan-to-start delay = δ_ctrl + b·δ_data, from
/// batches that started as soon as they could (their GPU was idle), on the
/// scheduler's clock alone: start ≈ `BatchDone` received − execution time.
#[derive(Debug, Default, Clone, Copy)]
struct DeltaFit {
    n: f64,
    sb: f64,
    sbb: f64,
    sd: f64,
    sbd: f64,
}

impl DeltaFit {
    fn add(&mut self, b: f64, delay: f64) {
        self.n += 1.0;
        self.sb += b;
        self.sbb += b * b;
        self.sd += delay;
        self.sbd += b * delay;
    }

    /// (δ_ctrl, δ_data) in µs, once there is enough spread in batch sizes.
    fn fit(&self) -> Option<(f64, f64)> {
        let den = self.n * self.sbb - self.sb * self.sb;
        if self.n < 10.0 || den.abs() < 1e-9 {
            return (self.n >= 1.0).then(|| (self.sd / self.n, 0.0));
        }
        let slope = (self.n * self.sbd - self.sb * self.sd) / den;
        let intercept = (self.sd - slope * self.sb) / self.n;
        Some((intercept, slope))
    }
}

#[derive(Debug)]
pub struct Dispatcher {
    core: Scheduler,
    clock: Clock,
    out: Outbox,
    gateway_dead_after: Duration,
    gateways: Vec<GatewayEntry>,
    gateway_index: HashMap<GatewayName, u32>,
    /// Live (not draining) workers per model: a model without one is not served.
    model_workers: Vec<u32>,
    lag: LagHistogram,
    arrivals_total: u64,
    arrival_messages: u64,
    model_ids: HashMap<String, ModelId>,
    model_names: Vec<String>,
    worker_ids: HashMap<WorkerName, WorkerId>,
    worker_names: HashMap<WorkerId, WorkerName>,
    worker_models: HashMap<WorkerId, Vec<ModelId>>,
    next_worker: u64,
    batches: HashMap<BatchId, Batch>,
    by_uuid: HashMap<BatchUuid, BatchId>,
    /// The wake-up currently armed, and the thread that keeps it.
    armed: Option<Time>,
    timer: Option<PreciseTimer>,
    batches_total: u64,
    draining: std::collections::HashSet<WorkerId>,
    rejected: HashMap<crate::core::RejectReason, u64>,
    rate_mark: (Instant, u64),
    deltas: DeltaFit,
}

impl Dispatcher {
    /// A dispatcher publishing its plans and orders through `out`.
    pub fn new(cfg: CoreConfig, clock: Clock, out: Outbox, gateway_dead_after: Duration) -> Self {
        Self {
            core: Scheduler::new(cfg),
            clock,
            out,
            gateway_dead_after,
            gateways: Vec::new(),
            gateway_index: HashMap::new(),
            model_workers: Vec::new(),
            lag: LagHistogram::default(),
            arrivals_total: 0,
            arrival_messages: 0,
            model_ids: HashMap::new(),
            model_names: Vec::new(),
            worker_ids: HashMap::new(),
            worker_names: HashMap::new(),
            worker_models: HashMap::new(),
            next_worker: 0,
            batches: HashMap::new(),
            by_uuid: HashMap::new(),
            armed: None,
            timer: None,
            batches_total: 0,
            draining: Default::default(),
            rejected: HashMap::new(),
            rate_mark: (Instant::now(), 0),
            deltas: DeltaFit::default(),
        }
    }

    fn publish(&self, subject: String, body: Vec<u8>) {
        let _ = self.out.send((subject, Bytes::from(body)));
    }

    /// Carries out the core's decisions and re-arms the timer.
    fn settle(&mut self, ctx: &mut Context<Self>) {
        let mut orders: HashMap<u32, GatewayOrders> = HashMap::new();
        let now = self.clock.now();
        while let Some(a) = self.core.poll_action() {
            match a {
                Action::Dispatch(p) => {
                    // Group the batch's requests by gateway, leaving out those of gateways
                    // that are gone (nobody holds their inputs any more).
                    let mut parts: Vec<(u32, Vec<u64>)> = Vec::new();
                    let mut kept = Vec::with_capacity(p.requests.len());
                    for &r in &p.requests {
                        let (g, n) = split(r);
                        if !self.gateways.get(g as usize).is_some_and(|e| e.alive) {
                            continue;
                        }
                        kept.push(r);
                        match parts.iter_mut().find(|(pg, _)| *pg == g) {
                            Some((_, v)) => v.push(n),
                            None => parts.push((g, vec![n])),
                        }
                    }
                    if parts.is_empty() {
                        let _ = self.core.on_batch_done(p.batch_id, now);
                        continue;
                    }
                    // Random, not derived from the core's counter: a restarted scheduler
                    // counts from 0 again, and workers remember the batch ids they closed.
                    let uuid = BatchUuid::random();
                    let worker = self.worker_names[&p.worker].clone();
                    let model = self.model_names[p.model.0 as usize].clone();
                    metrics::histogram!(telemetry::BATCH_SIZE, "model" => model.clone()).record(kept.len() as f64);
                    metrics::counter!(telemetry::BATCHES, "model" => model.clone()).increment(1);
                    self.batches_total += 1;
                    let mut offset = 0u32;
                    for (g, requests) in &parts {
                        orders.entry(*g).or_default().ships.push(ShipOrder {
                            batch_id: uuid,
                            worker: worker.clone(),
                            offset,
                            requests: requests.clone(),
                        });
                        offset += requests.len() as u32;
                    }
                    let plan = BatchPlanMsg {
                        batch_id: uuid,
                        model,
                        parts: parts
                            .into_iter()
                            .map(|(g, requests)| PlanPart {
                                gateway: self.gateways[g as usize].name.clone(),
                                requests,
                            })
                            .collect(),
                        budget_us: ((p.deadline - now).max(0) / 1000) as u64,
                        late: p.late,
                    };
                    self.publish(subjects::worker_plans(&worker), wire::encode(&plan));
                    self.by_uuid.insert(uuid, p.batch_id);
                    self.batches.insert(
                        p.batch_id,
                        Batch {
                            uuid,
                            worker: p.worker,
                            requests: kept,
                            sent_at: p.sent_at,
                            exec_at: p.exec_at,
                        },
                    );
                }
                Action::Reject { request, model, reason } => {
                    *self.rejected.entry(reason).or_default() += 1;
                    let (g, n) = split(request);
                    let Some(gw) = self.gateways.get_mut(g as usize).filter(|e| e.alive) else {
                        continue;
                    };
                    gw.inflight = gw.inflight.saturating_sub(1);
                    let name = self.model_names.get(model.0 as usize).cloned().unwrap_or_default();
                    orders.entry(g).or_default().rejects.push(RejectOrder {
                        request: n,
                        reason: reason.into(),
                        message: explain(reason, &name),
                    });
                }
            }
        }
        for (g, mut o) in orders {
            let gw = &self.gateways[g as usize];
            o.instance = gw.instance;
            self.publish(gw.orders.clone(), wire::encode(&o));
        }
        self.arm(ctx);
    }

    /// The index of gateway `name` (instance `instance`), registering it if it is new; a new
    /// instance of a known name replaces the old one, whose requests are forgotten.
    fn gateway(&mut self, name: &GatewayName, instance: Uuid) -> u32 {
        if let Some(&g) = self.gateway_index.get(name) {
            let e = &mut self.gateways[g as usize];
            if e.instance == instance {
                e.last_seen = Instant::now();
                return g;
            }
            tracing::warn!(gateway = %name, "gateway restarted: forgetting the requests its previous run held");
            e.alive = false;
        }
        let g = self.gateways.len() as u32;
        tracing::info!(gateway = %name, "gateway joined");
        self.gateways.push(GatewayEntry {
            name: name.clone(),
            instance,
            orders: subjects::gateway_orders(name),
            last_seen: Instant::now(),
            alive: true,
            beat: None,
            inflight: 0,
        });
        self.gateway_index.insert(name.clone(), g);
        g
    }

    /// Declares gateways silent for too long dead.
    fn check_gateways(&mut self) {
        let dead_after = self.gateway_dead_after;
        for (g, e) in self.gateways.iter_mut().enumerate().filter(|(_, e)| e.alive) {
            if e.last_seen.elapsed() <= dead_after {
                continue;
            }
            if e.beat.as_ref().is_some_and(|b| b.leaving) {
                tracing::info!(gateway = %e.name, requests = e.inflight, "gateway left");
            } else {
                tracing::warn!(gateway = %e.name, requests = e.inflight, "gateway lost: forgetting its requests");
                metrics::counter!(telemetry::GATEWAYS_LOST).increment(1);
            }
            e.alive = false;
            e.inflight = 0;
            if self.gateway_index.get(&e.name) == Some(&(g as u32)) {
                self.gateway_index.remove(&e.name);
            }
        }
    }

    fn arm(&mut self, ctx: &mut Context<Self>) {
        let next = self.core.poll_timeout();
        if self.armed == next {
            return;
        }
        self.armed = next;
        let timer = self.timer.get_or_insert_with(|| {
            let me = ctx.address();
            PreciseTimer::spawn(move || me.do_send(Tick))
        });
        timer.arm(next.map(|t| self.clock.instant(t)));
    }

    fn model_id(&mut self, name: &str, latency: LatencyTable) -> ModelId {
        if let Some(&m) = self.model_ids.get(name) {
            return m;
        }
        let m = self.core.add_model(ModelSpec {
            name: name.to_string(),
            latency,
            // Requests always bring their SLO (the gateway fills in its default).
            slo: 100 * crate::core::MS,
        });
        self.model_ids.insert(name.to_string(), m);
        self.model_names.push(name.to_string());
        self.model_workers.push(0);
        m
    }

    /// The models some live worker serves, for an error message.
    fn served_models(&self) -> String {
        let mut served: Vec<&str> = self
            .model_names
            .iter()
            .zip(&self.model_workers)
            .filter(|(_, &n)| n > 0)
            .map(|(m, _)| m.as_str())
            .collect();
        served.sort_unstable();
        served.join(", ")
    }

    /// Counts `w`'s models as served (`+1`) or no longer (`-1`).
    fn count_served(&mut self, w: WorkerId, delta: i32) {
        for m in self.worker_models.get(&w).into_iter().flatten() {
            let n = &mut self.model_workers[m.0 as usize];
            *n = n.saturating_add_signed(delta);
        }
    }
}

fn explain(reason: crate::core::RejectReason, model: &str) -> String {
    use crate::core::RejectReason;
    match reason {
        RejectReason::DeadlineUnattainable => format!(
            "model `{model}` cannot finish this request within its SLO at the current load; \
             raise slo_ms or add workers"
        ),
        RejectReason::WorkerLost => {
            format!("the worker running this `{model}` request was lost and too little of its SLO remained to retry")
        }
        other => format!("{other}"),
    }
}

/// How often the queue and occupancy gauges are refreshed: autoscalers read them, so they must
/// be current whether or not anyone asks for status.
const GAUGE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Dispatcher {
    /// Batches in flight per registered worker (0 for idle ones).
    fn inflight_by_worker(&self) -> HashMap<WorkerName, usize> {
        let mut m: HashMap<WorkerName, usize> = self.worker_names.values().map(|n| (n.clone(), 0)).collect();
        for b in self.batches.values() {
            if let Some(n) = self.worker_names.get(&b.worker) {
                *m.entry(n.clone()).or_default() += 1;
            }
        }
        m
    }

    /// Sets the queue-depth and occupancy gauges from the core's state.
    fn export_gauges(&self) {
        for (i, name) in self.model_names.iter().enumerate() {
            metrics::gauge!(telemetry::QUEUE_DEPTH, "model" => name.clone())
                .set(self.core.queue_len(ModelId(i as u32)) as f64);
        }
        for (w, n) in self.inflight_by_worker() {
            metrics::gauge!(telemetry::WORKER_BATCHES, "worker" => String::from(w)).set(n as f64);
        }
    }
}

impl Actor for Dispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(4096);
        ctx.run_interval(GAUGE_EVERY, |act, _| act.export_gauges());
        let check = (self.gateway_dead_after / 3).max(Duration::from_millis(10));
        ctx.run_interval(check, |act, _| act.check_gateways());
    }
}

impl Handler<Tick> for Dispatcher {
    type Result = ();

    fn handle(&mut self, _: Tick, ctx: &mut Context<Self>) {
        let now = self.clock.now();
        if let Some(at) = self.armed.take() {
            let lag = (now - at).max(0);
            self.lag.record((lag / 1000) as u64);
            metrics::histogram!(telemetry::DISPATCHER_LAG).record(lag as f64 * 1e-9);
        }
        self.core.handle_timeout(now);
        self.settle(ctx);
    }
}

impl Handler<ArrivalBatch> for Dispatcher {
    type Result = ();

    fn handle(&mut self, ArrivalBatch(a): ArrivalBatch, ctx: &mut Context<Self>) {
        let now = self.clock.now();
        let g = self.gateway(&a.gateway, a.instance);
        // The message's model table, resolved once: `None` for a model no live worker serves.
        let models: Vec<Option<ModelId>> = a
            .models
            .iter()
            .map(|name| {
                self.model_ids
                    .get(name)
                    .copied()
                    .filter(|m| self.model_workers[m.0 as usize] > 0)
            })
            .collect();
        let mut rejects = Vec::new();
        let mut served: Option<String> = None;
        let mut taken = 0u64;
        for item in &a.items {
            match models.get(item.model() as usize).copied().flatten() {
                Some(model) => {
                    taken += 1;
                    self.core.on_arrival(
                        Arrival {
                            id: request_id(g, item.request()),
                            model,
                            // The budget left when the gateway sent it.
                            slo: Some(item.budget_us().min(u64::MAX / 2_000) as Time * 1000),
                        },
                        now,
                    );
                }
                None => {
                    let name = a.models.get(item.model() as usize).map_or("?", String::as_str);
                    *self
                        .rejected
                        .entry(crate::core::RejectReason::UnknownModel)
                        .or_default() += 1;
                    let served = served.get_or_insert_with(|| self.served_models());
                    rejects.push(RejectOrder {
                        request: item.request(),
                        reason: RejectReason::UnknownModel,
                        message: if served.is_empty() {
                            format!("model `{name}` is not served: no worker is registered yet")
                        } else {
                            format!("model `{name}` is not served by any worker; served models: {served}")
                        },
                    });
                }
            }
        }
        self.arrivals_total += a.items.len() as u64;
        self.arrival_messages += 1;
        self.gateways[g as usize].inflight += taken;
        if !rejects.is_empty() {
            let gw = &self.gateways[g as usize];
            let orders = GatewayOrders {
                instance: gw.instance,
                ships: Vec::new(),
                rejects,
            };
            self.publish(gw.orders.clone(), wire::encode(&orders));
        }
        self.settle(ctx);
    }
}

impl Handler<GatewayAlive> for Dispatcher {
    type Result = ();

    fn handle(&mut self, GatewayAlive(beat): GatewayAlive, _: &mut Context<Self>) {
        let g = self.gateway(&beat.gateway, beat.instance);
        self.gateways[g as usize].beat = Some(beat);
    }
}

impl Handler<WorkerUp> for Dispatcher {
    type Result = ();

    fn handle(&mut self, WorkerUp(hello): WorkerUp, ctx: &mut Context<Self>) {
        if self.worker_ids.contains_key(&hello.worker_id) {
            return;
        }
        let models: Vec<ModelId> = hello
            .models
            .iter()
            // A known model keeps its table: build one only for a new model (the profile holds
            // up to 256 batch sizes, and 10,000 workers may say hello within seconds).
            .map(|m| match self.model_ids.get(&m.name) {
                Some(&id) => id,
                None => self.model_id(&m.name, m.profile.latency_table()),
            })
            .collect();
        let w = WorkerId(self.next_worker);
        self.next_worker += 1;
        let now = self.clock.now();
        if let Err(e) = self.core.add_worker(w, &models, now) {
            tracing::error!(worker = %hello.worker_id, "cannot add worker: {e}");
            return;
        }
        tracing::info!(worker = %hello.worker_id, hardware = %hello.hardware, models = ?hello.models.iter().map(|m| &m.name).collect::<Vec<_>>(), "worker joined");
        self.worker_ids.insert(hello.worker_id.clone(), w);
        self.worker_names.insert(w, hello.worker_id);
        self.worker_models.insert(w, models);
        self.count_served(w, 1);
        self.settle(ctx);
    }
}

impl Handler<WorkerDraining> for Dispatcher {
    type Result = ();

    fn handle(&mut self, m: WorkerDraining, ctx: &mut Context<Self>) {
        let Some(&w) = self.worker_ids.get(&m.0) else { return };
        if self.core.drain_worker(w).is_ok() && self.draining.insert(w) {
            tracing::info!(worker = %m.0, "worker draining");
            self.count_served(w, -1);
            self.settle(ctx);
        }
    }
}

impl Handler<WorkerDown> for Dispatcher {
    type Result = ();

    fn handle(&mut self, m: WorkerDown, ctx: &mut Context<Self>) {
        let Some(w) = self.worker_ids.remove(&m.worker) else {
            return;
        };
        self.worker_names.remove(&w);
        if !self.draining.remove(&w) {
            self.count_served(w, -1);
        }
        self.worker_models.remove(&w);
        let now = self.clock.now();
        let _ = self.core.remove_worker(w, now);
        // The core re-queued or rejected what was in flight there.
        let lost: Vec<BatchId> = self
            .batches
            .iter()
            .filter(|(_, b)| b.worker == w)
            .map(|(&id, _)| id)
            .collect();
        let mut revoked = Vec::with_capacity(lost.len());
        for id in lost {
            if let Some(b) = self.batches.remove(&id) {
                self.by_uuid.remove(&b.uuid);
                revoked.push(b.uuid);
            }
        }
        // Fence: their requests are re-planned or rejected now, so the worker should not run
        // these batches should their plans still reach it (e.g. after a NATS stall); sent
        // through the outbox after the plans. If it runs one anyway, the gateways drop its
        // answers to requests already answered.
        if !revoked.is_empty() {
            tracing::info!(worker = %m.worker, batches = revoked.len(), "revoking the worker's outstanding batches");
            let msg = Revoke { batch_ids: revoked };
            self.publish(subjects::worker_revoke(&m.worker), wire::encode(&msg));
        }
        // Its series stays in the exporter: say it runs nothing rather than its last count.
        metrics::gauge!(telemetry::WORKER_BATCHES, "worker" => m.worker.to_string()).set(0.0);
        if m.lost {
            tracing::warn!(worker = %m.worker, "worker lost");
        } else {
            tracing::info!(worker = %m.worker, "worker left");
        }
        self.settle(ctx);
    }
}

impl Handler<Done> for Dispatcher {
    type Result = ();

    fn handle(&mut self, d: Done, ctx: &mut Context<Self>) {
        let Some(id) = self.by_uuid.remove(&d.batch) else {
            return;
        };
        let Some(b) = self.batches.remove(&id) else { return };
        let now = self.clock.now();
        let b_size = b.requests.len() as f64;
        let started = now - d.exec_us as Time * 1000;
        // Only batches planned to start right away measure delivery, not a busy GPU.
        if b.exec_at - b.sent_at <= (self.core.config().deltas.lead(b.requests.len() as u32)) {
            let delay_us = (started - b.sent_at).max(0) as f64 / 1e3;
            tracing::debug!(batch = b_size, delay_us, worker_wait_us = d.wait_us, "plan to start");
            self.deltas.add(b_size, delay_us);
            metrics::histogram!(telemetry::PLAN_TO_START).record(delay_us * 1e-6);
        }
        // A batch the worker declined or could not assemble did not run (exec_us 0).
        if let Some(name) = self.worker_names.get(&b.worker).filter(|_| d.exec_us > 0) {
            metrics::histogram!(telemetry::WORKER_EXEC, "worker" => name.to_string()).record(d.exec_us as f64 * 1e-6);
        }
        let _ = self.core.on_batch_done_after(id, d.exec_us as Time * 1000, now);
        for r in &b.requests {
            if let Some(gw) = self.gateways.get_mut(split(*r).0 as usize).filter(|e| e.alive) {
                gw.inflight = gw.inflight.saturating_sub(1);
            }
        }
        self.settle(ctx);
    }
}

impl Handler<GetStatus> for Dispatcher {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Context<Self>) -> Self::Result {
        let (t0, n0) = self.rate_mark;
        let secs = t0.elapsed().as_secs_f64().max(1e-3);
        let dps = (self.batches_total - n0) as f64 / secs;
        self.rate_mark = (Instant::now(), self.batches_total);
        let models = self
            .model_names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let m = ModelId(i as u32);
                ModelStatus {
                    name: name.clone(),
                    queue_depth: self.core.queue_len(m),
                    rate_rps: self.core.rate(m),
                    b_target: self.core.b_target(m).unwrap_or(0),
                    workers: self.model_workers[i] as usize,
                }
            })
            .collect();
        let mut dropped: Vec<(String, u64)> = self
            .rejected
            .iter()
            .map(|(r, n)| (r.as_str().to_string(), *n))
            .collect();
        dropped.sort();
        let gateways: Vec<GatewayStatus> = self
            .gateways
            .iter()
            .filter(|e| e.alive)
            .map(|e| GatewayStatus {
                id: e.name.to_string(),
                held_requests: e.beat.as_ref().map_or(0, |b| b.held_requests),
                held_bytes: e.beat.as_ref().map_or(0, |b| b.held_bytes),
                duplicates_dropped: e.beat.as_ref().map_or(0, |b| b.duplicates_dropped),
                last_seen_ms_ago: e.last_seen.elapsed().as_millis() as u64,
                inflight_requests: e.inflight,
            })
            .collect();
        MessageResult(Status {
            uptime_s: self.clock.now() as f64 * 1e-9,
            workers: Vec::new(),
            models,
            dispatches_per_s: dps,
            batches_total: self.batches_total,
            dropped_by_reason: dropped,
            held_requests: gateways.iter().map(|g| g.held_requests as usize).sum(),
            inflight_requests: gateways.iter().map(|g| g.inflight_requests).sum(),
            gateways,
            timer_lag: self.lag.clone(),
            arrivals_total: self.arrivals_total,
            arrival_messages_total: self.arrival_messages,
            measured_delta_ctrl_us: self.deltas.fit().map(|f| f.0),
            measured_delta_data_us: self.deltas.fit().map(|f| f.1),
            intake: Default::default(),
            // The workers and their counts come from the registry (the status handler, mod.rs).
            ..Default::default()
        })
    }
}

/// Batches in flight per worker name (for status and occupancy metrics).
#[derive(Debug, Message)]
#[rtype(result = "HashMap<WorkerName, usize>")]
pub struct InflightByWorker;

impl Handler<InflightByWorker> for Dispatcher {
    type Result = MessageResult<InflightByWorker>;

    fn handle(&mut self, _: InflightByWorker, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.inflight_by_worker())
    }
}
