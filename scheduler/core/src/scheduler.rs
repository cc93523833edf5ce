//! The state machine that owns the queues, the candidates and the GPU pool.
//!
//! Every input (`on_arrival`, `on_batch_done`, `add_worker`,
//! `remove_worker`, `handle_timeout`) re-forms the candidates it affects and
//! may queue [`Action`]s; callers drain them with `poll_action` and ask
//! `poll_timeout` when to call `handle_timeout` next.
//!
//! A model's candidate is in one of three states: none (empty queue), timed
//! (waiting for its send time, in `timers`), or parked (its send time came
//! and no GPU was free by its start, in `parked`, ordered by
//! `invalid_after`). Parked candidates are retried, smallest `invalid_after`
//! first, whenever a GPU frees (its predicted free time passes, a
//! `BatchDone` arrives early, a worker joins) and re-formed when their
//! `invalid_after` passes.
//!
//! Longer than ~600 lines on purpose: about 570 lines of code and the tests that pin it, kept
//! beside the code they check (STYLE.md).

use std::collections::{BTreeSet, HashMap, VecDeque};

use super::candidate::{form, Candidate, FormParams};
use super::gpu_pool::{GpuPool, PoolError};
use super::min_tree::{MinTree, EMPTY};
use super::queue::{Entry, Queue};
use super::rate::RateMeter;
use super::target::{b_target, TargetParams};
use super::window::Deltas;
use super::{
    BatchId, Condition, DropPolicy, GpuChoice, LatencyTable, ModelId, RejectReason, RequestId, Time, WorkerId, MS, US,
};

/// The core's knobs (DESIGN.md §4). The runtime fills them from its `[scheduler]` settings,
/// whose documentation says what each one means and why the defaults are what they are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoreConfig {
    pub deltas: Deltas,
    pub drop_policy: DropPolicy,
    pub condition: Condition,
    pub gpu_choice: GpuChoice,
    pub rate_bucket: Time,
    pub rate_window: Time,
    /// Weight of each finished batch in the profile correction (0: off).
    pub profile_ewma: f64,
}

/// The runtime's defaults over NATS (the `[scheduler]` settings' defaults; a test in the
/// runtime keeps the two equal): δ_ctrl 1 ms, δ_data 50 µs, δ_resp 2 ms, ε 1 ms, default
/// policies, 50 ms rate buckets over 5 s, profile correction weight 0.05.
impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            deltas: Deltas {
                ctrl: MS,
                data: 50 * US,
                resp: 2 * MS,
                epsilon: MS,
            },
            drop_policy: DropPolicy::default(),
            condition: Condition::default(),
            gpu_choice: GpuChoice::default(),
            rate_bucket: 50 * MS,
            rate_window: 5_000 * MS,
            profile_ewma: 0.05,
        }
    }
}

impl CoreConfig {
    /// The constants of Symphony's evaluation (RDMA): δ_ctrl 100 µs, δ_data
    /// 50 µs, δ_resp 2 ms, ε 100 µs, with the default policies. The
    /// simulator uses these so its numbers compare with the paper's; the
    /// runtime's defaults (over NATS) are larger.
    pub fn paper() -> Self {
        Self {
            deltas: Deltas::PAPER,
            ..Self::default()
        }
    }
}

/// A model as the core needs it.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub name: String,
    pub latency: LatencyTable,
    /// The model's SLO, used when a request brings none.
    pub slo: Time,
}

/// A request's metadata: what the core sees of it (never its tensors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub id: RequestId,
    pub model: ModelId,
    /// The request's own SLO, if it brought one; else the model's.
    pub slo: Option<Time>,
}

/// A batch to run: send the plan now; the batch can start at `exec_at` and
/// should finish by `expected_finish`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPlan {
    pub batch_id: BatchId,
    pub worker: WorkerId,
    pub model: ModelId,
    /// Earliest deadline first.
    pub requests: Vec<RequestId>,
    /// The earliest deadline among `requests`.
    pub deadline: Time,
    pub sent_at: Time,
    pub exec_at: Time,
    pub expected_finish: Time,
    /// Only under `fcfs`: the batch is known to miss `deadline`.
    pub late: bool,
}

