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
    let mut s = Summary {
        sent,
        ..Summary::default()
    };
    let mut lat = Vec::new();
    while let Some(o) = rx.recv().await {
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
    // Rates over the time it took to send everything (the schedule's span,
    // unless the sender fell behind).
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
