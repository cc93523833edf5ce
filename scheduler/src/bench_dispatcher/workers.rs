//! The emulated workers of a dispatcher benchmark: as many as asked, in one task on one NATS
//! connection, making exactly the control traffic real workers make and nothing more.
//!
//! Each says hello (hellos paced at 5,000 per second, as `baton-worker fleet` does) and beats
//! every 250 ms, the beats of all workers spread evenly over the period. One wildcard
//! subscription takes every worker's plans; a plan "runs" for its profiled latency at its
//! batch size, after the worker's previous batch (a worker runs one batch at a time), and is
//! answered with a `BatchDone` when that time comes. The pending batches wait in one heap
//! that the task drains every millisecond, rather than a task or a timer per batch, so the
//! fleet's cost stays small next to the dispatcher's. No inputs ever come (there are no
//! payloads in this benchmark) and none are waited for.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use async_nats::Client;
use baton_common::control::{BatchDone, BatchPlanMsg, Heartbeat, WorkerHello, WorkerModel, WorkerState};
use baton_common::ids::WorkerName;
use baton_common::profile::Profile;
use baton_common::{subjects, wire};
use futures::StreamExt;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::gateways::{gateway_index, Gateway};
use super::pacing::Pacer;
use crate::runtime::status::LagHistogram;

/// Worker `i` is `bench-w<i>`.
const PREFIX: &str = "bench-w";

/// Hellos per second at start-up.
const HELLO_RATE: u64 = 5000;

/// The emulated fleet.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    pub count: usize,
    /// Worker `i` serves model `models[i % models.len()]` alone, so each model has
    /// `count / models.len()` workers (give or take one).
    pub models: Vec<String>,
    /// Every model's profile: what the workers announce, and how long they take.
    pub profile: Profile,
    pub heartbeat: Duration,
    /// The gateways, to look up when a request left its gateway.
    pub gateways: Vec<Arc<Gateway>>,
}

/// What the fleet has seen so far (read while it runs).
#[derive(Debug, Default)]
pub struct FleetStats {
    pub plans: AtomicU64,
    /// Requests in those plans.
    pub items: AtomicU64,
    pub done: AtomicU64,
    /// Batches the dispatcher withdrew: it declared a worker dead, which it should never do
    /// here (the run then measured a fleet that could not keep up with its heartbeats).
    pub revoked: AtomicU64,
    /// The registry asked a worker to say hello again.
    pub rehellos: AtomicU64,
    /// Plans for a worker that is not ours, or that did not decode.
    pub bad_plans: AtomicU64,
    /// For every full batch (of the profile's maximum size): from its last request leaving its
    /// gateway to the plan reaching its worker, in µs. Such a batch was complete when that
    /// request came, so this is how long the dispatcher took to react, plus two NATS hops; a
    /// batch that is not full may have waited on purpose.
    pub full_batch_delay: Mutex<LagHistogram>,
}

