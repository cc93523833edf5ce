//! The emulated gateways of a dispatcher benchmark: request metadata out, orders in, and the
//! ledger of what became of every request.
//!
//! A real gateway decodes a client's request, holds its payload and sends the dispatcher its
//! metadata, batched: up to `gateway.arrival_batch` (256) items per `Arrivals` message, or what
//! it has `gateway.arrival_flush_us` (100 µs) after the first. These send the same messages
//! with no client behind them. One thread paces all of them to the wall clock (open loop: the
//! `n`-th request of the run is due at `n / rate` s and goes to gateway `n mod K`), wakes every
//! ~100 µs (a thread's sleep, not a tokio timer, which has millisecond resolution) and sends
//! each gateway what fell due, as a real gateway's flush would. Each request's model is drawn
//! uniformly at random; its budget is the same for all.
//!
//! Each gateway heartbeats every 250 ms, takes its orders on `baton.gateway.<gw>.orders` on
//! its own connection, and books every ship and reject order in its [`Ledger`]. It never
//! sends inputs: there are no real workers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use async_nats::{Client, Subscriber};
use baton_common::control::{ArrivalItem, Arrivals, GatewayBeat, GatewayOrders};
use baton_common::ids::GatewayName;
use baton_common::{subjects, wire};
use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::runtime::Handle;
use tokio::sync::watch;
use uuid::Uuid;

use super::ledger::Ledger;
use super::pacing::Pacer;
use crate::runtime::status::LagHistogram;

/// How often the offering thread wakes to send what fell due.
const FLUSH_EVERY: Duration = Duration::from_micros(100);

/// Gateway `i` is `bench-g<i>`.
const PREFIX: &str = "bench-g";

/// The index of one of our gateways by its name.
pub fn gateway_index(name: &str) -> Option<usize> {
    name.strip_prefix(PREFIX)?.parse().ok()
}

/// When each request was due: the offering started at `t0`, and the `n`-th request of the
/// run, due at `n / rate` s, went to gateway `n mod gateways` as its `n div gateways`-th.
#[derive(Debug, Clone, Copy)]
pub struct OfferClock {
    pub t0: Instant,
    pub rate: f64,
    pub gateways: usize,
}

impl OfferClock {
    /// When request `request` of gateway `gateway` was due (it left at most one flush later).
    pub fn due(&self, gateway: usize, request: u64) -> Instant {
        let n = request * self.gateways as u64 + gateway as u64;
        self.t0 + Duration::from_secs_f64(n as f64 / self.rate)
    }
}

/// One emulated gateway.
#[derive(Debug)]
pub struct Gateway {
    pub name: GatewayName,
    pub instance: Uuid,
    ledger: Mutex<Ledger>,
    /// `Arrivals` messages sent.
    pub messages: AtomicU64,
    /// Orders for another instance of this gateway, or that did not decode.
    pub stray_orders: AtomicU64,
    /// How late each `Arrivals` message left, from its first request being due, µs: a
    /// gateway's flush delay, and the offering thread's own lateness when the machine is busy.
    lateness: Mutex<LagHistogram>,
    /// When each `Arrivals` message left: its first request and the instant, in order.
    departures: Mutex<Vec<(u64, Instant)>>,
}

impl Gateway {
    /// Gateway `i`, with a fresh instance id.
    pub fn new(i: usize) -> Self {
        Gateway {
            name: GatewayName::new(format!("{PREFIX}{i}")),
            instance: Uuid::new_v4(),
            ledger: Mutex::new(Ledger::default()),
            messages: AtomicU64::new(0),
            stray_orders: AtomicU64::new(0),
            lateness: Mutex::new(LagHistogram::default()),
            departures: Mutex::new(Vec::new()),
        }
    }

    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn lateness(&self) -> MutexGuard<'_, LagHistogram> {
        self.lateness.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that the message whose first request is `first` leaves now.
    fn depart(&self, first: u64, now: Instant) {
        self.departures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((first, now));
    }

    /// When request `request` left, if it has.
    pub fn sent_at(&self, request: u64) -> Option<Instant> {
        let departures = self.departures.lock().unwrap_or_else(|e| e.into_inner());
        let i = departures.partition_point(|&(first, _)| first <= request);
        Some(departures.get(i.checked_sub(1)?)?.1)
    }
}

