//! `baton loadgen`: open-loop load against a running Baton, with exact
//! accounting.
//!
//! Arrival times are fixed in advance (from a workload file, a rate and a
//! gap distribution, a trace, or camera streams) and each request is sent
//! at its time whether or not earlier ones have been answered, as frames
//! from cameras are. Every request ends in exactly one of: ok, rejected (by
//! reason), error, or timeout (no reply by its SLO plus a grace), so
//! `sent = ok + rejected + errors + timeouts` always holds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_common::client::{Client, ClientErrorKind};
use baton_common::wire::{DType, InferRequest, Status, Tensor};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::workload::{self, Gap, Segment, Trace, Workload};

/// What each request carries.
#[derive(Debug, Clone)]
pub struct Payload {
    pub dtype: DType,
    pub shape: Vec<u64>,
}

impl Payload {
    /// `n` raw bytes as one u8 tensor.
    pub fn bytes(n: u64) -> Self {
        Self {
            dtype: DType::U8,
            shape: vec![n],
        }
    }

    fn tensor(&self, seq: u64) -> Tensor {
        let elements = self.shape.iter().product::<u64>();
        // Distinct, deterministic content per request; float images get finite values in
        // [-1, 1) (as normalised pixels are), not arbitrary bit patterns that may be NaN.
        let byte = |i: u64| (i.wrapping_mul(31) ^ seq) as u8;
        if self.dtype == DType::F32 {
            let values: Vec<f32> = (0..elements).map(|i| f32::from(byte(i)) / 128.0 - 1.0).collect();
            return Tensor::from_f32(self.shape.clone(), &values);
        }
        let n = elements * self.dtype.size_bytes();
        Tensor {
            dtype: self.dtype,
            shape: self.shape.clone(),
            data: (0..n).map(byte).collect(),
        }
    }
}

/// The schedule: (offset from start, model name) in time order.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub arrivals: Vec<(Duration, String)>,
}

impl Schedule {
    /// From a workload file (all its phases).
    pub fn from_workload(w: &Workload, seed: u64) -> Self {
        let names: Vec<String> = w.models.iter().map(|m| m.name.clone()).collect();
        let arrivals = workload::arrivals(w, seed)
            .map(|(t, m)| (Duration::from_nanos(t.max(0) as u64), names[m].clone()))
            .collect();
        Self { arrivals }
    }

    /// One model at `rate` req/s for `duration` with gaps `gap`.
    pub fn from_rate(model: &str, rate: f64, duration: Duration, gap: Gap, seed: u64) -> Self {
        let w = Workload {
            seed,
            gpus: 1,
            models: vec![workload::ModelLoad {
                name: model.to_string(),
                profile: baton_common::profile::Profile::from_spec("sleep#0,0,0,0", 1).expect("a valid spec"),
                slo_ms: 100.0,
                gap,
                warmup: vec![],
                bench: vec![Segment {
                    duration_s: duration.as_secs_f64(),
                    rps: rate,
                }],
                cooldown: vec![],
            }],
        };
        Self::from_workload(&w, seed)
    }

    /// `streams` cameras at `fps` each, with phases spread over one frame interval.
    pub fn cameras(model: &str, streams: usize, fps: f64, duration: Duration) -> Self {
        let period = 1.0 / fps;
        let mut arrivals = Vec::new();
        for s in 0..streams {
            let phase = period * s as f64 / streams as f64;
            let mut t = phase;
            while t < duration.as_secs_f64() {
                arrivals.push((Duration::from_secs_f64(t), model.to_string()));
                t += period;
            }
        }
        arrivals.sort();
        Self { arrivals }
    }

    /// A trace's times, spread uniformly over `models`.
    pub fn from_trace(trace: &Trace, models: &[String], seed: u64) -> Self {
        let arrivals = workload::trace_arrivals(trace, models.len(), seed)
            .into_iter()
            .map(|(t, m)| (Duration::from_nanos(t.max(0) as u64), models[m].clone()))
            .collect();
        Self { arrivals }
    }

    pub fn duration(&self) -> Duration {
        self.arrivals.last().map_or(Duration::ZERO, |a| a.0)
    }
}

/// How one request ended.
#[derive(Debug, Clone)]
enum Outcome {
    Ok { latency: Duration, late: bool },
    Rejected(String),
    Error(String),
    Timeout,
}

