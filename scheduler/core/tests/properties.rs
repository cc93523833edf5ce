//! Properties of the scheduling core over random arrival sequences,
//! profiles, GPU counts and worker churn: every request leaves exactly once,
//! no batch starts early or is planned to finish late, ample GPUs reject
//! nothing, and the same inputs give the same outputs.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use baton_core::{
    Action, Arrival, BatchId, BatchPlan, Condition, CoreConfig, DropPolicy, GpuChoice, LatencyTable, ModelId,
    ModelSpec, RejectReason, RequestId, Scheduler, Time, WorkerId, MS, US,
};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Model {
    slope_us: i64,
    intercept_us: i64,
    max_batch: u32,
    slo_ms: i64,
}

#[derive(Debug, Clone)]
enum Op {
    /// A request for model (index mod #models) after `gap_us`.
    Arrive { gap_us: i64, model: usize },
    /// Remove the worker (index mod #live) after `gap_us`.
    RemoveWorker { gap_us: i64, which: usize },
    /// Add a new worker after `gap_us`.
    AddWorker { gap_us: i64 },
}

#[derive(Debug, Clone)]
struct Case {
    models: Vec<Model>,
    gpus: usize,
    ops: Vec<Op>,
    policy: DropPolicy,
    condition: Condition,
    choice: GpuChoice,
    /// Batches take `L(b)·jitter_pct/100` instead of exactly `L(b)`.
    jitter_pct: Vec<i64>,
}

