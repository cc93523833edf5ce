//! `baton bench core`: the scheduling core alone, driven by a minimal
//! virtual-time loop.
//!
//! Requests arrive as one Poisson process spread uniformly over the models
//! (the same as independent Poisson arrivals per model); every GPU serves
//! every model and finishes each batch exactly at the predicted time. What
//! is measured is the wall time the loop spends, nearly all of it inside the
//! core, per request.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp};
use serde::Serialize;

use crate::core::{
    Action, Arrival, BatchId, CoreConfig, LatencyTable, ModelId, ModelSpec, RequestId, Scheduler, Time, WorkerId, MS,
    US,
};

/// One benchmark setting.
#[derive(Debug, Clone)]
pub struct CoreBench {
    pub gpus: usize,
    pub models: usize,
    /// Total arrival rate, requests per (virtual) second.
    pub rate: f64,
    /// Virtual seconds to simulate.
    pub duration: f64,
    pub seed: u64,
    /// L(b) = slope·b + intercept, in microseconds, up to `max_batch`.
    pub slope_us: i64,
    pub intercept_us: i64,
    pub max_batch: u32,
    pub slo_ms: i64,
    pub config: CoreConfig,
}

impl CoreBench {
    /// The light model of `scale-1000gpu.yaml`: l(b) = 0.2·b + 1.0 ms, SLO 50 ms.
    pub fn light(gpus: usize, models: usize, rate: f64, duration: f64) -> Self {
        Self {
            gpus,
            models,
            rate,
            duration,
            seed: 1,
            slope_us: 200,
            intercept_us: 1000,
            max_batch: 256,
            slo_ms: 50,
            config: CoreConfig::paper(),
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct CoreBenchResult {
    pub gpus: usize,
    pub models: usize,
    pub offered_rps: f64,
    pub requests: u64,
    pub dispatched: u64,
    pub rejected: u64,
    pub batches: u64,
    pub mean_batch: f64,
    pub gpu_busy_fraction: f64,
    pub virtual_seconds: f64,
    pub wall_seconds: f64,
    pub requests_per_wall_second: f64,
    pub ns_per_request: f64,
}

/// Runs one setting to the end.
pub fn run(b: &CoreBench) -> CoreBenchResult {
    let mut core = Scheduler::new(b.config);
    let lat = LatencyTable::from_fn(b.max_batch, |n| (b.slope_us * i64::from(n) + b.intercept_us) * US);
    let models: Vec<ModelId> = (0..b.models)
        .map(|i| {
            core.add_model(ModelSpec {
                name: format!("m{i}"),
                latency: lat.clone(),
                slo: b.slo_ms * MS,
            })
        })
        .collect();
    for w in 0..b.gpus {
        core.add_worker(WorkerId(w as u64), &models, 0)
            .expect("fresh worker ids and known models");
    }

    let mut rng = StdRng::seed_from_u64(b.seed);
    let gap = Exp::new(b.rate * 1e-9).expect("rate > 0");
    let end = (b.duration * 1e9) as Time;
    let mut done: BinaryHeap<Reverse<(Time, BatchId)>> = BinaryHeap::new();
    let mut next_arrival: f64 = gap.sample(&mut rng);
    let (mut requests, mut dispatched, mut rejected, mut batches) = (0u64, 0u64, 0u64, 0u64);
    let mut busy: i128 = 0;
    let mut next_id = 0u64;

    let start = Instant::now();
    loop {
        let ta = next_arrival as Time;
        let td = done.peek().map_or(Time::MAX, |Reverse((t, _))| *t);
        let tt = core.poll_timeout().unwrap_or(Time::MAX);
        let now = ta.min(td).min(tt);
        if now > end {
            break;
        }
        if td == now {
            let Reverse((_, batch)) = done.pop().expect("peeked");
            core.on_batch_done(batch, now).expect("batch is in flight");
        } else if tt == now {
            core.handle_timeout(now);
        } else {
            let model = ModelId(rng.random_range(0..b.models as u32));
            core.on_arrival(
                Arrival {
                    id: RequestId(next_id),
                    model,
                    slo: None,
                },
                now,
            );
            next_id += 1;
            requests += 1;
            next_arrival += gap.sample(&mut rng);
        }
        while let Some(a) = core.poll_action() {
            match a {
                Action::Dispatch(p) => {
                    batches += 1;
                    dispatched += p.requests.len() as u64;
                    busy += i128::from(p.expected_finish - p.exec_at);
                    done.push(Reverse((p.expected_finish, p.batch_id)));
                }
                Action::Reject { .. } => rejected += 1,
            }
        }
    }
    let wall = start.elapsed().as_secs_f64();
    CoreBenchResult {
        gpus: b.gpus,
        models: b.models,
        offered_rps: b.rate,
        requests,
        dispatched,
        rejected,
        batches,
        mean_batch: dispatched as f64 / batches.max(1) as f64,
        gpu_busy_fraction: busy as f64 / (end as f64 * b.gpus as f64),
        virtual_seconds: b.duration,
        wall_seconds: wall,
        requests_per_wall_second: requests as f64 / wall,
        ns_per_request: wall * 1e9 / requests.max(1) as f64,
    }
}

/// Finds the total rate at which the GPUs are about `busy` busy, by short
/// runs (busy time grows less than linearly with load, since batches grow).
pub fn calibrate(base: &CoreBench, busy: f64) -> f64 {
    // One GPU at its max batch: an upper bound on throughput per GPU.
    let per_gpu =
        f64::from(base.max_batch) / ((base.slope_us * i64::from(base.max_batch) + base.intercept_us) as f64 * 1e-6);
    let (mut lo, mut hi) = (0.0, per_gpu * base.gpus as f64);
    for _ in 0..12 {
        let mid = (lo + hi) / 2.0;
        let mut probe = base.clone();
        probe.rate = mid;
        probe.duration = (200_000.0 / mid).clamp(0.05, 0.5).max(0.3);
        let r = run(&probe);
        let ok = r.gpu_busy_fraction <= busy && (r.rejected as f64) < 0.01 * r.requests as f64;
        if ok {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_run_accounts_for_every_request() {
        let mut b = CoreBench::light(8, 4, 20_000.0, 0.5);
        b.seed = 7;
        let r = run(&b);
        assert!(r.requests > 9_000, "{r:?}");
        // Every request is dispatched or rejected, except those still queued at the end.
        assert!(r.dispatched + r.rejected <= r.requests);
        assert!(r.requests - r.dispatched - r.rejected < 2_000, "{r:?}");
        assert_eq!(r.rejected, 0, "{r:?}");
        assert!(r.mean_batch > 1.0);
    }
}
