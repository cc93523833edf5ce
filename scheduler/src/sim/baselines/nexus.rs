//! `nexus`: Nexus' static epoch plan (squishy bin packing with the "2×"
//! rule) and its per-GPU executors with sliding-window early drop.
//!
//! **Plan** (once, from each model's `planned_rps`; Nexus re-plans per epoch,
//! and the simulator's rates are constant within a bench). With `T = S −
//! δ_resp` and the execution budget `E = exec_fraction·T` (½: the 2× rule, a
//! request may wait one cycle and then run one batch):
//! 1. `B_m` = the largest `b` with `L(b) ≤ E`; one GPU serves `B_m/L(B_m)`
//!    req/s, so the model needs `n_m = λ_m·L(B_m)/B_m` GPUs. It gets
//!    `⌊n_m⌋` dedicated GPUs running batches of `B_m`.
//! 2. The residual rates are packed onto shared GPUs, largest residual load
//!    first, first fit. A shared GPU runs one batch of each of its models per
//!    cycle `C`; model i's batch is `b_i = ⌈λ_i·C⌉` (what arrives in a
//!    cycle) and the GPU keeps up when `Σ L(b_i) ≤ C`, with `C ≤ min E_i`.
//!    The largest such `C` is searched on a grid of 64 steps below `min E_i`
//!    plus each member's `L(B_i)`. (A residual alone always fits at
//!    `C = L(B_m)`.)
//! 3. If that needs more GPUs than exist, every rate is scaled by the same
//!    factor, the largest (bisection) whose plan fits; [`NexusPlan::rate_scale`]
//!    says by how much. The real traffic is then more than planned and the
//!    sliding window drops the excess.
//! 4. If it needs fewer GPUs than exist, the rates are scaled *up* the same
//!    way, to the largest factor whose plan still fits: an operator with a
//!    fixed fleet gives Nexus all of it, which is how the authors ran their
//!    static Nexus baseline (batch 40 on every GPU) and gives the plan
//!    headroom for bursts. (Leaving the spare GPUs idle made Nexus drop 4%
//!    of a Poisson 5,000 req/s load on 8 GPUs: a baseline tuned down.)
//!
//! **Run.** A model's requests are spread over its GPUs by smooth weighted
//! round-robin, weighted by each GPU's planned share of the model's rate
//! (plain round-robin when all its GPUs are dedicated; the shared GPU only
//! takes the residual, as Nexus' frontends weigh backends by throughput).
//! Every GPU keeps an EDF queue per model and runs continuously: when free,
//! it takes its next model in round-robin order that has requests and
//! forms a batch by the sliding window of Nexus' `GetBatchTaskSlidingWindow`:
//! aim for `b = min(batch, queued)`, pop heads, drop those with `d < now +
//! lead(b) + L(b)` (`deadline_unattainable`), shrinking `b` when too few
//! remain. A model the plan gives no GPU rejects its requests (`overloaded`).
//!
//! Longer than ~600 lines on purpose: about 510 lines of code and the tests that pin it, kept
//! beside the code they check (STYLE.md).

use std::collections::VecDeque;

use crate::core::queue::{Entry, Queue};
use crate::core::{
    Action, Arrival, BatchId, CoreConfig, Deltas, LatencyTable, ModelId, RejectReason, RequestId, Time, WorkerId,
};
use crate::sim::policy::{Policy, SimModel};

use super::{deadline_of, largest_batch_within, Gpus};

/// Knobs of [`Nexus`].
#[derive(Debug, Clone, PartialEq)]
pub struct NexusParams {
    /// The share of `SLO − δ_resp` a batch may spend executing; 0.5 is
    /// Nexus' "2×" rule (default).
    pub exec_fraction: f64,
    /// The rates (req/s, one per model) to plan for; `None` (default): each
    /// model's `planned_rps`.
    pub planned_rps: Option<Vec<f64>>,
    /// Give spare GPUs to the models by planning for a higher rate (step 4
    /// of the plan). Default `true`.
    pub fill_gpus: bool,
}

