//! The virtual-time engine: arrivals from a workload, emulated GPUs, one
//! policy, and the accounting of every request.
//!
//! Physics every policy pays alike: a plan's batch starts no earlier than its
//! `exec_at`, than `sent_at + δ_ctrl + b·δ_data` (plan and inputs delivered)
//! and than its GPU really frees; it runs `L(b)`, or `L(b)` with jitter
//! (relative normal noise, rare stragglers) so that robustness to profile
//! error is measured too. Policies never see the real durations, only the
//! `BatchDone` when a batch ends.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use super::metrics::{Recorder, RunMetrics};
use super::policy::{Policy, SimModel};
use crate::core::{Action, Arrival, BatchId, CoreConfig, ModelId, RequestId, Time, WorkerId, MS};
use crate::workload::{self, Trace, Workload};

/// Emulated GPUs' deviation from the profile. Batches run `mean(b)·(1 +
/// cv·z)`, z standard normal; the policies plan with the profile a profiler
/// would have measured, `L(b) = mean + std = mean·(1 + cv)` (see
/// `run_named`). Stragglers are not in the profile: that is the error.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Jitter {
    /// Relative standard deviation of a batch's duration (0: exact).
    pub cv: f64,
    /// Probability that a batch straggles.
    pub straggler_prob: f64,
    /// How much slower a straggler runs.
    pub straggler_factor: f64,
}

impl Jitter {
    /// The `--jitter` preset: 5% noise, 1% of batches 3× slower.
    pub const PRESET: Jitter = Jitter {
        cv: 0.05,
        straggler_prob: 0.01,
        straggler_factor: 3.0,
    };

    fn duration(&self, l: Time, rng: &mut StdRng) -> Time {
        if self.cv == 0.0 && self.straggler_prob == 0.0 {
            return l;
        }
        let z: f64 = StandardNormal.sample(rng);
        let mut f = (1.0 + self.cv * z).max(0.1);
        if self.straggler_prob > 0.0 && rng.random::<f64>() < self.straggler_prob {
            f *= self.straggler_factor;
        }
        (l as f64 * f) as Time
    }
}

/// One simulation's settings besides the workload and policy.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Overrides the workload's GPU count.
    pub gpus: Option<usize>,
    /// Overrides the workload's seed.
    pub seed: Option<u64>,
    pub jitter: Jitter,
    /// Shared constants (δ's) and, for the core policies, the core's knobs.
    /// Default: [`CoreConfig::paper`], Symphony's RDMA constants.
    pub config: CoreConfig,
    /// Multiplies every rate of the workload (or of the trace).
    pub rate_multiplier: f64,
    /// Policies plan with the workload's profile times this factor (1: the
    /// truth), to measure how a wrong or stale profile is corrected online.
    pub profile_error: f64,
    /// Replay these arrival times (ns from 0) instead of the workload's
    /// arrival processes, spread uniformly over its models. The first
    /// [`TRACE_WARMUP`] of the trace is warm-up; the rest is measured.
    pub trace: Option<Arc<Trace>>,
}

/// Share of a replayed trace that is warm-up (not measured).
pub const TRACE_WARMUP: f64 = 0.1;

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            gpus: None,
            seed: None,
            jitter: Jitter::default(),
            config: CoreConfig::paper(),
            rate_multiplier: 1.0,
            profile_error: 1.0,
            trace: None,
        }
    }
}

/// The models of a workload as policies see them.
pub fn sim_models(w: &Workload) -> Vec<SimModel> {
    w.models
        .iter()
        .map(|m| {
            let bench_secs: f64 = m.bench.iter().map(|s| s.duration_s).sum();
            let bench_reqs: f64 = m.bench.iter().map(|s| s.duration_s * s.rps).sum();
            SimModel {
                name: m.name.clone(),
                latency: m.profile.latency_table(),
                slo: (m.slo_ms * MS as f64) as Time,
                planned_rps: if bench_secs > 0.0 { bench_reqs / bench_secs } else { 0.0 },
            }
        })
        .collect()
}

struct Running {
    worker: usize,
    requests: Vec<RequestId>,
    /// How long the batch really ran.
    exec: Time,
}

/// Requests not answered yet, indexed by id (ids are dense and mostly
/// resolve in order, so a sliding ring stays small).
struct Live {
    base: u64,
    ring: VecDeque<Option<(Time, ModelId)>>,
}

impl Live {
    fn push(&mut self, arrival: Time, model: ModelId) -> RequestId {
        let id = RequestId(self.base + self.ring.len() as u64);
        self.ring.push_back(Some((arrival, model)));
        id
    }

    fn take(&mut self, id: RequestId) -> Option<(Time, ModelId)> {
        let i = id.0.checked_sub(self.base)? as usize;
        let v = self.ring.get_mut(i)?.take();
        while let Some(None) = self.ring.front() {
            self.ring.pop_front();
            self.base += 1;
        }
        v
    }

    fn remaining(&self) -> u64 {
        self.ring.iter().filter(|e| e.is_some()).count() as u64
    }
}

