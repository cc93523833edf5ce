//! The dispatcher: the actor that owns the sans-IO scheduling core and runs
//! it on the wall clock.
//!
//! It sees request metadata only (id, model, SLO, arrival time); tensors
//! stay in the gateway. Every message it handles is one input to the core
//! (arrival, `BatchDone`, a worker joining, draining or lost), after which
//! it carries out the core's actions (ship a plan through the gateway,
//! reject a request) and re-arms one timer for `poll_timeout`. Its inputs
//! and its orders to the gateway are the messages of `messages.rs`.

use std::collections::HashMap;
use std::time::Instant;

use actix::prelude::*;
use baton_common::ids::{BatchUuid, WorkerName};

use super::clock::Clock;
use super::gateway::Gateway;
use super::messages::{
    Arrive, Reject, Release, RevokeBatches, ServedModels, Ship, WorkerDown, WorkerDraining, WorkerUp,
};
use super::status::{ModelStatus, Status};
use super::telemetry;
use super::timer::PreciseTimer;
use crate::core::{
    Action, Arrival, BatchId, CoreConfig, LatencyTable, ModelId, ModelSpec, RequestId, Scheduler, Time, WorkerId,
};

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
    gateway: Addr<Gateway>,
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
    rejected: HashMap<crate::core::RejectReason, u64>,
    rate_mark: (Instant, u64),
    deltas: DeltaFit,
}

impl Dispatcher {
    /// A dispatcher acting through `gateway` (whose actor may start after this one).
    pub fn new(cfg: CoreConfig, clock: Clock, gateway: Addr<Gateway>) -> Self {
        Self {
            core: Scheduler::new(cfg),
            clock,
            gateway,
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
            rejected: HashMap::new(),
            rate_mark: (Instant::now(), 0),
            deltas: DeltaFit::default(),
        }
    }

    /// Carries out the core's decisions and re-arms the timer.
    fn settle(&mut self, ctx: &mut Context<Self>) {
        while let Some(a) = self.core.poll_action() {
            match a {
                Action::Dispatch(p) => {
                    // Random, not derived from the core's counter: a restarted scheduler
                    // counts from 0 again, and workers remember the batch ids they closed.
                    let uuid = BatchUuid::random();
                    let worker = self.worker_names[&p.worker].clone();
                    let model = self.model_names[p.model.0 as usize].clone();
                    let requests = p.requests.clone();
                    metrics::histogram!(telemetry::BATCH_SIZE, "model" => model.clone()).record(requests.len() as f64);
                    metrics::counter!(telemetry::BATCHES, "model" => model.clone()).increment(1);
                    self.batches_total += 1;
                    self.gateway.do_send(Ship {
                        batch: uuid,
                        worker,
                        model,
                        requests: requests.clone(),
                        deadline: p.deadline,
                        late: p.late,
                    });
                    self.by_uuid.insert(uuid, p.batch_id);
                    self.batches.insert(
                        p.batch_id,
                        Batch {
                            uuid,
                            worker: p.worker,
                            requests,
                            sent_at: p.sent_at,
                            exec_at: p.exec_at,
                        },
                    );
                }
                Action::Reject { request, model, reason } => {
                    *self.rejected.entry(reason).or_default() += 1;
                    let name = self.model_names.get(model.0 as usize).cloned().unwrap_or_default();
                    self.gateway.do_send(Reject {
                        request,
                        reason: reason.into(),
                        message: explain(reason, &name),
                    });
                }
            }
        }
        self.arm(ctx);
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
        m
    }

    /// Tells the gateway which models a live worker serves.
    fn publish_served(&self) {
        let mut served = HashMap::new();
        for (w, models) in &self.worker_models {
            if !self.core.has_worker(*w) {
                continue;
            }
            for m in models {
                served.insert(self.model_names[m.0 as usize].clone(), *m);
            }
        }
        self.gateway.do_send(ServedModels(served));
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
        ctx.run_interval(GAUGE_EVERY, |act, _| act.export_gauges());
    }
}

impl Handler<Tick> for Dispatcher {
    type Result = ();

    fn handle(&mut self, _: Tick, ctx: &mut Context<Self>) {
        let now = self.clock.now();
        if let Some(at) = self.armed.take() {
            metrics::histogram!(telemetry::DISPATCHER_LAG).record((now - at).max(0) as f64 * 1e-9);
        }
        self.core.handle_timeout(now);
        self.settle(ctx);
    }
}

impl Handler<Arrive> for Dispatcher {
    type Result = ();

    fn handle(&mut self, a: Arrive, ctx: &mut Context<Self>) {
        let now = self.clock.now();
        // The SLO counts from when the gateway received the request.
        let slo = a.slo - (now - a.received).max(0);
        self.core.on_arrival(
            Arrival {
                id: a.id,
                model: a.model,
                slo: Some(slo),
            },
            now,
        );
        self.settle(ctx);
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
            .map(|m| self.model_id(&m.name, m.profile.latency_table()))
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
        self.publish_served();
        self.settle(ctx);
    }
}

impl Handler<WorkerDraining> for Dispatcher {
    type Result = ();

    fn handle(&mut self, m: WorkerDraining, ctx: &mut Context<Self>) {
        let Some(&w) = self.worker_ids.get(&m.0) else { return };
        if self.core.drain_worker(w).is_ok() {
            tracing::info!(worker = %m.0, "worker draining");
            self.publish_served();
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
        // Fence: their requests are answered (or re-planned) here now, so the worker must not
        // run these batches should their plans still reach it (e.g. after a NATS stall). Sent
        // before the rejections below, after the plans (the gateway's outbox keeps the order).
        if !revoked.is_empty() {
            tracing::info!(worker = %m.worker, batches = revoked.len(), "revoking the worker's outstanding batches");
            self.gateway.do_send(RevokeBatches {
                worker: m.worker.clone(),
                batches: revoked,
            });
        }
        // Its series stays in the exporter: say it runs nothing rather than its last count.
        metrics::gauge!(telemetry::WORKER_BATCHES, "worker" => m.worker.to_string()).set(0.0);
        if m.lost {
            tracing::warn!(worker = %m.worker, "worker lost");
        } else {
            tracing::info!(worker = %m.worker, "worker left");
        }
        self.publish_served();
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
        self.gateway.do_send(Release(b.requests));
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
                    workers: self.worker_models.values().filter(|ms| ms.contains(&m)).count(),
                }
            })
            .collect();
        let mut dropped: Vec<(String, u64)> = self
            .rejected
            .iter()
            .map(|(r, n)| (r.as_str().to_string(), *n))
            .collect();
        dropped.sort();
        MessageResult(Status {
            uptime_s: self.clock.now() as f64 * 1e-9,
            workers: Vec::new(),
            models,
            dispatches_per_s: dps,
            batches_total: self.batches_total,
            dropped_by_reason: dropped,
            held_requests: 0,
            measured_delta_ctrl_us: self.deltas.fit().map(|f| f.0),
            measured_delta_data_us: self.deltas.fit().map(|f| f.1),
            intake: Default::default(),
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