impl FleetStats {
    pub fn full_batch_delay(&self) -> LagHistogram {
        self.full_batch_delay.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The name of worker `i`.
pub fn worker_name(i: usize) -> WorkerName {
    WorkerName::new(format!("{PREFIX}{i}"))
}

/// The index of the worker a `baton.worker.<id>.<kind>` subject addresses, if it is one of ours.
fn worker_index(subject: &str, kind: &str) -> Option<usize> {
    subject
        .strip_prefix("baton.worker.")?
        .strip_suffix(kind)?
        .strip_suffix('.')?
        .strip_prefix(PREFIX)?
        .parse()
        .ok()
}

/// One emulated worker.
#[derive(Debug)]
struct Worker {
    hello: WorkerHello,
    /// When its last batch finishes.
    free_at: Instant,
    pending: u32,
}

/// A batch that finishes at `at`.
#[derive(Debug)]
struct Due {
    at: Instant,
    /// Ties broken in plan order.
    seq: u64,
    worker: usize,
    done: BatchDone,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// Runs the fleet on `client` until `stop` turns true.
pub async fn run(
    client: Client,
    spec: FleetSpec,
    stats: Arc<FleetStats>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let mut plans = client.subscribe("baton.worker.*.plan").await?;
    let mut rehello = client.subscribe("baton.worker.*.rehello").await?;
    let mut revoke = client.subscribe("baton.worker.*.revoke").await?;
    let start = Instant::now();
    let mut workers: Vec<Worker> = (0..spec.count)
        .map(|i| Worker {
            hello: WorkerHello {
                worker_id: worker_name(i),
                instance: uuid::Uuid::new_v4(),
                hardware: "bench".into(),
                backend: "emulated".into(),
                models: vec![WorkerModel {
                    name: spec.models[i % spec.models.len()].clone(),
                    profile: spec.profile.clone(),
                }],
            },
            free_at: start,
            pending: 0,
        })
        .collect();
    for (i, w) in workers.iter().enumerate() {
        client
            .publish(subjects::WORKER_HELLO, wire::encode(&w.hello).into())
            .await?;
        if (i as u64 + 1).is_multiple_of(HELLO_RATE / 100) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    let max_batch = spec.profile.max_batch();
    let mut beats = Pacer::new(spec.count as f64 / spec.heartbeat.as_secs_f64());
    let beats_start = Instant::now();
    let mut heap: BinaryHeap<Reverse<Due>> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = stop.changed() => {
                if *stop.borrow() {
                    return Ok(());
                }
            }
            Some(m) = plans.next() => {
                let (Some(i), Ok(plan)) = (
                    worker_index(m.subject.as_str(), "plan").filter(|&i| i < workers.len()),
                    wire::decode::<BatchPlanMsg>(&m.payload),
                ) else {
                    stats.bad_plans.fetch_add(1, Relaxed);
                    continue;
                };
                let n = plan.len() as u32;
                let exec = Duration::from_nanos(spec.profile.latency_ns(n.clamp(1, max_batch)).unwrap_or(0));
                let now = Instant::now();
                if n == max_batch {
                    // A gateway sends its requests in order: a part's last left with its highest.
                    let last = plan
                        .parts
                        .iter()
                        .filter_map(|p| {
                            let g = spec.gateways.get(gateway_index(p.gateway.as_str())?)?;
                            g.sent_at(*p.requests.iter().max()?)
                        })
                        .max();
                    if let Some(last) = last {
                        let delay = now.saturating_duration_since(last).as_micros() as u64;
                        stats.full_batch_delay.lock().unwrap_or_else(|e| e.into_inner()).record(delay);
                    }
                }
                let w = &mut workers[i];
                let begin = w.free_at.max(now);
                w.free_at = begin + exec;
                w.pending += 1;
                seq += 1;
                heap.push(Reverse(Due {
                    at: w.free_at,
                    seq,
                    worker: i,
                    done: BatchDone {
                        batch_id: plan.batch_id,
                        worker_id: w.hello.worker_id.clone(),
                        wait_us: (begin - now).as_micros() as u64,
                        exec_us: exec.as_micros() as u64,
                        batch_size: n,
                        failed: 0,
                    },
                }));
                stats.plans.fetch_add(1, Relaxed);
                stats.items.fetch_add(u64::from(n), Relaxed);
            }
            Some(m) = rehello.next() => {
                if let Some(w) = worker_index(m.subject.as_str(), "rehello").and_then(|i| workers.get(i)) {
                    stats.rehellos.fetch_add(1, Relaxed);
                    client.publish(subjects::WORKER_HELLO, wire::encode(&w.hello).into()).await?;
                }
            }
            Some(m) = revoke.next() => {
                let n = wire::decode::<baton_common::control::Revoke>(&m.payload).map_or(1, |r| r.batch_ids.len());
                stats.revoked.fetch_add(n as u64, Relaxed);
            }
            _ = tick.tick() => {
                let now = Instant::now();
                while heap.peek().is_some_and(|d| d.0.at <= now) {
                    let Reverse(d) = heap.pop().expect("peeked");
                    workers[d.worker].pending -= 1;
                    client.publish(subjects::BATCH_DONE, wire::encode(&d.done).into()).await?;
                    stats.done.fetch_add(1, Relaxed);
                }
                for k in beats.due(beats_start.elapsed()) {
                    let w = &workers[(k % spec.count as u64) as usize];
                    let beat = Heartbeat {
                        worker_id: w.hello.worker_id.clone(),
                        instance: w.hello.instance,
                        state: WorkerState::Ready,
                        pending_batches: w.pending,
                    };
                    client
                        .publish(subjects::WORKER_HEARTBEAT, wire::encode(&beat).into())
                        .await
                        .context("sending a heartbeat")?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_our_workers() {
        assert_eq!(worker_name(17).as_str(), "bench-w17");
        let plan = subjects::worker_plans(worker_name(17));
        assert_eq!(worker_index(&plan, "plan"), Some(17));
        assert_eq!(
            worker_index(&subjects::worker_rehello(worker_name(3)), "rehello"),
            Some(3)
        );
        assert_eq!(worker_index(&plan, "rehello"), None);
        assert_eq!(worker_index("baton.worker.other7.plan", "plan"), None);
        assert_eq!(worker_index("baton.worker.bench-wx.plan", "plan"), None);
        assert_eq!(worker_index("baton.worker.bench-w1plan", "plan"), None);
    }

    #[test]
    fn batches_finish_in_time_order() {
        let t = Instant::now();
        let due = |ms: u64, seq: u64| {
            Reverse(Due {
                at: t + Duration::from_millis(ms),
                seq,
                worker: 0,
                done: BatchDone {
                    batch_id: baton_common::ids::BatchUuid::from_u128(u128::from(seq)),
                    worker_id: worker_name(0),
                    wait_us: 0,
                    exec_us: 0,
                    batch_size: 1,
                    failed: 0,
                },
            })
        };
        let mut heap: BinaryHeap<_> = [due(5, 1), due(2, 2), due(5, 0), due(9, 3)].into();
        let order: Vec<u64> = std::iter::from_fn(|| heap.pop().map(|d| d.0.seq)).collect();
        assert_eq!(order, [2, 0, 1, 3]);
    }
}
