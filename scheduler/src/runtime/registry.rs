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
use uuid::Uuid;

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

/// What the registry keeps of a worker: its hello without the profiles (the dispatcher has
/// those), its state and when it was last heard from.
#[derive(Debug)]
struct Known {
    instance: Uuid,
    hardware: String,
    backend: String,
    models: Vec<String>,
    state: WorkerState,
    last_seen: Instant,
}

impl Known {
    fn new(h: &WorkerHello) -> Self {
        Known {
            instance: h.instance,
            hardware: h.hardware.clone(),
            backend: h.backend.clone(),
            models: h.models.iter().map(|m| m.name.clone()).collect(),
            state: WorkerState::Ready,
            last_seen: Instant::now(),
        }
    }
}

/// The known workers, with how many are draining counted as they change, so that every event
/// costs O(1) however large the fleet (recounting made N joins O(N²)). Every change of the map
/// or of a worker's state goes through these methods.
#[derive(Debug, Default)]
struct Workers {
    map: HashMap<WorkerName, Known>,
    draining: usize,
}

impl Workers {
    fn get(&self, id: &WorkerName) -> Option<&Known> {
        self.map.get(id)
    }

    fn ready(&self) -> usize {
        self.map.len() - self.draining
    }

    fn insert(&mut self, id: WorkerName, k: Known) {
        self.draining += usize::from(k.state == WorkerState::Draining);
        if let Some(old) = self.map.insert(id, k) {
            self.draining -= usize::from(old.state == WorkerState::Draining);
        }
    }

    fn remove(&mut self, id: &WorkerName) -> Option<Known> {
        let k = self.map.remove(id)?;
        self.draining -= usize::from(k.state == WorkerState::Draining);
        Some(k)
    }

    /// Marks `id` heard from now, if it is the instance `instance`; `None` if it is not known
    /// as that instance, else whether it has just started draining.
    fn beat(&mut self, id: &WorkerName, instance: Uuid, state: WorkerState) -> Option<bool> {
        let k = self.map.get_mut(id).filter(|k| k.instance == instance)?;
        k.last_seen = Instant::now();
        let drains = state == WorkerState::Draining && k.state != WorkerState::Draining;
        if drains {
            k.state = WorkerState::Draining;
            self.draining += 1;
        }
        Some(drains)
    }