/// Arrivals in time order: (time, model index).
type ArrivalStream = Box<dyn Iterator<Item = (Time, usize)>>;

/// Where arrivals come from, and each model's measured window.
fn arrival_source(w: &Workload, opts: &SimOptions, seed: u64) -> (ArrivalStream, Vec<(Time, Time)>) {
    match &opts.trace {
        Some(trace) => {
            let t = trace.scaled_by(1.0 / opts.rate_multiplier);
            let end = t.times_ns.last().copied().unwrap_or(0) + 1;
            let start = (end as f64 * TRACE_WARMUP) as Time;
            let arrivals = workload::trace_arrivals(&t, w.models.len(), seed);
            (Box::new(arrivals.into_iter()), vec![(start, end); w.models.len()])
        }
        None => {
            let w = w.scaled(opts.rate_multiplier);
            let windows = (0..w.models.len())
                .map(|i| {
                    let (s, e) = w.bench_window(i);
                    ((s * 1e9) as Time, (e * 1e9) as Time)
                })
                .collect();
            (Box::new(workload::arrivals(&w, seed)), windows)
        }
    }
}

/// Runs `policy` on `w`, with its rates multiplied by `opts.rate_multiplier`, to the end.
pub fn run(w: &Workload, workload_name: &str, policy: &mut dyn Policy, opts: &SimOptions) -> RunMetrics {
    let gpus = opts.gpus.unwrap_or(w.gpus);
    let seed = opts.seed.unwrap_or(w.seed);
    let models = sim_models(w);
    let deltas = opts.config.deltas;
    let (arrivals, model_windows) = arrival_source(w, opts, seed);
    let window = model_windows
        .iter()
        .fold((Time::MAX, Time::MIN), |(a, b), &(s, e)| (a.min(s), b.max(e)));
    let mut rec = Recorder::new(window, gpus);
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6a09_e667_f3bc_c908);
    let mut arrivals = arrivals.peekable();
    let mut done: BinaryHeap<Reverse<(Time, BatchId)>> = BinaryHeap::new();
    let mut running: HashMap<BatchId, Running> = HashMap::new();
    let mut gpu_free: Vec<Time> = vec![Time::MIN; gpus];
    let mut live = Live {
        base: 0,
        ring: VecDeque::new(),
    };
    let mut now: Time = 0;

    let start = Instant::now();
    loop {
        let ta = arrivals.peek().map_or(Time::MAX, |&(t, _)| t);
        let td = done.peek().map_or(Time::MAX, |Reverse((t, _))| *t);
        let tt = policy.poll_timeout().unwrap_or(Time::MAX).max(now);
        let t = ta.min(td).min(tt);
        if t == Time::MAX {
            break;
        }
        now = t;
        if td == now {
            let Reverse((_, batch)) = done.pop().expect("peeked");
            let r = running.remove(&batch).expect("every completion has its batch");
            for id in &r.requests {
                let Some((arrival, m)) = live.take(*id) else {
                    rec.duplicates += 1;
                    continue;
                };
                let mw = model_windows[m.0 as usize];
                if arrival >= mw.0 && arrival < mw.1 {
                    let deadline = arrival + models[m.0 as usize].slo - deltas.resp;
                    rec.finished(arrival, deadline, now);
                }
            }
            policy.on_batch_done(batch, WorkerId(r.worker as u64), r.exec, now);
        } else if tt == now && tt != Time::MAX {
            policy.handle_timeout(now);
        } else {
            let (_, mi) = arrivals.next().expect("peeked");
            let model = ModelId(mi as u32);
            let id = live.push(now, model);
            let mw = model_windows[mi];
            if now >= mw.0 && now < mw.1 {
                rec.requests += 1;
            }
            policy.on_arrival(Arrival { id, model, slo: None }, now);
        }
        while let Some(a) = policy.poll_action() {
            match a {
                Action::Dispatch(p) => {
                    let b = p.requests.len() as u32;
                    let w = p.worker.0 as usize;
                    let lat = &models[p.model.0 as usize].latency;
                    let begin = p.exec_at.max(p.sent_at + deltas.lead(b)).max(gpu_free[w]);
                    let exec = opts.jitter.duration(lat.get(b), &mut rng);
                    let finish = begin + exec;
                    gpu_free[w] = finish;
                    rec.batch(w, b, begin, finish);
                    done.push(Reverse((finish, p.batch_id)));
                    running.insert(
                        p.batch_id,
                        Running {
                            worker: w,
                            requests: p.requests,
                            exec,
                        },
                    );
                }
                Action::Reject { request, reason, .. } => match live.take(request) {
                    Some((arrival, m)) => {
                        let mw = model_windows[m.0 as usize];
                        if arrival >= mw.0 && arrival < mw.1 {
                            rec.rejected(reason);
                        }
                    }
                    None => rec.duplicates += 1,
                },
            }
        }
    }
    rec.unanswered = live.remaining();
    let wall = start.elapsed().as_secs_f64();
    rec.finish(policy.name(), workload_name, opts.rate_multiplier, now, wall)
}