/// The run's counts. `sent = ok + rejected + errors + timeouts`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub sent: u64,
    pub ok: u64,
    /// Ok and answered within the SLO.
    pub good: u64,
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
    pub errors: u64,
    pub error_examples: Vec<String>,
    pub timeouts: u64,
    pub duration_s: f64,
    pub achieved_rps: f64,
    pub goodput_rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Replies beyond the first for one request (counted only by [`run_one_inbox`], which sees
    /// every reply; the request API keeps only the first).
    pub duplicates: u64,
}

impl Summary {
    pub fn render(&self) -> String {
        let mut s = format!(
            "sent {} in {:.1} s ({:.0} req/s): ok {} (good {}), rejected {}, errors {}, timeouts {}\n\
             goodput {:.0} req/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n",
            self.sent,
            self.duration_s,
            self.achieved_rps,
            self.ok,
            self.good,
            self.rejected,
            self.errors,
            self.timeouts,
            self.goodput_rps,
            self.p50_ms,
            self.p99_ms,
            self.max_ms
        );
        for (r, n) in &self.rejected_by_reason {
            s.push_str(&format!("  rejected {r}: {n}\n"));
        }
        if self.duplicates > 0 {
            s.push_str(&format!("  DUPLICATE replies: {}\n", self.duplicates));
        }
        for e in &self.error_examples {
            s.push_str(&format!("  error: {e}\n"));
        }
        s
    }
}

/// Sends `schedule` through `client` and counts what comes back.
pub async fn run(client: &Client, schedule: &Schedule, payload: &Payload, slo: Duration) -> Summary {
    let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
    let start = tokio::time::Instant::now();
    let payload = Arc::new(payload.clone());
    let sent = schedule.arrivals.len() as u64;
    let wall = Instant::now();
    for (seq, (at, model)) in schedule.arrivals.iter().enumerate() {
        tokio::time::sleep_until(start + *at).await;
        let (client, tx, model, payload) = (client.clone(), tx.clone(), model.clone(), payload.clone());
        tokio::spawn(async move {
            let req = InferRequest {
                id: Some(seq.to_string()),
                inputs: vec![payload.tensor(seq as u64)],
                slo_ms: Some(slo.as_secs_f64() * 1e3),
                priority: None,
            };
            let sent_at = Instant::now();
            let outcome = match client.send(&model, &req, slo).await {
                Ok(r) => match r.status {
                    Status::Ok => {
                        let latency = sent_at.elapsed();
                        Outcome::Ok {
                            latency,
                            late: r.late || latency > slo,
                        }
                    }
                    Status::Rejected => Outcome::Rejected(r.reason.map_or("unspecified".into(), |x| x.as_str().into())),
                    Status::Error => Outcome::Error(r.error.unwrap_or_default()),
                },
                Err(e) if e.kind() == ClientErrorKind::TimedOut => Outcome::Timeout,
                Err(e) => Outcome::Error(e.to_string()),
            };
            let _ = tx.send(outcome);
        });
    }
    let sending = wall.elapsed();
    drop(tx);
    let mut outcomes = Vec::with_capacity(sent as usize);
    while let Some(o) = rx.recv().await {
        outcomes.push(o);
    }
    summarize(sent, outcomes, sending)
}

