//! The registry: which workers exist, and whether they are alive.
//!
//! Workers say hello when they start, heartbeat every ~250 ms and say
//! goodbye after draining. A worker whose heartbeats stop for
//! `dead_after` (three intervals by default) is declared dead, and the
//! dispatcher re-queues or rejects what it was running. A heartbeat from a
//! worker the registry does not know (the scheduler restarted, or the
//! worker's hello was lost) is answered with a request to say hello again,
//! so a restarted scheduler rebuilds its fleet without restarting workers.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::prelude::*;
use baton_common::control::{Goodbye, Heartbeat, WorkerHello, WorkerState};
use baton_common::ids::WorkerName;
use baton_common::subjects;
use bytes::Bytes;

use super::dispatcher::Dispatcher;
use super::messages::{WorkerDown, WorkerDraining, WorkerUp};
use super::outbox::Outbox;
use super::status::WorkerStatus;
use super::telemetry;

#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Hello(pub WorkerHello);

#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Beat(pub Heartbeat);

#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Bye(pub Goodbye);

#[derive(Debug, Message)]
#[rtype(result = "Vec<WorkerStatus>")]
pub struct ListWorkers;

#[derive(Debug)]
struct Known {
    hello: WorkerHello,
    state: WorkerState,
    last_seen: Instant,
}

#[derive(Debug)]
pub struct Registry {
    out: Outbox,
    dispatcher: Addr<Dispatcher>,
    dead_after: Duration,
    workers: HashMap<WorkerName, Known>,
    /// When each unknown worker was last asked to say hello (asked at most every `dead_after`).
    asked: HashMap<WorkerName, Instant>,
}

impl Registry {
    pub fn new(out: Outbox, dispatcher: Addr<Dispatcher>, dead_after: Duration) -> Self {
        Self {
            out,
            dispatcher,
            dead_after,
            workers: HashMap::new(),
            asked: HashMap::new(),
        }
    }

    fn gauge(&self) {
        let draining = self
            .workers
            .values()
            .filter(|k| k.state == WorkerState::Draining)
            .count();
        metrics::gauge!(telemetry::WORKERS, "state" => "ready").set((self.workers.len() - draining) as f64);
        metrics::gauge!(telemetry::WORKERS, "state" => "draining").set(draining as f64);
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let every = (self.dead_after / 6).max(Duration::from_millis(20));
        ctx.run_interval(every, |act, _| {
            let dead: Vec<WorkerName> = act
                .workers
                .iter()
                .filter(|(_, k)| k.last_seen.elapsed() > act.dead_after)
                .map(|(id, _)| id.clone())
                .collect();
            for id in dead {
                act.workers.remove(&id);
                metrics::counter!(telemetry::WORKERS_LOST).increment(1);
                tracing::warn!(worker = %id, after_ms = act.dead_after.as_millis() as u64, "no heartbeat: worker declared dead");
                act.dispatcher.do_send(WorkerDown { worker: id, lost: true });
            }
            act.gauge();
        });
    }
}

impl Handler<Hello> for Registry {
    type Result = ();

    fn handle(&mut self, Hello(h): Hello, _: &mut Context<Self>) {
        self.asked.remove(&h.worker_id);
        let known = match self.workers.get(&h.worker_id) {
            Some(k) if k.hello.instance != h.instance => {
                // Restarted under the same id: the old instance's batches are lost.
                tracing::warn!(worker = %h.worker_id, "worker restarted: its previous instance is lost");
                metrics::counter!(telemetry::WORKERS_LOST).increment(1);
                self.dispatcher.do_send(WorkerDown {
                    worker: h.worker_id.clone(),
                    lost: true,
                });
                false
            }
            Some(_) => true,
            None => false,
        };
        self.workers.insert(
            h.worker_id.clone(),
            Known {
                hello: h.clone(),
                state: WorkerState::Ready,
                last_seen: Instant::now(),
            },
        );
        if !known {
            self.dispatcher.do_send(WorkerUp(h));
        }
        self.gauge();
    }
}

impl Handler<Beat> for Registry {
    type Result = ();

    fn handle(&mut self, Beat(b): Beat, _: &mut Context<Self>) {
        match self.workers.get_mut(&b.worker_id) {
            Some(k) if k.hello.instance == b.instance => {
                k.last_seen = Instant::now();
                if b.state == WorkerState::Draining && k.state != WorkerState::Draining {
                    k.state = WorkerState::Draining;
                    self.dispatcher.do_send(WorkerDraining(b.worker_id));
                    self.gauge();
                }
            }
            _ => {
                // Unknown, or a new instance whose hello we missed: ask for one.
                let due = self
                    .asked
                    .get(&b.worker_id)
                    .is_none_or(|t| t.elapsed() > self.dead_after);
                if due && b.state == WorkerState::Ready {
                    self.asked.insert(b.worker_id.clone(), Instant::now());
                    let _ = self.out.send((subjects::worker_rehello(&b.worker_id), Bytes::new()));
                }
            }
        }
    }
}

impl Handler<Bye> for Registry {
    type Result = ();

    fn handle(&mut self, Bye(g): Bye, _: &mut Context<Self>) {
        if self.workers.remove(&g.worker_id).is_some() {
            self.dispatcher.do_send(WorkerDown {
                worker: g.worker_id,
                lost: false,
            });
            self.gauge();
        }
    }
}

impl Handler<ListWorkers> for Registry {
    type Result = MessageResult<ListWorkers>;

    fn handle(&mut self, _: ListWorkers, _: &mut Context<Self>) -> Self::Result {
        let mut v: Vec<WorkerStatus> = self
            .workers
            .iter()
            .map(|(id, k)| WorkerStatus {
                id: id.clone(),
                hardware: k.hello.hardware.clone(),
                backend: k.hello.backend.clone(),
                state: match k.state {
                    WorkerState::Ready => "ready".into(),
                    WorkerState::Draining => "draining".into(),
                },
                models: k.hello.models.iter().map(|m| m.name.clone()).collect(),
                inflight_batches: 0,
                last_seen_ms_ago: k.last_seen.elapsed().as_millis() as u64,
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        MessageResult(v)
    }
}