fn model() -> impl Strategy<Value = Model> {
    (50i64..2_000, 500i64..10_000, 1u32..48, 0i64..150).prop_map(|(slope, intercept, max_batch, extra)| {
        // SLO at least comfortably above one batch of one.
        let min_slo = (2 * (slope + intercept) + 2_500) / 1_000 + 1;
        Model {
            slope_us: slope,
            intercept_us: intercept,
            max_batch,
            slo_ms: min_slo + extra,
        }
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (0i64..3_000, 0usize..8).prop_map(|(gap_us, model)| Op::Arrive { gap_us, model }),
        1 => (0i64..20_000, 0usize..8).prop_map(|(gap_us, which)| Op::RemoveWorker { gap_us, which }),
        1 => (0i64..20_000).prop_map(|gap_us| Op::AddWorker { gap_us }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec(model(), 1..4),
        1usize..6,
        prop::collection::vec(op(), 1..400),
        prop_oneof![
            Just(DropPolicy::WindowDrop),
            Just(DropPolicy::DropTimeout),
            Just(DropPolicy::Fcfs)
        ],
        prop_oneof![Just(Condition::Deferred), Just(Condition::Eager)],
        prop_oneof![Just(GpuChoice::Consolidate), Just(GpuChoice::Earliest)],
        prop::collection::vec(50i64..200, 1..8),
    )
        .prop_map(|(models, gpus, ops, policy, condition, choice, jitter_pct)| Case {
            models,
            gpus,
            ops,
            policy,
            condition,
            choice,
            jitter_pct,
        })
}

fn config(c: &Case) -> CoreConfig {
    CoreConfig {
        drop_policy: c.policy,
        condition: c.condition,
        gpu_choice: c.choice,
        ..CoreConfig::paper()
    }
}

fn latency(m: &Model) -> LatencyTable {
    LatencyTable::from_fn(m.max_batch, |b| (m.slope_us * i64::from(b) + m.intercept_us) * US)
}

/// Everything a run produced, in order.
#[derive(Debug, Default, PartialEq)]
struct Log {
    actions: Vec<(Time, Action)>,
}

/// What happened to each request in the end.
#[derive(Debug, Default)]
struct Outcomes {
    arrived: Vec<(RequestId, Time)>,
    completed: HashMap<RequestId, usize>,
    rejected: HashMap<RequestId, Vec<RejectReason>>,
}

/// Drives the core in virtual time: batches complete at exec_at + L(b)·jitter,
/// removed workers' batches never complete. Runs until everything settles.
fn drive(c: &Case) -> (Log, Outcomes, Vec<String>) {
    let cfg = config(c);
    let mut core = Scheduler::new(cfg);
    let lats: Vec<LatencyTable> = c.models.iter().map(latency).collect();
    let ids: Vec<ModelId> = c
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            core.add_model(ModelSpec {
                name: format!("m{i}"),
                latency: lats[i].clone(),
                slo: m.slo_ms * MS,
            })
        })
        .collect();
    let mut live: Vec<WorkerId> = Vec::new();
    let mut next_worker = 0u64;
    for _ in 0..c.gpus {
        core.add_worker(WorkerId(next_worker), &ids, 0).unwrap();
        live.push(WorkerId(next_worker));
        next_worker += 1;
    }

    let mut log = Log::default();
    let mut out = Outcomes::default();
    let mut violations = Vec::new();
    let mut deadlines: HashMap<RequestId, Time> = HashMap::new();
    let mut batches: HashMap<BatchId, (WorkerId, BatchPlan)> = HashMap::new();
    let mut done: BinaryHeap<Reverse<(Time, BatchId)>> = BinaryHeap::new();
    // Per worker: when its last dispatched batch really finishes.
    let mut really_free: BTreeMap<WorkerId, Time> = BTreeMap::new();
    let mut ops = c.ops.iter();
    let mut next_op: Option<(Time, &Op)> = None;
    let mut clock: Time = 0;
    let mut next_req = 0u64;
    let mut jitter = c.jitter_pct.iter().cycle();
    let mut steps = 0usize;

    loop {
        steps += 1;
        assert!(steps < 1_000_000, "the core never settles");
        if next_op.is_none() {
            if let Some(op) = ops.next() {
                let gap = match op {
                    Op::Arrive { gap_us, .. } | Op::RemoveWorker { gap_us, .. } | Op::AddWorker { gap_us } => *gap_us,
                };
                clock += gap * US;
                next_op = Some((clock, op));
            }
        }
        let to = next_op.map_or(Time::MAX, |(t, _)| t);
        let td = done.peek().map_or(Time::MAX, |Reverse((t, _))| *t);
        let tt = core.poll_timeout().unwrap_or(Time::MAX);
        let now = to.min(td).min(tt);
        if now == Time::MAX {
            break;
        }
        if td == now {
            let Reverse((_, b)) = done.pop().unwrap();
            if let Some((_, plan)) = batches.remove(&b) {
                core.on_batch_done(b, now).unwrap();
                for r in plan.requests {
                    *out.completed.entry(r).or_default() += 1;
                }
            }
        } else if tt == now {
            core.handle_timeout(now);
        } else {
            let (_, op) = next_op.take().unwrap();
            match op {
                Op::Arrive { model, .. } => {
                    let mi = model % ids.len();
                    let id = RequestId(next_req);
                    next_req += 1;
                    deadlines.insert(id, now + c.models[mi].slo_ms * MS - cfg.deltas.resp);
                    out.arrived.push((id, now));
                    core.on_arrival(
                        Arrival {
                            id,
                            model: ids[mi],
                            slo: None,
                        },
                        now,
                    );
                }
                Op::RemoveWorker { which, .. } => {
                    if !live.is_empty() {
                        let w = live.remove(which % live.len());
                        core.remove_worker(w, now).unwrap();
                        batches.retain(|_, (bw, _)| *bw != w);
                        really_free.remove(&w);
                    }
                }
                Op::AddWorker { .. } => {
                    let w = WorkerId(next_worker);
                    next_worker += 1;
                    core.add_worker(w, &ids, now).unwrap();
                    live.push(w);
                }
            }
        }
        while let Some(a) = core.poll_action() {
            match &a {
                Action::Dispatch(p) => {
                    let b = p.requests.len() as u32;
                    let lead = cfg.deltas.ctrl + Time::from(b) * cfg.deltas.data;
                    if p.exec_at < p.sent_at + lead {
                        violations.push(format!("batch {} starts before its earliest time: {p:?}", p.batch_id));
                    }
                    if p.sent_at != now {
                        violations.push(format!("plan sent at {} but emitted at {now}", p.sent_at));
                    }
                    let earliest = p.requests.iter().map(|r| deadlines[r]).min().unwrap();
                    if earliest != p.deadline {
                        violations.push(format!(
                            "plan deadline {} ≠ earliest request deadline {earliest}",
                            p.deadline
                        ));
                    }
                    if !p.late && p.expected_finish > p.deadline {
                        violations.push(format!(
                            "batch {} planned to finish after its deadline: {p:?}",
                            p.batch_id
                        ));
                    }
                    if p.late && c.policy != DropPolicy::Fcfs {
                        violations.push(format!("late batch under {:?}", c.policy));
                    }
                    let mi = p.model.0 as usize;
                    if b == 0 || b > c.models[mi].max_batch {
                        violations.push(format!("batch size {b} outside 1..={}", c.models[mi].max_batch));
                    }
                    if p.expected_finish != p.exec_at + lats[mi].get(b) {
                        violations.push(format!("expected finish ≠ exec_at + L(b): {p:?}"));
                    }
                    if !live.contains(&p.worker) {
                        violations.push(format!("plan for a removed worker {}", p.worker));
                    }
                    // The batch really runs when the worker is free and its inputs are there.
                    let start = p.exec_at.max(*really_free.get(&p.worker).unwrap_or(&Time::MIN));
                    let pct = *jitter.next().unwrap();
                    let finish = start + lats[mi].get(b) * pct / 100;
                    really_free.insert(p.worker, finish);
                    done.push(Reverse((finish, p.batch_id)));
                    batches.insert(p.batch_id, (p.worker, p.clone()));
                }
                Action::Reject { request, reason, .. } => {
                    out.rejected.entry(*request).or_default().push(*reason);
                }
            }
            log.actions.push((now, a));
        }
    }
    (log, out, violations)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_request_leaves_exactly_once(c in case()) {
        let (_, out, violations) = drive(&c);
        prop_assert!(violations.is_empty(), "{:#?}", violations);
        for (id, _) in &out.arrived {
            let done = out.completed.get(id).copied().unwrap_or(0);
            let rejected = out.rejected.get(id).map_or(0, Vec::len);
            prop_assert_eq!(done + rejected, 1, "request {} completed {} times, rejected {:?}", id, done, out.rejected.get(id));
        }
        prop_assert_eq!(out.completed.len() + out.rejected.len(), out.arrived.len());
    }

    #[test]
    fn same_inputs_same_outputs(c in case()) {
        let (a, _, _) = drive(&c);
        let (b, _, _) = drive(&c);
        prop_assert_eq!(a, b);
    }

    /// A steady rate well within capacity, with GPUs to spare: nothing is rejected.
    #[test]
    fn ample_gpus_reject_nothing(
        m in model(),
        per_gpu_load in 0.05f64..0.5,
        gpus in 1usize..5,
        n in 50usize..600,
        condition in prop_oneof![Just(Condition::Deferred), Just(Condition::Eager)],
        choice in prop_oneof![Just(GpuChoice::Consolidate), Just(GpuChoice::Earliest)],
    ) {
        // Capacity at batch 1 (the worst case): one request per L(1) per GPU.
        let l1_us = m.slope_us + m.intercept_us;
        let gap_us = ((l1_us as f64) / (per_gpu_load * gpus as f64)).ceil() as i64;
        let c = Case {
            models: vec![m],
            gpus,
            ops: (0..n).map(|_| Op::Arrive { gap_us, model: 0 }).collect(),
            policy: DropPolicy::WindowDrop,
            condition,
            choice,
            jitter_pct: vec![100],
        };
        let (_, out, violations) = drive(&c);
        prop_assert!(violations.is_empty(), "{:#?}", violations);
        prop_assert!(out.rejected.is_empty(), "rejected {} of {}: {:?}", out.rejected.len(), n, out.rejected);
        prop_assert_eq!(out.completed.len(), n);
    }
}

#[test]
fn unknown_model_is_rejected() {
    let mut core = Scheduler::new(CoreConfig::default());
    core.on_arrival(
        Arrival {
            id: RequestId(1),
            model: ModelId(3),
            slo: None,
        },
        0,
    );
    assert_eq!(
        core.poll_action(),
        Some(Action::Reject {
            request: RequestId(1),
            model: ModelId(3),
            reason: RejectReason::UnknownModel
        })
    );
}