/// Counts outcomes; rates are over `sending`, the time it took to send everything (the
/// schedule's span, unless the sender fell behind).
fn summarize(sent: u64, outcomes: Vec<Outcome>, sending: Duration) -> Summary {
    let mut s = Summary {
        sent,
        ..Summary::default()
    };
    let mut lat = Vec::new();
    for o in outcomes {
        match o {
            Outcome::Ok { latency, late } => {
                s.ok += 1;
                if !late {
                    s.good += 1;
                }
                lat.push(latency.as_secs_f64() * 1e3);
            }
            Outcome::Rejected(r) => {
                s.rejected += 1;
                *s.rejected_by_reason.entry(r).or_default() += 1;
            }
            Outcome::Error(e) => {
                s.errors += 1;
                if s.error_examples.len() < 3 && !s.error_examples.contains(&e) {
                    s.error_examples.push(e);
                }
            }
            Outcome::Timeout => s.timeouts += 1,
        }
    }
    let secs = sending.as_secs_f64().max(1e-3);
    s.duration_s = secs;
    s.achieved_rps = sent as f64 / secs;
    s.goodput_rps = s.good as f64 / secs;
    lat.sort_by(f64::total_cmp);
    let pct = |q: f64| -> f64 {
        if lat.is_empty() {
            0.0
        } else {
            lat[((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1]
        }
    };
    s.p50_ms = pct(0.5);
    s.p99_ms = pct(0.99);
    s.max_ms = lat.last().copied().unwrap_or(0.0);
    s
}

/// Like [`run`], but without a task and a request per message: every request is published with
/// a reply subject of its own under one inbox prefix (`_INBOX.<random>.<seq>`), one
/// subscription takes every reply, and a request without a reply by its SLO plus the client's
/// grace is a timeout. It sends and counts several times faster than [`run`], so it is the one
/// to measure a server's ceiling with, and it sees duplicate replies, which it counts. A request
/// that no server listens for is a timeout here, not an error.
pub async fn run_one_inbox(client: &Client, schedule: &Schedule, payload: &Payload, slo: Duration) -> Summary {
    use futures::StreamExt;
    let nats = client.nats().clone();
    let prefix = format!("_INBOX.{}", uuid::Uuid::new_v4().simple());
    let n = schedule.arrivals.len();
    let mut sub = match nats.subscribe(format!("{prefix}.>")).await {
        Ok(s) => s,
        Err(e) => {
            return Summary {
                sent: n as u64,
                errors: n as u64,
                error_examples: vec![format!("cannot subscribe to replies: {e}")],
                ..Summary::default()
            }
        }
    };
    let _ = nats.flush().await;
    let start = Instant::now();
    // Send times in ns after `start`, written before each publish, read by the receiver.
    let sent_at: Arc<Vec<std::sync::atomic::AtomicU64>> =
        Arc::new((0..n).map(|_| std::sync::atomic::AtomicU64::new(u64::MAX)).collect());
    let wait = slo + client.grace();
    let last_due = schedule.duration() + wait + Duration::from_millis(200);
    let receiver = {
        let sent_at = sent_at.clone();
        let prefix_len = prefix.len() + 1;
        tokio::spawn(async move {
            let mut first: Vec<Option<Outcome>> = vec![None; n];
            let (mut duplicates, mut answered) = (0u64, 0usize);
            let mut end = tokio::time::Instant::from_std(start + last_due);
            while let Ok(Some(m)) = tokio::time::timeout_at(end, sub.next()).await {
                let Some(seq) = m.subject.get(prefix_len..).and_then(|s| s.parse::<usize>().ok()) else {
                    continue;
                };
                let Some(slot) = first.get_mut(seq) else { continue };
                if slot.is_some() {
                    duplicates += 1;
                    continue;
                }
                let t0 = sent_at[seq].load(std::sync::atomic::Ordering::Relaxed);
                let latency = start.elapsed().saturating_sub(Duration::from_nanos(t0));
                *slot = Some(
                    match baton_common::wire::decode::<baton_common::wire::InferReply>(&m.payload) {
                        Ok(r) => match r.status {
                            Status::Ok if latency <= wait => Outcome::Ok {
                                latency,
                                late: r.late || latency > slo,
                            },
                            Status::Ok => Outcome::Timeout,
                            Status::Rejected => {
                                Outcome::Rejected(r.reason.map_or("unspecified".into(), |x| x.as_str().into()))
                            }
                            Status::Error => Outcome::Error(r.error.unwrap_or_default()),
                        },
                        Err(e) => Outcome::Error(format!("undecodable reply: {e}")),
                    },
                );
                answered += 1;
                if answered == n {
                    // Everything answered: listen a little longer for duplicates, then stop.
                    end = end.min(tokio::time::Instant::now() + Duration::from_millis(250));
                }
            }
            (first, duplicates)
        })
    };
    let tstart = tokio::time::Instant::from_std(start);
    for (seq, (at, model)) in schedule.arrivals.iter().enumerate() {
        tokio::time::sleep_until(tstart + *at).await;
        let req = InferRequest {
            id: Some(seq.to_string()),
            inputs: vec![payload.tensor(seq as u64)],
            slo_ms: Some(slo.as_secs_f64() * 1e3),
            priority: None,
        };
        let body = bytes::Bytes::from(baton_common::wire::encode(&req));
        sent_at[seq].store(start.elapsed().as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = nats
            .publish_with_reply(baton_common::subjects::infer(model), format!("{prefix}.{seq}"), body)
            .await
        {
            tracing::warn!("publish failed: {e}");
        }
    }
    let sending = start.elapsed();
    let _ = nats.flush().await;
    let (first, duplicates) = receiver.await.unwrap_or_default();
    let outcomes: Vec<Outcome> = first.into_iter().map(|o| o.unwrap_or(Outcome::Timeout)).collect();
    let mut s = summarize(n as u64, outcomes, sending);
    s.duplicates = duplicates;
    s
}