    /// Workers not heard from for longer than `dead_after` (one pass over the fleet, once per
    /// check interval, not per event).
    fn silent(&self, dead_after: Duration) -> Vec<WorkerName> {
        self.map
            .iter()
            .filter(|(_, k)| k.last_seen.elapsed() > dead_after)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

#[derive(Debug)]
pub struct Registry {
    out: Outbox,
    dispatcher: Addr<Dispatcher>,
    dead_after: Duration,
    workers: Workers,
    /// When each unknown worker was last asked to say hello (asked at most every `dead_after`).
    asked: HashMap<WorkerName, Instant>,
}

impl Registry {
    pub fn new(out: Outbox, dispatcher: Addr<Dispatcher>, dead_after: Duration) -> Self {
        Self {
            out,
            dispatcher,
            dead_after,
            workers: Workers::default(),
            asked: HashMap::new(),
        }
    }

    fn gauge(&self) {
        metrics::gauge!(telemetry::WORKERS, "state" => "ready").set(self.workers.ready() as f64);
        metrics::gauge!(telemetry::WORKERS, "state" => "draining").set(self.workers.draining as f64);
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let every = (self.dead_after / 6).max(Duration::from_millis(20));
        ctx.run_interval(every, |act, _| {
            for id in act.workers.silent(act.dead_after) {
                act.workers.remove(&id);
                metrics::counter!(telemetry::WORKERS_LOST).increment(1);
                tracing::warn!(worker = %id, after_ms = act.dead_after.as_millis() as u64, "no heartbeat: worker declared dead");
                act.dispatcher.do_send(WorkerDown { worker: id, lost: true });
            }
            // Workers asked for a hello that never came (they are gone): forget them.
            let dead_after = act.dead_after;
            act.asked.retain(|_, t| t.elapsed() <= dead_after);
            act.gauge();
        });
    }
}

impl Handler<Hello> for Registry {
    type Result = ();

    fn handle(&mut self, Hello(h): Hello, _: &mut Context<Self>) {
        self.asked.remove(&h.worker_id);
        match self.workers.get(&h.worker_id) {
            // Said hello again (asked twice): the same worker, state and all.
            Some(k) if k.instance == h.instance => {
                self.workers.beat(&h.worker_id, h.instance, WorkerState::Ready);
                return;
            }
            Some(_) => {
                // Restarted under the same id: the old instance's batches are lost.
                tracing::warn!(worker = %h.worker_id, "worker restarted: its previous instance is lost");
                metrics::counter!(telemetry::WORKERS_LOST).increment(1);
                self.dispatcher.do_send(WorkerDown {
                    worker: h.worker_id.clone(),
                    lost: true,
                });
            }
            None => {}
        }
        self.workers.insert(h.worker_id.clone(), Known::new(&h));
        self.dispatcher.do_send(WorkerUp(h));
        self.gauge();
    }
}

impl Handler<Beat> for Registry {
    type Result = ();

    fn handle(&mut self, Beat(b): Beat, _: &mut Context<Self>) {
        match self.workers.beat(&b.worker_id, b.instance, b.state) {
            Some(true) => {
                self.dispatcher.do_send(WorkerDraining(b.worker_id));
                self.gauge();
            }
            Some(false) => {}
            None => {
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
            .map
            .iter()
            .map(|(id, k)| WorkerStatus {
                id: id.clone(),
                hardware: k.hardware.clone(),
                backend: k.backend.clone(),
                state: match k.state {
                    WorkerState::Ready => "ready".into(),
                    WorkerState::Draining => "draining".into(),
                },
                models: k.models.clone(),
                inflight_batches: 0,
                last_seen_ms_ago: k.last_seen.elapsed().as_millis() as u64,
            })
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        MessageResult(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn known(instance: u8, state: WorkerState) -> Known {
        Known {
            instance: Uuid::from_u128(u128::from(instance)),
            hardware: "cpu".into(),
            backend: "emulated".into(),
            models: vec!["m".into()],
            state,
            last_seen: Instant::now(),
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u8, bool),
        Remove(u8),
        Beat(u8, u8, bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Few ids and instances, so that events hit known workers, old instances and strangers.
        let (id, inst) = (0u8..8, 0u8..3);
        prop_oneof![
            (id.clone(), inst.clone(), any::<bool>()).prop_map(|(w, i, d)| Op::Insert(w, i, d)),
            id.clone().prop_map(Op::Remove),
            (id, inst, any::<bool>()).prop_map(|(w, i, d)| Op::Beat(w, i, d)),
        ]
    }

    proptest! {
        /// The kept counts equal a recount after any sequence of events.
        #[test]
        fn counts_match_a_recount(ops in proptest::collection::vec(op(), 0..200)) {
            let state = |d: bool| if d { WorkerState::Draining } else { WorkerState::Ready };
            let mut w = Workers::default();
            for op in ops {
                match op {
                    Op::Insert(id, i, d) => w.insert(WorkerName::new(format!("w{id}")), known(i, state(d))),
                    Op::Remove(id) => {
                        w.remove(&WorkerName::new(format!("w{id}")));
                    }
                    Op::Beat(id, i, d) => {
                        let name = WorkerName::new(format!("w{id}"));
                        let before = w.get(&name).map(|k| (k.instance, k.state));
                        let drains = w.beat(&name, Uuid::from_u128(u128::from(i)), state(d));
                        let same = before.is_some_and(|(inst, _)| inst == Uuid::from_u128(u128::from(i)));
                        prop_assert_eq!(drains.is_some(), same);
                        prop_assert_eq!(
                            drains == Some(true),
                            same && d && before.is_some_and(|(_, s)| s == WorkerState::Ready)
                        );
                    }
                }
                let draining = w.map.values().filter(|k| k.state == WorkerState::Draining).count();
                prop_assert_eq!(w.draining, draining);
                prop_assert_eq!(w.ready(), w.map.len() - draining);
            }
        }
    }
}