/// What the caller must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Dispatch(BatchPlan),
    Reject {
        request: RequestId,
        model: ModelId,
        reason: RejectReason,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    #[error("model id {0} is not registered with the scheduler")]
    UnknownModel(ModelId),
    #[error(transparent)]
    Pool(#[from] PoolError),
    #[error("batch {0} is not in flight (already done, or its worker was removed)")]
    UnknownBatch(BatchId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CandState {
    None,
    /// Waiting for its send time.
    Timed(Time),
    /// Waiting for a GPU; ranked by `invalid_after`, re-formed then unless
    /// the batch is already late (fcfs), which nothing can change.
    Parked {
        invalid_after: Time,
        expires: bool,
    },
}

#[derive(Debug)]
struct ModelState {
    spec: ModelSpec,
    queue: Queue,
    rate: RateMeter,
    b_target: u32,
    cand: CandState,
}

#[derive(Debug)]
struct InFlight {
    worker: WorkerId,
    model: ModelId,
    requests: Vec<Entry>,
    expected_finish: Time,
}

/// Recomputes `B_target` from the model's current rate estimate.
fn retarget(cfg: &CoreConfig, m: &mut ModelState) {
    let p = TargetParams {
        slo: m.spec.slo,
        delta_ctrl: cfg.deltas.ctrl,
        delta_data: cfg.deltas.data,
        delta_resp: cfg.deltas.resp,
    };
    m.b_target = b_target(&m.spec.latency, &p, m.rate.rate());
}

/// The deferred batch scheduler. See the module docs.
#[derive(Debug)]
pub struct Scheduler {
    cfg: CoreConfig,
    models: Vec<ModelState>,
    pool: GpuPool,
    /// Batches in flight per worker, in dispatch order.
    worker_batches: HashMap<WorkerId, VecDeque<BatchId>>,
    inflight: HashMap<BatchId, InFlight>,
    /// Send times of timed candidates by model: a send time that moves on
    /// every arrival costs one O(log models) update.
    timers: MinTree,
    parked: BTreeSet<(Time, ModelId)>,
    /// The parked candidates that are re-formed when `invalid_after` passes.
    expiries: BTreeSet<(Time, ModelId)>,
    /// Parked candidates were last retried for GPUs freeing up to here.
    retried_until: Time,
    actions: VecDeque<Action>,
    next_batch: u64,
}

impl Scheduler {
    pub fn new(cfg: CoreConfig) -> Self {
        Self {
            cfg,
            models: Vec::new(),
            pool: GpuPool::default(),
            worker_batches: HashMap::new(),
            inflight: HashMap::new(),
            timers: MinTree::with_capacity(1),
            parked: BTreeSet::new(),
            expiries: BTreeSet::new(),
            retried_until: Time::MIN,
            actions: VecDeque::new(),
            next_batch: 0,
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    /// Registers a model; its id is its index.
    pub fn add_model(&mut self, spec: ModelSpec) -> ModelId {
        let id = ModelId(self.models.len() as u32);
        self.timers.ensure(self.models.len() + 1);
        let rate = RateMeter::new(self.cfg.rate_bucket, self.cfg.rate_window);
        let mut m = ModelState {
            spec,
            queue: Queue::default(),
            rate,
            b_target: 1,
            cand: CandState::None,
        };
        retarget(&self.cfg, &mut m);
        self.models.push(m);
        id
    }

    /// The id of the model called `name`.
    pub fn model_id(&self, name: &str) -> Option<ModelId> {
        self.models
            .iter()
            .position(|m| m.spec.name == name)
            .map(|i| ModelId(i as u32))
    }

    pub fn model_spec(&self, m: ModelId) -> Option<&ModelSpec> {
        self.models.get(m.0 as usize).map(|s| &s.spec)
    }

    pub fn num_models(&self) -> usize {
        self.models.len()
    }

    /// Requests of `m` waiting to be dispatched.
    pub fn queue_len(&self, m: ModelId) -> usize {
        self.models.get(m.0 as usize).map_or(0, |s| s.queue.len())
    }

    /// The current target batch size of `m`.
    pub fn b_target(&self, m: ModelId) -> Option<u32> {
        self.models.get(m.0 as usize).map(|s| s.b_target)
    }

    /// The measured arrival rate of `m`, if known.
    pub fn rate(&self, m: ModelId) -> Option<f64> {
        self.models.get(m.0 as usize).and_then(|s| s.rate.rate())
    }

    pub fn num_workers(&self) -> usize {
        self.pool.len()
    }

    /// Workers in join order with their predicted free times.
    pub fn workers(&self) -> Vec<(WorkerId, Time)> {
        self.pool.workers()
    }

    pub fn inflight_batches(&self) -> usize {
        self.inflight.len()
    }

    /// A request arrives at `now`.
    pub fn on_arrival(&mut self, a: Arrival, now: Time) {
        let Some(state) = self.models.get_mut(a.model.0 as usize) else {
            self.actions.push_back(Action::Reject {
                request: a.id,
                model: a.model,
                reason: RejectReason::UnknownModel,
            });
            return;
        };
        let slo = a.slo.unwrap_or(state.spec.slo);
        let deadline = now + slo - self.cfg.deltas.resp;
        state.queue.push(Entry { deadline, id: a.id });
        if state.rate.hit(now) {
            retarget(&self.cfg, state);
        }
        self.update(a.model, now);
    }

    /// Adds a worker serving `models`, free from `now`.
    pub fn add_worker(&mut self, w: WorkerId, models: &[ModelId], now: Time) -> Result<(), CoreError> {
        if let Some(&m) = models.iter().find(|m| m.0 as usize >= self.models.len()) {
            return Err(CoreError::UnknownModel(m));
        }
        self.pool.add(w, models.to_vec(), now)?;
        self.worker_batches.insert(w, VecDeque::new());
        self.retry_parked(now);
        Ok(())
    }

    /// Removes a worker (it left, or was declared dead). Its in-flight
    /// requests come back: re-queued if they can still make their deadline
    /// at batch size one, else rejected `worker_lost`.
    pub fn remove_worker(&mut self, w: WorkerId, now: Time) -> Result<(), CoreError> {
        if self.pool.contains(w) {
            self.pool.remove(w)?;
        } else if !self.worker_batches.contains_key(&w) {
            return Err(PoolError::Unknown(w).into());
        }
        let batches = self.worker_batches.remove(&w).unwrap_or_default();
        let mut touched = Vec::new();
        for b in batches {
            let Some(fl) = self.inflight.remove(&b) else { continue };
            let m = &mut self.models[fl.model.0 as usize];
            let soonest = now + self.cfg.deltas.lead(1) + m.spec.latency.get(1);
            for e in fl.requests {
                if e.deadline >= soonest {
                    m.queue.push(e);
                } else {
                    self.actions.push_back(Action::Reject {
                        request: e.id,
                        model: fl.model,
                        reason: RejectReason::WorkerLost,
                    });
                }
            }
            touched.push(fl.model);
        }
        touched.sort_unstable();
        touched.dedup();
        for m in touched {
            self.update(m, now);
        }
        // Parked candidates may have just lost their last possible worker.
        self.retry_parked(now);
        Ok(())
    }

    /// Like [`Scheduler::on_batch_done`], with how long the batch really
    /// ran: the model's latency table is corrected towards it (see
    /// `latency.rs`), and its target batch size follows.
    pub fn on_batch_done_after(&mut self, batch: BatchId, exec: Time, now: Time) -> Result<(), CoreError> {
        if self.cfg.profile_ewma > 0.0 {
            if let Some(fl) = self.inflight.get(&batch) {
                let state = &mut self.models[fl.model.0 as usize];
                state
                    .spec
                    .latency
                    .observe(fl.requests.len() as u32, exec, self.cfg.profile_ewma);
                retarget(&self.cfg, state);
            }
        }
        self.on_batch_done(batch, now)
    }

    /// The correction factor (actual / profiled) of `m`'s latency table.
    pub fn latency_factor(&self, m: ModelId) -> Option<f64> {
        self.models.get(m.0 as usize).map(|s| s.spec.latency.factor())
    }

    /// Stops giving `w` new batches; what it already has stays in flight
    /// (its `BatchDone`s are still taken). Follow with `remove_worker` once
    /// it has finished, or it is lost.
    pub fn drain_worker(&mut self, w: WorkerId) -> Result<(), CoreError> {
        self.pool.remove(w)?;
        Ok(())
    }

    /// Whether `w` is registered (taking work, or draining).
    pub fn has_worker(&self, w: WorkerId) -> bool {
        self.worker_batches.contains_key(&w)
    }

    /// A worker reports that a batch finished at `now`; its GPU's predicted
    /// free time is corrected from the prediction to what happened.
    pub fn on_batch_done(&mut self, batch: BatchId, now: Time) -> Result<(), CoreError> {
        let fl = self.inflight.remove(&batch).ok_or(CoreError::UnknownBatch(batch))?;
        let queue = self.worker_batches.get_mut(&fl.worker);
        if let Some(q) = queue {
            if let Some(pos) = q.iter().position(|&b| b == batch) {
                q.remove(pos);
            }
            let free = if q.is_empty() {
                now
            } else {
                // Later batches shift by this one's error.
                let f = self.pool.free_at(fl.worker).unwrap_or(now);
                (f + (now - fl.expected_finish)).max(now)
            };
            self.pool.set_free_at(fl.worker, free);
        }
        self.retry_parked(now);
        Ok(())
    }

    /// When the core next needs `handle_timeout`, if ever.
    pub fn poll_timeout(&self) -> Option<Time> {
        let mut t = Some(self.timers.min()).filter(|&t| t != EMPTY);
        if !self.parked.is_empty() {
            if let Some(&(inv, _)) = self.expiries.first() {
                t = Some(t.map_or(inv, |t| t.min(inv)));
            }
            if let Some(f) = self.pool.next_free_after(self.retried_until) {
                t = Some(t.map_or(f, |t| t.min(f)));
            }
        }
        t
    }

    /// Runs everything due at or before `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        while let Some(m) = self.timers.leftmost_le(now) {
            self.update(ModelId(m as u32), now);
        }
        while let Some(&(inv, m)) = self.expiries.first() {
            if inv > now {
                break;
            }
            self.update(m, now);
        }
        if !self.parked.is_empty() && self.pool.next_free_after(self.retried_until).is_some_and(|f| f <= now) {
            self.retry_parked(now);
        }
    }

    /// The next decision, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    fn retry_parked(&mut self, now: Time) {
        self.retried_until = now;
        if self.parked.is_empty() {
            return;
        }
        let parked: Vec<ModelId> = self.parked.iter().map(|&(_, m)| m).collect();
        for m in parked {
            self.update(m, now);
        }
    }

    /// Forms `m`'s candidate (rejections go to the action queue).
    fn form(&mut self, m: ModelId, now: Time, gpu_free: Option<Time>) -> Option<Candidate> {
        let state = &mut self.models[m.0 as usize];
        if state.rate.advance(now) {
            retarget(&self.cfg, state);
        }
        // fcfs keeps late requests for the GPU that will run them; with no
        // worker serving the model there is none, so hopeless ones go.
        let policy = match self.cfg.drop_policy {
            DropPolicy::Fcfs if !self.pool.serves(m) => DropPolicy::DropTimeout,
            p => p,
        };
        let params = FormParams {
            lat: &state.spec.latency,
            deltas: &self.cfg.deltas,
            policy,
            condition: self.cfg.condition,
            b_target: state.b_target,
        };
        let actions = &mut self.actions;
        form(&mut state.queue, &params, now, gpu_free, |e| {
            actions.push_back(Action::Reject {
                request: e.id,
                model: m,
                reason: RejectReason::DeadlineUnattainable,
            })
        })
    }

    fn set_state(&mut self, m: ModelId, new: CandState) {
        let state = &mut self.models[m.0 as usize];
        if state.cand == new {
            return;
        }
        match state.cand {
            CandState::None => {}
            CandState::Timed(_) => self.timers.set(m.0 as usize, EMPTY),
            CandState::Parked { invalid_after, expires } => {
                self.parked.remove(&(invalid_after, m));
                if expires {
                    self.expiries.remove(&(invalid_after, m));
                }
            }
        }
        match new {
            CandState::None => {}
            CandState::Timed(t) => self.timers.set(m.0 as usize, t),
            CandState::Parked { invalid_after, expires } => {
                self.parked.insert((invalid_after, m));
                if expires {
                    self.expiries.insert((invalid_after, m));
                }
            }
        }
        state.cand = new;
    }

    /// Re-forms `m`'s candidate at `now` and acts on it: wait for its send
    /// time, dispatch it to a GPU free by its start, or park it. Repeats
    /// after each dispatch, since what is left may be due too.
    fn update(&mut self, m: ModelId, now: Time) {
        loop {
            let Some(c) = self.form(m, now, None) else {
                self.set_state(m, CandState::None);
                return;
            };
            let send_at = c.send_at(&self.cfg.deltas);
            if send_at > now {
                self.set_state(m, CandState::Timed(send_at));
                return;
            }
            let Some(w) = self.pool.pick(m, c.window.exec_at, self.cfg.gpu_choice) else {
                let parked = CandState::Parked {
                    invalid_after: c.window.invalid_after,
                    expires: !c.late,
                };
                self.set_state(m, parked);
                return;
            };
            self.set_state(m, CandState::None);
            self.dispatch(m, w, now);
        }
    }

    /// Grants worker `w` to `m`: re-forms the batch for `w`'s free time and
    /// emits the plan.
    fn dispatch(&mut self, m: ModelId, w: WorkerId, now: Time) {
        let g = self.pool.free_at(w).expect("picked from the pool");
        let Some(c) = self.form(m, now, Some(g)) else { return };
        let exec_at = (now + self.cfg.deltas.lead(c.b)).max(g);
        let state = &mut self.models[m.0 as usize];
        let expected_finish = exec_at + state.spec.latency.get(c.b);
        let mut entries = Vec::with_capacity(c.b as usize);
        for _ in 0..c.b {
            entries.push(state.queue.pop_first().expect("candidate is a prefix of the queue"));
        }
        let batch_id = BatchId(self.next_batch);
        self.next_batch += 1;
        self.pool.set_free_at(w, expected_finish);
        self.worker_batches.entry(w).or_default().push_back(batch_id);
        let plan = BatchPlan {
            batch_id,
            worker: w,
            model: m,
            requests: entries.iter().map(|e| e.id).collect(),
            deadline: c.deadline,
            sent_at: now,
            exec_at,
            expected_finish,
            late: c.late,
        };
        self.inflight.insert(
            batch_id,
            InFlight {
                worker: w,
                model: m,
                requests: entries,
                expected_finish,
            },
        );
        self.actions.push_back(Action::Dispatch(plan));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// L(b) = 1 ms + 1 ms·b up to 8; SLO 42 ms, so deadline = arrival + 40 ms
    /// with the default δ_resp of 2 ms. δ_ctrl 100 µs, δ_data 50 µs, ε 100 µs.
    fn core(workers: u64, choice: GpuChoice) -> (Scheduler, ModelId) {
        let mut s = Scheduler::new(CoreConfig {
            gpu_choice: choice,
            ..CoreConfig::paper()
        });
        let m = s.add_model(ModelSpec {
            name: "m".into(),
            latency: LatencyTable::from_fn(8, |b| MS + MS * Time::from(b)),
            slo: 42 * MS,
        });
        for w in 0..workers {
            s.add_worker(WorkerId(w), &[m], 0).unwrap();
        }
        (s, m)
    }

    fn arrive(s: &mut Scheduler, m: ModelId, id: u64, now: Time) {
        s.on_arrival(
            Arrival {
                id: RequestId(id),
                model: m,
                slo: None,
            },
            now,
        );
    }

    fn plans(s: &mut Scheduler) -> Vec<BatchPlan> {
        let mut v = vec![];
        while let Some(a) = s.poll_action() {
            match a {
                Action::Dispatch(p) => v.push(p),
                other => panic!("unexpected {other:?}"),
            }
        }
        v
    }

    #[test]
    fn one_request_waits_until_t_f() {
        let (mut s, m) = core(1, GpuChoice::Consolidate);
        arrive(&mut s, m, 1, 0);
        // D = 40 ms; t_f = 40 − 0.1 − L(2) − 0.05 = 36.85 ms; sent 150 µs earlier.
        assert_eq!(s.poll_timeout(), Some(36_700 * US));
        assert!(plans(&mut s).is_empty());
        s.handle_timeout(36_700 * US);
        let p = plans(&mut s);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].requests, vec![RequestId(1)]);
        assert_eq!(p[0].exec_at, 36_850 * US);
        assert_eq!(p[0].expected_finish, 38_850 * US);
        assert_eq!(p[0].worker, WorkerId(0));
    }

    #[test]
    fn arrivals_grow_the_batch_and_bring_the_send_time_forward() {
        let (mut s, m) = core(1, GpuChoice::Consolidate);
        arrive(&mut s, m, 1, 0);
        arrive(&mut s, m, 2, 10 * MS);
        // b = 2: t_f = 40 − 0.1 − L(3) − 0.05 = 35.85 ms, sent at 35.65 ms.
        assert_eq!(s.poll_timeout(), Some(35_650 * US));
        s.handle_timeout(35_650 * US);
        let p = plans(&mut s);
        assert_eq!(p[0].requests, vec![RequestId(1), RequestId(2)]);
    }

    #[test]
    fn consolidate_reuses_the_lowest_rank_and_earliest_spreads() {
        for (choice, second) in [
            (GpuChoice::Consolidate, WorkerId(0)),
            (GpuChoice::Earliest, WorkerId(1)),
        ] {
            let (mut s, m) = core(3, choice);
            arrive(&mut s, m, 1, 0);
            s.handle_timeout(36_700 * US);
            let first = plans(&mut s).remove(0);
            assert_eq!(first.worker, WorkerId(0));
            s.on_batch_done(first.batch_id, first.expected_finish).unwrap();
            arrive(&mut s, m, 2, 50 * MS);
            let t = s.poll_timeout().unwrap();
            s.handle_timeout(t);
            assert_eq!(plans(&mut s)[0].worker, second, "{choice:?}");
        }
    }

    #[test]
    fn lost_worker_requeues_what_can_still_make_it() {
        let (mut s, m) = core(2, GpuChoice::Consolidate);
        arrive(&mut s, m, 1, 0);
        s.handle_timeout(36_700 * US);
        let first = plans(&mut s).remove(0);
        assert_eq!(first.worker, WorkerId(0));
        // At 37 ms a batch of one can still finish by 40 ms (37.15 + 2).
        s.remove_worker(WorkerId(0), 37 * MS).unwrap();
        let again = plans(&mut s);
        assert_eq!(again.len(), 1);
        assert_eq!(
            (again[0].worker, again[0].requests.clone()),
            (WorkerId(1), vec![RequestId(1)])
        );
        assert_eq!(
            s.on_batch_done(first.batch_id, 38 * MS),
            Err(CoreError::UnknownBatch(first.batch_id))
        );
    }

    #[test]
    fn lost_worker_rejects_what_cannot() {
        let (mut s, m) = core(2, GpuChoice::Consolidate);
        arrive(&mut s, m, 1, 0);
        s.handle_timeout(36_700 * US);
        plans(&mut s);
        s.remove_worker(WorkerId(0), 38_500 * US).unwrap();
        assert_eq!(
            s.poll_action(),
            Some(Action::Reject {
                request: RequestId(1),
                model: m,
                reason: RejectReason::WorkerLost
            })
        );
        assert_eq!(s.poll_action(), None);
    }

    #[test]
    fn a_late_batch_done_still_frees_the_gpu_in_time() {
        let (mut s, m) = core(1, GpuChoice::Consolidate);
        // Fill the GPU with 8 requests sent at once (max batch does not wait).
        for i in 0..8 {
            arrive(&mut s, m, i, 0);
        }
        let first = plans(&mut s).remove(0);
        assert_eq!(first.requests.len(), 8);
        // Busy until 0.5 + 9 = 9.5 ms. A request at 1 ms with deadline
        // 41 ms wants to start by t_f = 41 − 0.1 − 3 − 0.05 = 37.85 ms: fine.
        assert_eq!(first.expected_finish, 9_500 * US);
        arrive(&mut s, m, 100, MS);
        assert_eq!(s.poll_timeout(), Some(37_700 * US));
        // The worker reports done late, at 20 ms: still free in time.
        s.on_batch_done(first.batch_id, 20 * MS).unwrap();
        s.handle_timeout(37_700 * US);
        assert_eq!(plans(&mut s)[0].requests, vec![RequestId(100)]);
    }

    #[test]
    fn busy_gpu_parks_the_candidate_until_it_frees() {
        for early_done in [false, true] {
            let (mut s, m) = core(1, GpuChoice::Consolidate);
            for i in 0..16 {
                arrive(&mut s, m, i, 0);
            }
            // The first 8 go at once; the next 8 are due too (max batch)
            // but the only GPU is busy until 9.5 ms: parked.
            let first = plans(&mut s).remove(0);
            assert_eq!(first.requests.len(), 8);
            assert_eq!(s.queue_len(m), 8);
            assert_eq!(s.poll_timeout(), Some(9_500 * US));
            let (now, g) = if early_done {
                // Done early at 5 ms: the parked batch goes right away.
                s.on_batch_done(first.batch_id, 5 * MS).unwrap();
                (5 * MS, 5 * MS)
            } else {
                s.handle_timeout(9_500 * US);
                (9_500 * US, 9_500 * US)
            };
            let second = plans(&mut s);
            assert_eq!(second.len(), 1, "early_done = {early_done}");
            assert_eq!(second[0].requests.len(), 8);
            assert_eq!(second[0].sent_at, now);
            assert_eq!(second[0].exec_at, (now + 500 * US).max(g));
        }
    }

    #[test]
    fn a_draining_worker_finishes_its_batch_and_gets_no_more() {
        let (mut s, m) = core(2, GpuChoice::Consolidate);
        arrive(&mut s, m, 1, 0);
        s.handle_timeout(36_700 * US);
        let first = plans(&mut s).remove(0);
        assert_eq!(first.worker, WorkerId(0));
        s.drain_worker(WorkerId(0)).unwrap();
        arrive(&mut s, m, 2, 37 * MS);
        let t = s.poll_timeout().unwrap();
        s.handle_timeout(t);
        assert_eq!(plans(&mut s)[0].worker, WorkerId(1));
        s.on_batch_done(first.batch_id, first.expected_finish).unwrap();
        assert!(s.has_worker(WorkerId(0)));
        s.remove_worker(WorkerId(0), 40 * MS).unwrap();
        assert_eq!(s.poll_action(), None, "nothing was in flight any more");
        assert!(!s.has_worker(WorkerId(0)));
        assert!(s.remove_worker(WorkerId(0), 41 * MS).is_err());
    }

    #[test]
    fn no_worker_rejects_when_hopeless() {
        let (mut s, m) = core(0, GpuChoice::Consolidate);
        arrive(&mut s, m, 1, 0);
        let mut now = 0;
        while let Some(t) = s.poll_timeout() {
            now = t;
            s.handle_timeout(t);
        }
        assert_eq!(
            s.poll_action(),
            Some(Action::Reject {
                request: RequestId(1),
                model: m,
                reason: RejectReason::DeadlineUnattainable
            })
        );
        // Rejected once it could no longer finish by its 40 ms deadline.
        assert!(now > 37 * MS && now <= 40 * MS, "{now}");
    }
}

#[cfg(test)]
mod runtime_defaults {
    use super::*;

    #[test]
    fn a_lone_request_after_a_batch_is_served() {
        let mut s = Scheduler::new(CoreConfig::default());
        let m = s.add_model(ModelSpec {
            name: "m".into(),
            latency: LatencyTable::from_fn(256, |b| 200 * US * Time::from(b) + 2 * MS),
            slo: 100 * MS,
        });
        s.add_worker(WorkerId(0), &[m], 0).unwrap();
        // Each request alone: deferred to its last moment, then served.
        for (i, at) in [0, 98 * MS, 200 * MS].into_iter().enumerate() {
            s.on_arrival(
                Arrival {
                    id: RequestId(i as u64),
                    model: m,
                    slo: Some(100 * MS),
                },
                at,
            );
            while let Some(t) = s.poll_timeout() {
                s.handle_timeout(t);
                while let Some(a) = s.poll_action() {
                    match a {
                        Action::Dispatch(p) => s.on_batch_done(p.batch_id, p.exec_at + 100 * US).unwrap(),
                        other => panic!("{other:?} at {t}"),
                    }
                }
            }
        }
    }
}