/// Builds one gateway's `Arrivals` messages. A message names only the models its items use
/// (a real gateway's message would, and the dispatcher decodes every name it is sent).
#[derive(Debug)]
pub struct ArrivalBuilder {
    gateway: GatewayName,
    instance: Uuid,
    budget_us: u64,
    max_items: usize,
    all_models: Arc<[String]>,
    /// `slot[m]`: the index of model `m` in the message being built, if it is there.
    slot: Vec<Option<u32>>,
    /// The models in the message being built, as indices into `all_models`.
    used: Vec<usize>,
    items: Vec<ArrivalItem>,
}

impl ArrivalBuilder {
    pub fn new(gateway: &Gateway, models: Arc<[String]>, budget_us: u64, max_items: usize) -> Self {
        ArrivalBuilder {
            gateway: gateway.name.clone(),
            instance: gateway.instance,
            budget_us,
            max_items: max_items.max(1),
            slot: vec![None; models.len()],
            all_models: models,
            used: Vec::new(),
            items: Vec::new(),
        }
    }

    /// Adds request `request` for model `model` (an index into the models); returns the
    /// message if that filled it.
    pub fn push(&mut self, request: u64, model: usize) -> Option<Arrivals> {
        let index = *self.slot[model].get_or_insert_with(|| {
            self.used.push(model);
            (self.used.len() - 1) as u32
        });
        self.items.push(ArrivalItem(request, index, self.budget_us));
        (self.items.len() >= self.max_items).then(|| self.take()).flatten()
    }

    /// The message built so far, if it has any items.
    pub fn take(&mut self) -> Option<Arrivals> {
        if self.items.is_empty() {
            return None;
        }
        let models = self
            .used
            .drain(..)
            .map(|m| {
                self.slot[m] = None;
                self.all_models[m].clone()
            })
            .collect();
        Some(Arrivals {
            gateway: self.gateway.clone(),
            instance: self.instance,
            models,
            items: std::mem::take(&mut self.items),
        })
    }
}

/// What the offering thread sends.
#[derive(Debug, Clone)]
pub struct Offer {
    /// Requests per second, all gateways together.
    pub rate: f64,
    pub models: Arc<[String]>,
    pub budget_us: u64,
    /// Items per `Arrivals` message at most.
    pub max_items: usize,
    pub seed: u64,
}

/// Sends `offer` through `gateways` (each with its connection) from `start` until `stop` is
/// set, on the calling thread (a plain thread, not a runtime's: it sleeps between flushes);
/// `handle` runs the publishes.
pub fn offer(
    handle: &Handle,
    gateways: &[(Arc<Gateway>, Client)],
    offer: &Offer,
    clock: OfferClock,
    stop: &AtomicBool,
) -> Result<()> {
    let k = gateways.len() as u64;
    let mut builders: Vec<ArrivalBuilder> = gateways
        .iter()
        .map(|(g, _)| ArrivalBuilder::new(g, offer.models.clone(), offer.budget_us, offer.max_items))
        .collect();
    let mut next_request = vec![0u64; gateways.len()];
    let mut pacer = Pacer::new(offer.rate);
    let mut rng = StdRng::seed_from_u64(offer.seed);
    let send = |g: usize, msg: Arrivals| -> Result<()> {
        let (gateway, client) = &gateways[g];
        let (first, last) = match (msg.items.first(), msg.items.last()) {
            (Some(f), Some(l)) => (f.request(), l.request()),
            _ => return Ok(()),
        };
        // Booked before it leaves, so that no order can come for a request the ledger lacks.
        gateway.ledger().sent_up_to(last + 1);
        let now = Instant::now();
        gateway.depart(first, now);
        handle.block_on(client.publish(subjects::ARRIVALS, wire::encode(&msg).into()))?;
        gateway.messages.fetch_add(1, Relaxed);
        let late = now.saturating_duration_since(clock.due(g, first));
        gateway.lateness().record(late.as_micros() as u64);
        Ok(())
    };
    while !stop.load(Relaxed) {
        for n in pacer.due(clock.t0.elapsed()) {
            let g = (n % k) as usize;
            let request = next_request[g];
            next_request[g] += 1;
            if let Some(msg) = builders[g].push(request, rng.random_range(0..offer.models.len())) {
                send(g, msg)?;
            }
        }
        for (g, b) in builders.iter_mut().enumerate() {
            if let Some(msg) = b.take() {
                send(g, msg)?;
            }
        }
        std::thread::sleep(FLUSH_EVERY);
    }
    Ok(())
}