impl Default for NexusParams {
    fn default() -> Self {
        Self {
            exec_fraction: 0.5,
            planned_rps: None,
            fill_gpus: true,
        }
    }
}

/// One model's place on a planned GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedSlot {
    pub model: ModelId,
    /// The batch size this GPU aims for with this model.
    pub batch: u32,
    /// The model's rate this GPU takes (req/s): its capacity when dedicated,
    /// the residual when shared. Round-robin weights.
    pub rps: f64,
}

/// One GPU of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedGpu {
    pub slots: Vec<PlannedSlot>,
    /// The duty cycle: `L(B)` when dedicated, `C` when shared.
    pub cycle: Time,
}

/// The epoch plan: GPU i of `gpus` is worker i.
#[derive(Debug, Clone, PartialEq)]
pub struct NexusPlan {
    pub gpus: Vec<PlannedGpu>,
    /// The factor the planned rates were scaled by to fill the GPUs (below 1:
    /// too few GPUs; above 1: spare GPUs were given to the models).
    pub rate_scale: f64,
}

/// What the planner needs of a model.
struct Demand<'a> {
    latency: &'a LatencyTable,
    exec_budget: Time,
    rps: f64,
}

impl NexusPlan {
    fn build(demands: &[Demand<'_>], gpus: usize, fill_gpus: bool) -> Self {
        let fits = |p: &Vec<PlannedGpu>| p.len() <= gpus;
        let full = plan_at(demands, 1.0);
        if fits(&full) && !fill_gpus {
            return Self {
                gpus: full,
                rate_scale: 1.0,
            };
        }
        if fits(&full) {
            // Plan for the highest rate the fleet carries, so every GPU
            // serves and bursts have headroom (step 4 in the module doc).
            let mut hi = 2.0;
            while hi < 1024.0 && fits(&plan_at(demands, hi)) {
                hi *= 2.0;
            }
            let mut lo = hi / 2.0;
            for _ in 0..30 {
                let mid = (lo + hi) / 2.0;
                if fits(&plan_at(demands, mid)) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let up = plan_at(demands, lo);
            return if up.len() >= full.len() {
                Self {
                    gpus: up,
                    rate_scale: lo,
                }
            } else {
                Self {
                    gpus: full,
                    rate_scale: 1.0,
                }
            };
        }
        let (mut lo, mut hi) = (0.0, 1.0);
        for _ in 0..40 {
            let mid = (lo + hi) / 2.0;
            if fits(&plan_at(demands, mid)) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let mut plan = plan_at(demands, lo);
        if plan.is_empty() {
            // Too many models to pack even at a trickle: the first GPUs' worth get one.
            plan = plan_at(demands, hi);
            plan.truncate(gpus);
        }
        Self {
            gpus: plan,
            rate_scale: lo,
        }
    }
}

/// The plan for every model's rate times `scale`, however many GPUs it takes.
fn plan_at(demands: &[Demand<'_>], scale: f64) -> Vec<PlannedGpu> {
    let mut gpus = Vec::new();
    // (model, residual rate, residual load in GPUs)
    let mut residuals: Vec<(usize, f64, f64)> = Vec::new();
    for (i, d) in demands.iter().enumerate() {
        let rate = d.rps * scale;
        if rate <= 0.0 || !rate.is_finite() {
            continue;
        }
        let b = largest_batch_within(d.latency, d.exec_budget);
        let l = d.latency.get(b);
        let capacity = f64::from(b) * 1e9 / l as f64;
        let n = rate / capacity;
        let dedicated = (n + 1e-9).floor();
        for _ in 0..dedicated as usize {
            gpus.push(PlannedGpu {
                slots: vec![PlannedSlot {
                    model: ModelId(i as u32),
                    batch: b,
                    rps: capacity,
                }],
                cycle: l,
            });
        }
        let residual = rate - dedicated * capacity;
        if residual / capacity > 1e-6 {
            residuals.push((i, residual, residual / capacity));
        }
    }
    residuals.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
    let mut bins: Vec<(Vec<(usize, f64)>, PlannedGpu)> = Vec::new();
    for &(i, rate, _) in &residuals {
        let placed = bins.iter_mut().any(|(members, gpu)| {
            members.push((i, rate));
            match pack(demands, members) {
                Some(g) => {
                    *gpu = g;
                    true
                }
                None => {
                    members.pop();
                    false
                }
            }
        });
        if !placed {
            let members = vec![(i, rate)];
            let gpu = pack(demands, &members).unwrap_or_else(|| alone(demands, i, rate));
            bins.push((members, gpu));
        }
    }
    gpus.extend(bins.into_iter().map(|(_, g)| g));
    gpus
}

/// Batches of `members` (model, rate) on one shared GPU with the largest
/// cycle that keeps up, if any.
fn pack(demands: &[Demand<'_>], members: &[(usize, f64)]) -> Option<PlannedGpu> {
    let c_max = members.iter().map(|&(i, _)| demands[i].exec_budget).min()?;
    let mut cycles: Vec<Time> = (0..64).map(|k| c_max - c_max * k / 64).collect();
    for &(i, _) in members {
        let d = &demands[i];
        let l = d.latency.get(largest_batch_within(d.latency, d.exec_budget));
        if l <= c_max {
            cycles.push(l);
        }
    }
    cycles.sort_unstable_by(|a, b| b.cmp(a));
    cycles.into_iter().filter(|&c| c > 0).find_map(|c| {
        let mut used = 0;
        let mut slots = Vec::with_capacity(members.len());
        for &(i, rate) in members {
            let lat = demands[i].latency;
            // Arrivals per cycle, rounded up; the epsilon keeps 2.0000000001 at 2.
            let b = ((rate * c as f64 / 1e9) - 1e-9).ceil().max(1.0);
            if b > f64::from(lat.max_batch()) {
                return None;
            }
            let b = b as u32;
            used += lat.get(b);
            slots.push(PlannedSlot {
                model: ModelId(i as u32),
                batch: b,
                rps: rate,
            });
        }
        (used <= c).then_some(PlannedGpu { slots, cycle: c })
    })
}

/// A residual that fits no cycle within its budget (its `L(1)` alone is
/// over it): it gets a GPU anyway, at its 2×-rule batch.
fn alone(demands: &[Demand<'_>], i: usize, rate: f64) -> PlannedGpu {
    let d = &demands[i];
    let b = largest_batch_within(d.latency, d.exec_budget);
    PlannedGpu {
        slots: vec![PlannedSlot {
            model: ModelId(i as u32),
            batch: b,
            rps: rate,
        }],
        cycle: d.latency.get(b),
    }
}

#[derive(Debug)]
struct Slot {
    model: ModelId,
    batch: u32,
    queue: Queue,
}

#[derive(Debug)]
struct GpuRun {
    slots: Vec<Slot>,
    /// The slot to try first when the GPU frees.
    next: usize,
}

/// Smooth weighted round-robin over a model's (gpu, slot) targets.
#[derive(Debug)]
struct Route {
    targets: Vec<(usize, usize, f64)>,
    credit: Vec<f64>,
}

impl Route {
    fn pick(&mut self) -> (usize, usize) {
        let total: f64 = self.targets.iter().map(|t| t.2).sum();
        for (c, t) in self.credit.iter_mut().zip(&self.targets) {
            *c += t.2;
        }
        let mut best = 0;
        for (k, &c) in self.credit.iter().enumerate() {
            if c > self.credit[best] {
                best = k;
            }
        }
        self.credit[best] -= total;
        (self.targets[best].0, self.targets[best].1)
    }
}

#[derive(Debug)]
struct ModelInfo {
    latency: LatencyTable,
    slo: Time,
    /// `None`: the plan gave it no GPU.
    route: Option<Route>,
}

/// The Nexus baseline; see the module docs.
#[derive(Debug)]
pub struct Nexus {
    deltas: Deltas,
    plan: NexusPlan,
    models: Vec<ModelInfo>,
    runs: Vec<GpuRun>,
    gpus: Gpus,
    actions: VecDeque<Action>,
    now: Time,
}

impl Nexus {
    pub fn new(cfg: &CoreConfig, models: &[SimModel], gpus: usize) -> Self {
        Self::with_params(cfg, models, gpus, NexusParams::default())
    }

    pub fn with_params(cfg: &CoreConfig, models: &[SimModel], gpus: usize, params: NexusParams) -> Self {
        let demands: Vec<Demand<'_>> = models
            .iter()
            .enumerate()
            .map(|(i, m)| Demand {
                latency: &m.latency,
                exec_budget: ((m.slo - cfg.deltas.resp) as f64 * params.exec_fraction) as Time,
                rps: params
                    .planned_rps
                    .as_ref()
                    .and_then(|r| r.get(i).copied())
                    .unwrap_or(m.planned_rps),
            })
            .collect();
        let plan = NexusPlan::build(&demands, gpus, params.fill_gpus);
        let mut infos: Vec<ModelInfo> = models
            .iter()
            .map(|m| ModelInfo {
                latency: m.latency.clone(),
                slo: m.slo,
                route: None,
            })
            .collect();
        let mut runs = Vec::with_capacity(plan.gpus.len());
        for (w, g) in plan.gpus.iter().enumerate() {
            for (k, s) in g.slots.iter().enumerate() {
                let route = infos[s.model.0 as usize].route.get_or_insert_with(|| Route {
                    targets: Vec::new(),
                    credit: Vec::new(),
                });
                route.targets.push((w, k, s.rps));
                route.credit.push(0.0);
            }
            runs.push(GpuRun {
                slots: g
                    .slots
                    .iter()
                    .map(|s| Slot {
                        model: s.model,
                        batch: s.batch,
                        queue: Queue::default(),
                    })
                    .collect(),
                next: 0,
            });
        }
        Self {
            deltas: cfg.deltas,
            plan,
            models: infos,
            runs,
            gpus: Gpus::new(gpus),
            actions: VecDeque::new(),
            now: Time::MIN,
        }
    }

    /// The epoch plan in force.
    pub fn plan(&self) -> &NexusPlan {
        &self.plan
    }

    fn pump(&mut self, now: Time) {
        self.now = self.now.max(now);
        for (w, run) in self.runs.iter_mut().enumerate() {
            if !self.gpus.is_free(w, now) {
                continue;
            }
            let n = run.slots.len();
            for k in 0..n {
                let s = (run.next + k) % n;
                let slot = &mut run.slots[s];
                let lat = &self.models[slot.model.0 as usize].latency;
                let (requests, deadline) = sliding_window(slot, lat, &self.deltas, now, &mut self.actions);
                if !requests.is_empty() {
                    let action = self
                        .gpus
                        .launch(w, slot.model, requests, deadline, now, &self.deltas, lat);
                    self.actions.push_back(action);
                    run.next = (s + 1) % n;
                    break;
                }
            }
        }
    }
}

/// Nexus' sliding window: aim for `min(batch, queued)`, drop heads that
/// would miss it, shrink the aim when too few requests remain.
fn sliding_window(
    slot: &mut Slot,
    lat: &LatencyTable,
    deltas: &Deltas,
    now: Time,
    out: &mut VecDeque<Action>,
) -> (Vec<RequestId>, Time) {
    let mut aim = (slot.batch as usize).min(slot.queue.len());
    let mut inputs: Vec<Entry> = Vec::with_capacity(aim);
    while inputs.len() < aim {
        let Some(e) = slot.queue.pop_first() else { break };
        let finish = now + deltas.lead(aim as u32) + lat.get(aim as u32);
        if e.deadline < finish {
            out.push_back(Action::Reject {
                request: e.id,
                model: slot.model,
                reason: RejectReason::DeadlineUnattainable,
            });
        } else {
            inputs.push(e);
        }
        aim = aim.min(inputs.len() + slot.queue.len());
    }
    let deadline = inputs.first().map_or(Time::MAX, |e| e.deadline);
    (inputs.into_iter().map(|e| e.id).collect(), deadline)
}

impl Policy for Nexus {
    fn name(&self) -> &'static str {
        "nexus"
    }

    fn on_arrival(&mut self, a: Arrival, now: Time) {
        let Some(m) = self.models.get_mut(a.model.0 as usize) else {
            self.actions.push_back(Action::Reject {
                request: a.id,
                model: a.model,
                reason: RejectReason::UnknownModel,
            });
            return;
        };
        let Some(route) = m.route.as_mut() else {
            self.actions.push_back(Action::Reject {
                request: a.id,
                model: a.model,
                reason: RejectReason::Overloaded,
            });
            return;
        };
        let deadline = deadline_of(now, a.slo.unwrap_or(m.slo), &self.deltas);
        let (w, s) = route.pick();
        self.runs[w].slots[s].queue.push(Entry { deadline, id: a.id });
        self.pump(now);
    }

    fn on_batch_done(&mut self, batch: BatchId, _worker: WorkerId, _exec: Time, now: Time) {
        if self.gpus.done(batch, now).is_some() {
            self.pump(now);
        }
    }

    fn handle_timeout(&mut self, now: Time) {
        self.pump(now);
    }

    fn poll_timeout(&self) -> Option<Time> {
        // After a pump, requests wait only on busy GPUs.
        self.runs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.slots.iter().any(|s| !s.queue.is_empty()))
            .map(|(w, _)| self.gpus.free_at(w))
            .filter(|&f| f > self.now)
            .min()
    }

    fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::super::harness::{self, Fate};
    use super::*;
    use crate::core::MS;

    fn cfg() -> CoreConfig {
        harness::config()
    }

    /// A: the reference profile, SLO 100 ms, 2000 req/s. B: L(b) = b + 2 ms, SLO 50 ms, 1100 req/s.
    fn two_models() -> [SimModel; 2] {
        [
            harness::reference_model(100 * MS, 2000.0),
            harness::model("b", 64, |b| Time::from(b) * MS + 2 * MS, 50 * MS, 1100.0),
        ]
    }

    /// The plan for exactly the planned rates (no spare GPUs handed out).
    fn exact() -> NexusParams {
        NexusParams {
            fill_gpus: false,
            ..NexusParams::default()
        }
    }

    #[test]
    fn spare_gpus_are_given_to_the_models() {
        let models = two_models();
        let p = Nexus::new(&cfg(), &models, 8);
        let plan = p.plan();
        assert_eq!(plan.gpus.len(), 8);
        assert!(plan.rate_scale > 1.5, "{}", plan.rate_scale);
    }

    fn slots(g: &PlannedGpu) -> Vec<(u32, u32)> {
        g.slots.iter().map(|s| (s.model.0, s.batch)).collect()
    }

    #[test]
    fn two_models_are_planned_as_computed_by_hand() {
        // A: E = 49 ms → B = 40, L(40) = 48.484 ms, 825.01 req/s per GPU; n = 2.424:
        //    2 dedicated, residual 349.97 req/s (load 0.424).
        // B: E = 24 ms → B = 22, L(22) = 24 ms, 916.67 req/s per GPU; n = 1.2:
        //    1 dedicated, residual 183.33 req/s (load 0.2).
        // Shared: A alone would cycle at 49 ms; with B, C ≤ 24 ms:
        //    b_A = ⌈349.97·0.024⌉ = 9 (14.942 ms), b_B = ⌈183.33·0.024⌉ = 5 (7 ms): 21.942 ≤ 24.
        let models = two_models();
        let p = Nexus::with_params(&cfg(), &models, 4, exact());
        let plan = p.plan();
        assert_eq!(plan.rate_scale, 1.0);
        let got: Vec<_> = plan.gpus.iter().map(slots).collect();
        assert_eq!(
            got,
            vec![vec![(0, 40)], vec![(0, 40)], vec![(1, 22)], vec![(0, 9), (1, 5)]]
        );
        assert_eq!(plan.gpus[3].cycle, 24 * MS);
    }

    #[test]
    fn residuals_that_do_not_fit_together_get_their_own_gpus() {
        // B now L(b) = 2b + 10 ms (E = 24 ms → B = 7), 400 req/s: 1 dedicated, residual
        // 108.33 req/s. With A's residual, even b = 1 each needs 6.286 + 12 ms, and
        // any C ≥ 18.3 ms makes the batches too big to fit C.
        let models = [
            harness::reference_model(100 * MS, 2000.0),
            harness::model("b", 64, |b| 2 * Time::from(b) * MS + 10 * MS, 50 * MS, 400.0),
        ];
        let p = Nexus::with_params(&cfg(), &models, 8, exact());
        let got: Vec<_> = p.plan().gpus.iter().map(slots).collect();
        // A's residual alone cycles at 49 ms: ⌈349.97·0.049⌉ = 18.
        // B's alone at 24 ms: ⌈108.33·0.024⌉ = 3 (16 ms).
        assert_eq!(
            got,
            vec![vec![(0, 40)], vec![(0, 40)], vec![(1, 7)], vec![(0, 18)], vec![(1, 3)]]
        );
    }

    #[test]
    fn too_few_gpus_scale_the_rates_down() {
        let models = two_models();
        let p = Nexus::new(&cfg(), &models, 3);
        let plan = p.plan();
        assert!(plan.rate_scale < 1.0 && plan.rate_scale > 0.5, "{}", plan.rate_scale);
        assert!(plan.gpus.len() <= 3);
        for m in 0..2 {
            assert!(plan.gpus.iter().any(|g| g.slots.iter().any(|s| s.model.0 == m)));
        }
    }

    #[test]
    fn a_model_without_a_gpu_rejects() {
        let models = [
            harness::reference_model(100 * MS, 100.0),
            harness::reference_model(100 * MS, 0.0),
        ];
        let mut p = Nexus::new(&cfg(), &models, 2);
        let out = harness::run(&mut p, &models, harness::deltas(), 2, &[(0, ModelId(1))]);
        assert_eq!(
            out.fates[&0],
            Fate::Rejected {
                at: 0,
                reason: RejectReason::Overloaded
            }
        );
    }

    #[test]
    fn the_sliding_window_drops_heads_that_would_miss_the_full_batch() {
        // L(b) = b + 4 ms, SLO 30 ms → E = 14 ms, B = 10; planned at exactly one GPU.
        let rps = 10.0 / 0.014;
        let models = [harness::model("m", 32, |b| Time::from(b) * MS + 4 * MS, 30 * MS, rps)];
        let mut p = Nexus::new(&cfg(), &models, 1);
        assert_eq!(p.plan().gpus.len(), 1);
        // Request 0 runs alone (0.15 → 5.15 ms); 1..=10 (0.1 ms, d = 28.1 ms) go together
        // at 5.15 ms and run 5.75 → 19.75 ms. Request 11 (6 ms, d = 34 ms) and nine more
        // (10 ms, d = 38 ms) wait. At 19.75 ms a batch of 10 would finish at 34.35 ms:
        // request 11 is dropped (alone it would have made it), and the nine left go.
        let mut arrivals = vec![(0, ModelId(0))];
        arrivals.extend([(100_000, ModelId(0)); 10]);
        arrivals.push((6 * MS, ModelId(0)));
        arrivals.extend([(10 * MS, ModelId(0)); 9]);
        let out = harness::run(&mut p, &models, harness::deltas(), 1, &arrivals);
        assert_eq!(
            harness::dispatches(&out),
            vec![(0, 0, 1), (5_150_000, 0, 10), (19_750_000, 0, 9)]
        );
        assert_eq!(
            out.fates[&11],
            Fate::Rejected {
                at: 19_750_000,
                reason: RejectReason::DeadlineUnattainable
            }
        );
    }

    #[test]
    fn every_request_leaves_once_and_none_runs_late() {
        let models = [
            harness::reference_model(100 * MS, 1500.0),
            harness::model("small", 32, |b| 500_000 * Time::from(b) + 2 * MS, 25 * MS, 800.0),
        ];
        for (seed, gap) in [(1, 300_000), (2, 100_000), (3, 20_000)] {
            let arrivals = harness::lcg_arrivals(seed, 3000, 2, gap);
            let mut p = Nexus::new(&cfg(), &models, 3);
            let out = harness::run(&mut p, &models, harness::deltas(), 3, &arrivals);
            assert_eq!(harness::late(&out, &models, &harness::deltas(), &arrivals), 0);
        }
    }
}