/// Books `gateway`'s orders, from its subscription to `baton.gateway.<gw>.orders`, in its ledger
/// until `stop` turns true.
pub async fn take_orders(mut orders: Subscriber, gateway: Arc<Gateway>, mut stop: watch::Receiver<bool>) -> Result<()> {
    loop {
        tokio::select! {
            _ = stop.changed() => {
                if *stop.borrow() {
                    return Ok(());
                }
            }
            m = orders.next() => {
                let Some(m) = m else { bail!("the orders subscription of {} ended", gateway.name) };
                match wire::decode::<GatewayOrders>(&m.payload) {
                    Ok(o) if o.instance == gateway.instance => {
                        let mut ledger = gateway.ledger();
                        for s in &o.ships {
                            for &r in &s.requests {
                                ledger.ship(r);
                            }
                        }
                        for r in &o.rejects {
                            ledger.reject(r.request, r.reason);
                        }
                    }
                    _ => {
                        gateway.stray_orders.fetch_add(1, Relaxed);
                    }
                }
            }
        }
    }
}

/// Every `period`, each gateway says it is alive (on its own connection), with the requests it
/// holds: sent and not yet shipped or rejected.
pub async fn beat(
    gateways: Vec<(Arc<Gateway>, Client)>,
    period: Duration,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = stop.changed() => {
                if *stop.borrow() {
                    return Ok(());
                }
            }
            _ = tick.tick() => {
                for (g, client) in &gateways {
                    let beat = GatewayBeat {
                        gateway: g.name.clone(),
                        instance: g.instance,
                        held_requests: g.ledger().counts().unaccounted(),
                        // No payloads are held here.
                        held_bytes: 0,
                        duplicates_dropped: 0,
                        leaving: false,
                    };
                    client.publish(subjects::GATEWAY_HEARTBEAT, wire::encode(&beat).into()).await?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn models(n: usize) -> Arc<[String]> {
        (0..n).map(|i| format!("m{i}")).collect()
    }

    #[test]
    fn messages_name_only_their_models_and_fill_up_to_the_limit() {
        let g = Gateway::new(0);
        let mut b = ArrivalBuilder::new(&g, models(10), 100_000, 3);
        assert!(b.push(0, 7).is_none());
        assert!(b.push(1, 2).is_none());
        let full = b.push(2, 7).expect("three items fill a message");
        assert_eq!(full.gateway.as_str(), "bench-g0");
        assert_eq!(full.instance, g.instance);
        assert_eq!(full.models, ["m7", "m2"]);
        assert_eq!(
            full.items,
            [
                ArrivalItem(0, 0, 100_000),
                ArrivalItem(1, 1, 100_000),
                ArrivalItem(2, 0, 100_000)
            ]
        );
        // The next message starts afresh: model 2 is now its first.
        assert!(b.take().is_none());
        assert!(b.push(3, 2).is_none());
        let part = b.take().expect("one item");
        assert_eq!(part.models, ["m2"]);
        assert_eq!(part.items, [ArrivalItem(3, 0, 100_000)]);
        assert!(b.take().is_none());
    }

    #[test]
    fn each_request_knows_when_it_was_due() {
        assert_eq!(gateway_index(Gateway::new(3).name.as_str()), Some(3));
        assert_eq!(gateway_index("other3"), None);
        // 1,000 req/s over 4 gateways: gateway 2's request 5 is the run's request 22, due at 22 ms.
        let t0 = Instant::now();
        let clock = OfferClock {
            t0,
            rate: 1000.0,
            gateways: 4,
        };
        assert_eq!(clock.due(2, 5) - t0, Duration::from_millis(22));
        assert_eq!(clock.due(0, 0), t0);
    }

    #[test]
    fn each_request_knows_when_it_left() {
        let g = Gateway::new(0);
        let t = Instant::now();
        let at = |ms| t + Duration::from_millis(ms);
        assert_eq!(g.sent_at(0), None);
        g.depart(0, at(1)); // requests 0..5
        g.depart(5, at(2)); // requests 5..6
        g.depart(6, at(4)); // requests 6..
        assert_eq!(g.sent_at(0), Some(at(1)));
        assert_eq!(g.sent_at(4), Some(at(1)));
        assert_eq!(g.sent_at(5), Some(at(2)));
        assert_eq!(g.sent_at(6), Some(at(4)));
        assert_eq!(g.sent_at(99), Some(at(4)));
    }
}
