//! Workloads: which models are served, with which profile and SLO, and when their requests arrive.
//!
//! # Why this format
//!
//! Baton is measured against Symphony, whose public benchmark describes a run in a small YAML
//! file. The simulator and the load generator read those files **unchanged** (the ones in
//! `../shared/workloads/`), so a Baton result and a Symphony result describe the same run, request
//! for request in distribution. Nothing here adds keys of its own.
//!
//! ```yaml
//! seed: 0xabcdabcd987          # integer; decimal or 0x-hex (also accepted as a quoted string)
//! multithread: false           # accepted and ignored (Symphony's runner option)
//! dump_schedule: false         # accepted and ignored (Symphony's runner option)
//! gpus: 8
//! models:
//! - framework: sleep#1082,5204,0,0   # l(b) = 1082·b + 5204 µs, pre 0, post 0
//!   model: resnet_0                  # name
//!   slo: 100                         # milliseconds
//!   gap: const                       # const | exp | gamma:<shape>
//!   segment_duration: 5              # seconds each bare rps number lasts (optional)
//!   warmup:   [100]                  # bare rps numbers, each lasting segment_duration …
//!   bench:    [{duration: 3, rps: 200}, {duration: 12, rps: 300}]   # … or {duration, rps}
//!   cooldown: [500]
//! ```
//!
//! `bench` is required; `warmup` and `cooldown` may be omitted (no segments). Every key is
//! checked: a misspelt key is an error naming the model and the key, never silently ignored.
//!
//! # Arrivals
//!
//! A model's phases run back to back from t = 0: warmup, then bench, then cooldown, each a list
//! of segments of constant rate. Only requests arriving in the bench window
//! ([`Workload::bench_window`]) count towards goodput; warmup lets meters and queues settle and
//! cooldown keeps the system loaded while the last bench requests finish.
//!
//! Within a segment `[start, end)` of rate `r`, arrivals form a renewal process **started afresh
//! at the segment boundary**; the gap that would cross `end` is discarded and the next segment
//! starts its own process at its start. We chose that over carrying the pending gap across the
//! boundary because it makes every segment independent of the previous one's rate: a long gap
//! drawn at a low rate cannot swallow the start of a high-rate segment.
//!
//! - `const`: arrivals at `start + k/r` for `k = 0, 1, …` — the boundary itself carries the first
//!   arrival, so a segment holds exactly `⌈D·r⌉` requests (`D·r` when that is an integer).
//! - `exp`: gaps exponential with mean `1/r`; the first arrival is at `start + gap`. By
//!   memorylessness this is exactly a Poisson process of rate `r` on the segment.
//! - `gamma:k`: gaps gamma-distributed with shape `k` and mean `1/r` (scale `1/(k·r)`), so the
//!   coefficient of variation is `1/√k`; `k < 1` is burstier than Poisson. First arrival at
//!   `start + gap`.
//! - `r = 0`: no arrivals in the segment.
//!
//! [`arrivals`] merges all models lazily through a heap holding one pending arrival per model: the
//! scale workload has 30 million arrivals and none of them is ever stored. Each model draws from
//! its own generator seeded from `(seed, model index)`, so adding, removing or reordering *other*
//! models never changes a model's arrival times.
//!
//! # Traces
//!
//! [`Trace`] replays real arrival times (the Azure LLM inference traces in `../shared/traces/`,
//! column `TIMESTAMP`), optionally time-scaled to reach a target mean rate while keeping their
//! real burstiness; [`trace_arrivals`] spreads them over models uniformly at random.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::path::{Path, PathBuf};

use baton_common::profile::{Profile, DEFAULT_SPEC_MAX_BATCH};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp1, Gamma};
use serde_yaml::{Mapping, Value};

/// Keys accepted at the top level of a workload file.
const TOP_KEYS: [&str; 5] = ["seed", "multithread", "dump_schedule", "gpus", "models"];
/// Keys accepted in one entry of `models`.
const MODEL_KEYS: [&str; 8] = [
    "framework",
    "model",
    "slo",
    "gap",
    "segment_duration",
    "warmup",
    "bench",
    "cooldown",
];
/// Keys accepted in a `{duration, rps}` segment.
const SEGMENT_KEYS: [&str; 2] = ["duration", "rps"];
const FRAMEWORK_FORM: &str = "`sleep#slope_us,intercept_us,pre_us,post_us` (e.g. `sleep#1082,5204,0,0`)";
const GAP_FORM: &str = "`const`, `exp` or `gamma:<shape>` (e.g. `gamma:0.5`)";

/// A parsed workload file: the fleet size and the per-model load.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Seed for arrival generation (the file's `seed`).
    pub seed: u64,
    /// Number of GPUs in the fleet.
    pub gpus: usize,
    /// The models, in file order; a model's index here is its id in [`arrivals`].
    pub models: Vec<ModelLoad>,
}

/// One model of a workload: its latency profile, SLO and arrival pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelLoad {
    /// The model's name (the file's `model`).
    pub name: String,
    /// Latency profile built from `framework` with [`DEFAULT_SPEC_MAX_BATCH`] batch sizes.
    pub profile: Profile,
    /// Latency SLO in milliseconds.
    pub slo_ms: f64,
    /// Distribution of inter-arrival gaps.
    pub gap: Gap,
    /// Warmup segments, run first.
    pub warmup: Vec<Segment>,
    /// Bench segments, run after warmup; only these arrivals count.
    pub bench: Vec<Segment>,
    /// Cooldown segments, run after bench.
    pub cooldown: Vec<Segment>,
}

/// Distribution of the gap between consecutive arrivals of one model (mean `1/rps` in all cases).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Gap {
    /// Evenly spaced arrivals.
    Const,
    /// Exponential gaps: Poisson arrivals.
    Exp,
    /// Gamma gaps with the given shape (coefficient of variation `1/√shape`).
    Gamma {
        /// Shape parameter, finite and positive.
        shape: f64,
    },
}

/// A stretch of time at a constant request rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// Length in seconds (finite, positive).
    pub duration_s: f64,
    /// Requests per second (finite, non-negative).
    pub rps: f64,
}

/// Everything that can go wrong reading a workload file or a trace.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WorkloadError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file path.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// The text is not YAML at all.
    #[error("workload is not valid YAML: {0}")]
    Yaml(String),

    /// The YAML is well-formed but a value is missing, unknown or out of range.
    #[error("{context}: {problem}")]
    Invalid {
        /// Where: e.g. "model `resnet_0` (models[0]), key `gap`".
        context: String,
        /// What is wrong and what is expected instead.
        problem: String,
    },

    /// A workload file's contents are invalid.
    #[error("in workload file {path}: {source}")]
    InFile {
        /// The file path.
        path: PathBuf,
        /// What is wrong with its contents.
        source: Box<WorkloadError>,
    },

    /// A trace file's contents are invalid.
    #[error("in trace {path}, line {line}: {problem}")]
    Trace {
        /// The trace path (`<string>` for [`Trace::from_csv_str`]).
        path: PathBuf,
        /// 1-based line number (the header is line 1).
        line: usize,
        /// What is wrong.
        problem: String,
    },
}

fn invalid(context: impl Into<String>, problem: impl Into<String>) -> WorkloadError {
    WorkloadError::Invalid {
        context: context.into(),
        problem: problem.into(),
    }
}

impl Workload {
    /// Reads and validates a workload file. Errors name the file, the model and the key.
    pub fn load(path: &Path) -> Result<Workload, WorkloadError> {
        let text = std::fs::read_to_string(path).map_err(|source| WorkloadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Workload::from_yaml_str(&text).map_err(|e| WorkloadError::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Parses and validates a workload from YAML text.
    pub fn from_yaml_str(s: &str) -> Result<Workload, WorkloadError> {
        let doc: Value = serde_yaml::from_str(s).map_err(|e| WorkloadError::Yaml(e.to_string()))?;
        parse_workload(&doc)
    }

    /// `[start, end)` of model `model`'s bench phase in seconds since the start of the run:
    /// `(warmup total, warmup total + bench total)`.
    ///
    /// # Panics
    /// If `model` is out of range.
    pub fn bench_window(&self, model: usize) -> (f64, f64) {
        let m = &self.models[model];
        let start = total_duration(&m.warmup);
        (start, start + total_duration(&m.bench))
    }

    /// Length of the whole run in seconds: the longest model's warmup + bench + cooldown.
    pub fn duration(&self) -> f64 {
        self.models
            .iter()
            .map(|m| total_duration(&m.warmup) + total_duration(&m.bench) + total_duration(&m.cooldown))
            .fold(0.0, f64::max)
    }

    /// The same workload with every rate multiplied by `k` (durations unchanged), for the
    /// max-goodput search.
    ///
    /// # Panics
    /// If `k` is negative, NaN or infinite.
    pub fn scaled(&self, k: f64) -> Workload {
        assert!(
            k.is_finite() && k >= 0.0,
            "rate scale factor must be finite and non-negative, got {k}"
        );
        let scale = |segs: &[Segment]| -> Vec<Segment> {
            segs.iter()
                .map(|s| Segment {
                    duration_s: s.duration_s,
                    rps: s.rps * k,
                })
                .collect()
        };
        Workload {
            seed: self.seed,
            gpus: self.gpus,
            models: self
                .models
                .iter()
                .map(|m| ModelLoad {
                    warmup: scale(&m.warmup),
                    bench: scale(&m.bench),
                    cooldown: scale(&m.cooldown),
                    ..m.clone()
                })
                .collect(),
        }
    }
}

fn total_duration(segs: &[Segment]) -> f64 {
    segs.iter().map(|s| s.duration_s).sum()
}

// ---------------------------------------------------------------------------------------------
// YAML → Workload. Walked by hand rather than derived so that every error can name the model by
// its name and say which key is wrong and what it should look like.

fn parse_workload(doc: &Value) -> Result<Workload, WorkloadError> {
    let top = doc.as_mapping().ok_or_else(|| {
        invalid(
            "workload",
            "the document must be a mapping with keys `gpus` and `models`",
        )
    })?;
    check_keys(top, &TOP_KEYS, "workload top level")?;

    let seed = match top.get("seed") {
        Some(v) => parse_seed(v).map_err(|p| invalid("key `seed`", p))?,
        None => return Err(invalid("workload", "missing required key `seed` (an integer)")),
    };
    let gpus = match top.get("gpus") {
        Some(v) => v
            .as_u64()
            .filter(|&g| g > 0)
            .and_then(|g| usize::try_from(g).ok())
            .ok_or_else(|| invalid("key `gpus`", format!("{} is not a positive integer", show(v))))?,
        None => return Err(invalid("workload", "missing required key `gpus` (the number of GPUs)")),
    };
    let models = match top.get("models") {
        Some(Value::Sequence(items)) if !items.is_empty() => items,
        Some(v) => {
            return Err(invalid(
                "key `models`",
                format!("{} is not a non-empty list of models", show(v)),
            ))
        }
        None => return Err(invalid("workload", "missing required key `models`")),
    };
    let models = models
        .iter()
        .enumerate()
        .map(|(i, v)| parse_model(i, v))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, m) in models.iter().enumerate() {
        if let Some(j) = models[..i].iter().position(|other| other.name == m.name) {
            return Err(invalid(
                format!("model `{}` (models[{i}])", m.name),
                format!("the name is already used by models[{j}]; model names must be unique"),
            ));
        }
    }
    Ok(Workload { seed, gpus, models })
}

/// Accepts a YAML integer (serde_yaml reads `0x…` as one) or a string holding a decimal or
/// `0x`-hex integer, for files written by tools that quote it.
fn parse_seed(v: &Value) -> Result<u64, String> {
    let bad = || format!("{} is not a non-negative integer (decimal or 0x-hex)", show(v));
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(bad),
        Value::String(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse::<u64>(),
            };
            parsed.map_err(|_| bad())
        }
        _ => Err(bad()),
    }
}

fn parse_model(index: usize, v: &Value) -> Result<ModelLoad, WorkloadError> {
    let map = v.as_mapping().ok_or_else(|| {
        invalid(
            format!("models[{index}]"),
            format!(
                "{} is not a mapping with keys framework, model, slo, gap, bench, …",
                show(v)
            ),
        )
    })?;
    let name = match map.get("model") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(other) => {
            return Err(invalid(
                format!("models[{index}], key `model`"),
                format!("{} is not a non-empty name", show(other)),
            ))
        }
        None => {
            return Err(invalid(
                format!("models[{index}]"),
                "missing required key `model` (the name)",
            ))
        }
    };
    let ctx = format!("model `{name}` (models[{index}])");
    check_keys(map, &MODEL_KEYS, &ctx)?;
    let key_ctx = |key: &str| format!("{ctx}, key `{key}`");
    let required = |key: &str, what: &str| {
        map.get(key)
            .ok_or_else(|| invalid(ctx.clone(), format!("missing required key `{key}` ({what})")))
    };

    let framework = required("framework", "the latency profile")?;
    let framework = framework.as_str().ok_or_else(|| {
        invalid(
            key_ctx("framework"),
            format!("{} is not a string; expected {FRAMEWORK_FORM}", show(framework)),
        )
    })?;
    if !framework.trim().starts_with("sleep#") {
        return Err(invalid(
            key_ctx("framework"),
            format!("`{framework}` is not a sleep profile; only {FRAMEWORK_FORM} is supported"),
        ));
    }
    let profile = Profile::from_spec(framework, DEFAULT_SPEC_MAX_BATCH)
        .map_err(|e| invalid(key_ctx("framework"), e.to_string()))?
        .with_model(name.clone());

    let slo = required("slo", "the latency SLO in milliseconds")?;
    let slo_ms = as_f64(slo).filter(|s| s.is_finite() && *s > 0.0).ok_or_else(|| {
        invalid(
            key_ctx("slo"),
            format!("{} is not a positive number of milliseconds", show(slo)),
        )
    })?;

    let gap = required("gap", GAP_FORM)?;
    let gap = gap
        .as_str()
        .and_then(parse_gap)
        .ok_or_else(|| invalid(key_ctx("gap"), format!("{} is not one of {GAP_FORM}", show(gap))))?;

    let segment_duration = match map.get("segment_duration") {
        None | Some(Value::Null) => None,
        Some(v) => Some(as_f64(v).filter(|d| d.is_finite() && *d > 0.0).ok_or_else(|| {
            invalid(
                key_ctx("segment_duration"),
                format!("{} is not a positive number of seconds", show(v)),
            )
        })?),
    };
    let phase = |key: &str, required: bool| -> Result<Vec<Segment>, WorkloadError> {
        match map.get(key) {
            None | Some(Value::Null) if required => Err(invalid(
                ctx.clone(),
                format!("missing required key `{key}` (a non-empty list of rps numbers or {{duration, rps}})"),
            )),
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(v) => {
                let segs = parse_segments(v, segment_duration, &key_ctx(key))?;
                if required && segs.is_empty() {
                    return Err(invalid(
                        key_ctx(key),
                        "the list is empty; it needs at least one segment",
                    ));
                }
                Ok(segs)
            }
        }
    };
    let warmup = phase("warmup", false)?;
    let bench = phase("bench", true)?;
    let cooldown = phase("cooldown", false)?;

    Ok(ModelLoad {
        name,
        profile,
        slo_ms,
        gap,
        warmup,
        bench,
        cooldown,
    })
}

fn parse_gap(s: &str) -> Option<Gap> {
    match s.trim() {
        "const" => Some(Gap::Const),
        "exp" => Some(Gap::Exp),
        other => {
            let shape: f64 = other.strip_prefix("gamma:")?.trim().parse().ok()?;
            (shape.is_finite() && shape > 0.0).then_some(Gap::Gamma { shape })
        }
    }
}

fn parse_segments(v: &Value, segment_duration: Option<f64>, ctx: &str) -> Result<Vec<Segment>, WorkloadError> {
    let items = v.as_sequence().ok_or_else(|| {
        invalid(
            ctx,
            format!("{} is not a list of rps numbers or {{duration, rps}} mappings", show(v)),
        )
    })?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let item_ctx = format!("{ctx}, item {i}");
            let rate = |v: &Value| {
                as_f64(v)
                    .filter(|r| r.is_finite() && *r >= 0.0)
                    .ok_or_else(|| invalid(&item_ctx, format!("rps {} is not a non-negative number", show(v))))
            };
            match item {
                Value::Mapping(m) => {
                    check_keys(m, &SEGMENT_KEYS, &item_ctx)?;
                    let duration = m
                        .get("duration")
                        .ok_or_else(|| invalid(&item_ctx, "missing key `duration` (seconds)"))?;
                    let duration_s = as_f64(duration).filter(|d| d.is_finite() && *d > 0.0).ok_or_else(|| {
                        invalid(
                            &item_ctx,
                            format!("duration {} is not a positive number of seconds", show(duration)),
                        )
                    })?;
                    let rps = rate(m.get("rps").ok_or_else(|| invalid(&item_ctx, "missing key `rps`"))?)?;
                    Ok(Segment { duration_s, rps })
                }
                _ => {
                    let rps = rate(item)?;
                    let duration_s = segment_duration.ok_or_else(|| {
                        invalid(
                            &item_ctx,
                            "a bare rps number needs the model's `segment_duration`; \
                             set it or write `{duration: <s>, rps: <r>}`",
                        )
                    })?;
                    Ok(Segment { duration_s, rps })
                }
            }
        })
        .collect()
}

fn check_keys(map: &Mapping, allowed: &[&str], ctx: &str) -> Result<(), WorkloadError> {
    for key in map.keys() {
        match key.as_str() {
            Some(k) if allowed.contains(&k) => {}
            _ => {
                return Err(invalid(
                    ctx,
                    format!("unknown key {}; expected one of {}", show_key(key), allowed.join(", ")),
                ))
            }
        }
    }
    Ok(())
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// A short rendering of a YAML value for error messages.
fn show(v: &Value) -> String {
    match v {
        Value::Null => "an empty value".to_string(),
        Value::String(s) => format!("`{s}`"),
        Value::Number(n) => format!("`{n}`"),
        Value::Bool(b) => format!("`{b}`"),
        Value::Sequence(_) => "a list".to_string(),
        Value::Mapping(_) => "a mapping".to_string(),
        Value::Tagged(t) => format!("a value tagged `{}`", t.tag),
    }
}

fn show_key(v: &Value) -> String {
    match v {
        Value::String(s) => format!("`{s}`"),
        other => show(other),
    }
}

// ---------------------------------------------------------------------------------------------
// Arrival generation.

/// All arrivals of a workload, merged across models in time order (ties by model index),
/// generated lazily. Items are `(arrival time in ns since the start of the run, model index)`.
pub struct Arrivals {
    streams: Vec<ModelStream>,
    /// The next pending arrival of each model that has one.
    heap: BinaryHeap<Reverse<(i64, usize)>>,
}

impl fmt::Debug for Arrivals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Arrivals")
            .field("models", &self.streams.len())
            .field("next", &self.heap.peek().map(|r| r.0))
            .finish()
    }
}

/// Generates the arrivals of a workload with `seed` (usually `w.seed`). Same workload and seed →
/// same sequence; model `i`'s arrivals depend only on its own segments, gap, `seed` and `i`.
pub fn arrivals(w: &Workload, seed: u64) -> Arrivals {
    let mut streams: Vec<ModelStream> = w
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| ModelStream::new(m, model_seed(seed, i)))
        .collect();
    let heap = streams
        .iter_mut()
        .enumerate()
        .filter_map(|(i, s)| s.next_ns().map(|t| Reverse((t, i))))
        .collect();
    Arrivals { streams, heap }
}

impl Iterator for Arrivals {
    type Item = (i64, usize);

    fn next(&mut self) -> Option<(i64, usize)> {
        let Reverse((t, model)) = self.heap.pop()?;
        if let Some(next) = self.streams[model].next_ns() {
            self.heap.push(Reverse((next, model)));
        }
        Some((t, model))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.heap.len(), None)
    }
}

/// One model's arrival process, walking its segments in order.
struct ModelStream {
    rng: StdRng,
    gap: Gap,
    /// Gamma(shape, 1) and its shape; a gap at rate r is a draw times `1/(shape·r)`.
    unit_gamma: Option<(Gamma<f64>, f64)>,
    /// `(start_s, end_s, rps)` of warmup, bench and cooldown segments, back to back from 0.
    segments: Vec<(f64, f64, f64)>,
    /// Index of the current segment.
    seg: usize,
    /// `const`: index of the next arrival within the segment.
    k: u64,
    /// `exp`/`gamma`: the previous arrival in the segment, or the segment start.
    t: f64,
}

impl ModelStream {
    fn new(m: &ModelLoad, seed: u64) -> ModelStream {
        let mut start = 0.0;
        let segments = m
            .warmup
            .iter()
            .chain(&m.bench)
            .chain(&m.cooldown)
            .map(|s| {
                let seg = (start, start + s.duration_s, s.rps);
                start += s.duration_s;
                seg
            })
            .collect();
        let unit_gamma = match m.gap {
            // The shape was validated finite and positive when parsed; a hand-built invalid one
            // is a programming error.
            Gap::Gamma { shape } => Some((
                Gamma::new(shape, 1.0).expect("gamma shape must be finite and positive"),
                shape,
            )),
            Gap::Const | Gap::Exp => None,
        };
        ModelStream {
            rng: StdRng::seed_from_u64(seed),
            gap: m.gap,
            unit_gamma,
            segments,
            seg: 0,
            k: 0,
            t: 0.0,
        }
    }

    fn next_ns(&mut self) -> Option<i64> {
        self.next_s().map(|t| (t * 1e9).round() as i64)
    }

    fn next_s(&mut self) -> Option<f64> {
        loop {
            let &(start, end, rps) = self.segments.get(self.seg)?;
            if rps > 0.0 {
                match self.gap {
                    Gap::Const => {
                        // Count by index, not by comparing times, so float rounding can never add
                        // or lose the arrival that lands on `end`.
                        let count = ((end - start) * rps - 1e-9).ceil().max(0.0) as u64;
                        if self.k < count {
                            let t = start + self.k as f64 / rps;
                            self.k += 1;
                            return Some(t);
                        }
                    }
                    Gap::Exp | Gap::Gamma { .. } => {
                        let gap = match &self.unit_gamma {
                            Some((g, shape)) => g.sample(&mut self.rng) / (shape * rps),
                            None => {
                                let e: f64 = self.rng.sample(Exp1);
                                e / rps
                            }
                        };
                        let t = self.t + gap;
                        if t < end {
                            self.t = t;
                            return Some(t);
                        }
                    }
                }
            }
            self.seg += 1;
            self.k = 0;
            self.t = self.segments.get(self.seg).map_or(end, |s| s.0);
        }
    }
}

/// SplitMix64 finaliser: spreads nearby inputs (seed 1 vs 2, model 0 vs 1) over the whole range.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of model `index`'s generator: a function of the run seed and the index only.
fn model_seed(seed: u64, index: usize) -> u64 {
    splitmix64(seed ^ splitmix64(index as u64))
}

// ---------------------------------------------------------------------------------------------
// Trace replay.

/// Real arrival times, in ns relative to the earliest one, sorted.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Arrival times in ns; `times_ns[0] == 0`, non-decreasing.
    pub times_ns: Vec<i64>,
}

impl Trace {
    /// Reads column `column` of a CSV trace (header row first; timestamps like
    /// `2023-11-16 18:17:03.9799600`, up to 9 fractional digits, no time zone). Quoted fields are
    /// not supported; the Azure traces have none.
    pub fn load_csv(path: &Path, column: &str) -> Result<Trace, WorkloadError> {
        let text = std::fs::read_to_string(path).map_err(|source| WorkloadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        parse_csv(&text, column, path)
    }

    /// Like [`Trace::load_csv`] from text; errors name the path `<string>`.
    pub fn from_csv_str(text: &str, column: &str) -> Result<Trace, WorkloadError> {
        parse_csv(text, column, Path::new("<string>"))
    }

    /// Mean arrival rate in requests per second: `(n − 1) / (last − first)`, i.e. one over the
    /// mean gap. 0 with fewer than two arrivals, infinite if they all share one time.
    pub fn mean_rate(&self) -> f64 {
        let n = self.times_ns.len();
        if n < 2 {
            return 0.0;
        }
        let span_s = (self.times_ns[n - 1] - self.times_ns[0]) as f64 / 1e9;
        (n - 1) as f64 / span_s
    }

    /// The trace time-scaled so its mean rate is `target_rps` (factor `mean_rate / target`),
    /// keeping its burstiness.
    ///
    /// # Panics
    /// If `target_rps` is not finite and positive, or the trace has no finite positive rate.
    pub fn scaled_to_rate(&self, target_rps: f64) -> Trace {
        assert!(
            target_rps.is_finite() && target_rps > 0.0,
            "target rate must be finite and positive, got {target_rps}"
        );
        let rate = self.mean_rate();
        assert!(
            rate.is_finite() && rate > 0.0,
            "a trace needs two distinct arrival times to have a rate (mean rate {rate})"
        );
        self.scaled_by(rate / target_rps)
    }

    /// Every time multiplied by `factor` (> 1 stretches the trace, lowering its rate).
    ///
    /// # Panics
    /// If `factor` is not finite and positive.
    pub fn scaled_by(&self, factor: f64) -> Trace {
        assert!(
            factor.is_finite() && factor > 0.0,
            "time-scale factor must be finite and positive, got {factor}"
        );
        Trace {
            times_ns: self
                .times_ns
                .iter()
                .map(|&t| (t as f64 * factor).round() as i64)
                .collect(),
        }
    }
}

/// Assigns each trace arrival to one of `models` models uniformly at random (seeded), giving
/// `(time ns, model index)` in time order.
///
/// # Panics
/// If `models` is 0.
pub fn trace_arrivals(trace: &Trace, models: usize, seed: u64) -> Vec<(i64, usize)> {
    assert!(models > 0, "trace arrivals need at least one model");
    let mut rng = StdRng::seed_from_u64(splitmix64(seed));
    trace
        .times_ns
        .iter()
        .map(|&t| (t, rng.random_range(0..models)))
        .collect()
}

fn parse_csv(text: &str, column: &str, path: &Path) -> Result<Trace, WorkloadError> {
    let err = |line: usize, problem: String| WorkloadError::Trace {
        path: path.to_path_buf(),
        line,
        problem,
    };
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
    let header = lines
        .next()
        .map(|(_, l)| l.trim_start_matches('\u{feff}'))
        .ok_or_else(|| err(1, "the file is empty; expected a header row".into()))?;
    let names: Vec<&str> = header.split(',').map(str::trim).collect();
    let col = names.iter().position(|&n| n == column).ok_or_else(|| {
        err(
            1,
            format!("no column `{column}` in the header; columns are {}", names.join(", ")),
        )
    })?;

    let mut absolute: Vec<i128> = Vec::new();
    for (line, row) in lines {
        if row.trim().is_empty() {
            continue;
        }
        let field = row.split(',').nth(col).ok_or_else(|| {
            err(
                line,
                format!("the row has fewer than {} fields, so no `{column}`", col + 1),
            )
        })?;
        let t =
            parse_timestamp(field.trim()).map_err(|p| err(line, format!("bad timestamp `{}`: {p}", field.trim())))?;
        absolute.push(t);
    }
    absolute.sort_unstable();
    let (Some(&first), Some(&last)) = (absolute.first(), absolute.last()) else {
        return Err(err(1, "the trace has no data rows".into()));
    };
    if last == first {
        return Err(err(
            1,
            "all arrivals share one timestamp; a trace needs two distinct times to have a rate".into(),
        ));
    }
    let times_ns = absolute
        .iter()
        .map(|&t| i64::try_from(t - first))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| err(1, "the trace spans more than 292 years".into()))?;
    Ok(Trace { times_ns })
}

/// Parses `YYYY-MM-DD HH:MM:SS[.fffffffff]` (or with `T`) to ns since 1970-01-01 00:00:00.
/// No time zone: only differences matter.
fn parse_timestamp(s: &str) -> Result<i128, String> {
    const FORM: &str = "expected `YYYY-MM-DD HH:MM:SS[.fraction]`";
    let (date, time) = s
        .split_once([' ', 'T'])
        .ok_or_else(|| format!("no date/time separator; {FORM}"))?;
    let num = |part: &str, what: &str, lo: i64, hi: i64| -> Result<i64, String> {
        let v: i64 = part
            .parse()
            .ok()
            .filter(|_| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("{what} `{part}` is not a number; {FORM}"))?;
        if v < lo || v > hi {
            return Err(format!("{what} {v} is outside {lo}..={hi}"));
        }
        Ok(v)
    };

    let d: Vec<&str> = date.split('-').collect();
    let [y, mo, da] = d[..] else {
        return Err(format!("date `{date}` is not YYYY-MM-DD"));
    };
    let year = num(y, "year", 1, 9999)?;
    let month = num(mo, "month", 1, 12)?;
    let day = num(da, "day", 1, days_in_month(year, month))?;

    let t: Vec<&str> = time.trim().split(':').collect();
    let [h, mi, sec] = t[..] else {
        return Err(format!("time `{time}` is not HH:MM:SS"));
    };
    let hour = num(h, "hour", 0, 23)?;
    let minute = num(mi, "minute", 0, 59)?;
    let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
    let second = num(whole, "second", 0, 59)?;
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) || (sec.contains('.') && frac.is_empty()) {
        return Err(format!("fraction `.{frac}` must be 1 to 9 digits"));
    }
    let frac_ns = if frac.is_empty() {
        0
    } else {
        // Right-pad to 9 digits: ".9799600" → 979_960_000 ns.
        format!("{frac:0<9}").parse::<i64>().map_err(|e| e.to_string())?
    };

    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second;
    Ok(i128::from(secs) * 1_000_000_000 + i128::from(frac_ns))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORKLOADS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/workloads/");
    const TRACES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/traces/");

    fn load(name: &str) -> Workload {
        let path = PathBuf::from(WORKLOADS).join(name);
        Workload::load(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    fn seg(duration_s: f64, rps: f64) -> Segment {
        Segment { duration_s, rps }
    }

    /// A one-model workload with a single bench segment.
    fn one_model(gap: Gap, bench: Vec<Segment>) -> Workload {
        Workload {
            seed: 7,
            gpus: 1,
            models: vec![ModelLoad {
                name: "m".into(),
                profile: Profile::from_spec("sleep#1000,5000,0,0", 8).unwrap(),
                slo_ms: 100.0,
                gap,
                warmup: vec![],
                bench,
                cooldown: vec![],
            }],
        }
    }

    fn err_of(yaml: &str) -> String {
        match Workload::from_yaml_str(yaml) {
            Ok(_) => panic!("expected an error for:\n{yaml}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_all_shared_workloads() {
        let cases = [
            ("symphony-example.yaml", 0xabcdabcd987, 8, 2),
            ("resnet-8gpu-poisson.yaml", 1, 8, 1),
            ("resnet-8gpu-gamma.yaml", 2, 8, 1),
            ("multi-model-64gpu.yaml", 3, 64, 16),
            ("scale-1000gpu.yaml", 4, 1000, 100),
        ];
        for (file, seed, gpus, models) in cases {
            let w = load(file);
            assert_eq!((w.seed, w.gpus, w.models.len()), (seed, gpus, models), "{file}");
        }
        let gamma = load("resnet-8gpu-gamma.yaml");
        assert_eq!(gamma.models[0].gap, Gap::Gamma { shape: 0.1 });
        assert_eq!(gamma.models[0].slo_ms, 100.0);
        // l(1) = 1082 + 5204 µs.
        assert_eq!(gamma.models[0].profile.latency_us(1).unwrap(), 6286.0);
        assert_eq!(gamma.bench_window(0), (5.0, 15.0));
        assert_eq!(gamma.duration(), 17.0);
    }

    #[test]
    fn symphony_example_segments_and_windows() {
        let w = load("symphony-example.yaml");
        let m0 = &w.models[0];
        assert_eq!(m0.name, "resnet_0");
        assert_eq!(m0.gap, Gap::Const);
        assert_eq!(m0.warmup, vec![seg(5.0, 100.0)]);
        assert_eq!(
            m0.bench,
            vec![seg(5.0, 200.0), seg(5.0, 300.0), seg(5.0, 400.0), seg(5.0, 500.0)]
        );
        assert_eq!(m0.cooldown, vec![seg(5.0, 500.0)]);
        let m1 = &w.models[1];
        assert_eq!(m1.bench, vec![seg(3.0, 200.0), seg(12.0, 300.0), seg(5.0, 400.0)]);
        assert_eq!(w.bench_window(0), (5.0, 25.0));
        assert_eq!(w.bench_window(1), (5.0, 25.0));
        assert_eq!(w.duration(), 30.0);
    }

    #[test]
    fn seed_accepts_hex_decimal_and_quoted() {
        let body = "gpus: 1\nmodels:\n- {framework: 'sleep#1,1,0,0', model: a, slo: 10, gap: exp, bench: [{duration: 1, rps: 1}]}\n";
        for (seed, want) in [("0x10", 16), ("42", 42), ("'0xff'", 255), ("\"7\"", 7)] {
            let w = Workload::from_yaml_str(&format!("seed: {seed}\n{body}")).unwrap();
            assert_eq!(w.seed, want, "seed: {seed}");
        }
        assert!(err_of(&format!("seed: -1\n{body}")).contains("`seed`"));
    }

    #[test]
    fn const_segments_carry_exactly_rate_times_duration() {
        let w = load("symphony-example.yaml");
        let (start, end) = w.bench_window(0);
        let (start, end) = ((start * 1e9) as i64, (end * 1e9) as i64);
        let m0: Vec<i64> = arrivals(&w, w.seed).filter(|a| a.1 == 0).map(|a| a.0).collect();
        // 5 s × (100 + 200 + 300 + 400 + 500 + 500) rps.
        assert_eq!(m0.len(), 10_000);
        let in_bench = m0.iter().filter(|&&t| t >= start && t < end).count();
        assert_eq!(in_bench, 5 * (200 + 300 + 400 + 500));
        // Exactly 1/r apart within a segment, and the first arrival of a segment on its boundary.
        assert_eq!(&m0[..3], &[0, 10_000_000, 20_000_000]);
        assert_eq!(m0[500], 5_000_000_000);
        assert_eq!(m0[501] - m0[500], 5_000_000);

        // A non-integer count rounds up (ceil of 2.5 s × 3 rps = 7.5).
        let w = one_model(Gap::Const, vec![seg(2.5, 3.0)]);
        assert_eq!(arrivals(&w, 1).count(), 8);
    }

    /// Count within 3 σ, where σ² ≈ D·r·CV² for a renewal process.
    fn assert_count_near(gap: Gap, cv2: f64) {
        let (d, r) = (10.0, 1000.0);
        let w = one_model(gap, vec![seg(d, r)]);
        let n = arrivals(&w, 11).count() as f64;
        let sigma = (d * r * cv2).sqrt();
        assert!(
            (n - d * r).abs() <= 3.0 * sigma,
            "{gap:?}: {n} arrivals, expected {} ± {}",
            d * r,
            3.0 * sigma
        );
    }

    #[test]
    fn random_gaps_have_the_right_rate() {
        assert_count_near(Gap::Exp, 1.0);
        assert_count_near(Gap::Gamma { shape: 0.5 }, 2.0);
        assert_count_near(Gap::Gamma { shape: 4.0 }, 0.25);
    }

    #[test]
    fn arrivals_stay_inside_their_segments_and_zero_rate_is_silent() {
        let w = one_model(Gap::Exp, vec![seg(1.0, 500.0), seg(1.0, 0.0), seg(1.0, 500.0)]);
        let times: Vec<i64> = arrivals(&w, 3).map(|a| a.0).collect();
        assert!(times.iter().all(|&t| !(1_000_000_000..2_000_000_000).contains(&t)));
        assert!(times.iter().any(|&t| t >= 2_000_000_000));
        assert!(times.iter().all(|&t| t < 3_000_000_000));
    }

    #[test]
    fn same_seed_same_arrivals_different_seed_different() {
        let w = load("symphony-example.yaml");
        let a: Vec<_> = arrivals(&w, 5).collect();
        let b: Vec<_> = arrivals(&w, 5).collect();
        let c: Vec<_> = arrivals(&w, 6).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn merged_arrivals_are_in_time_then_model_order() {
        let w = load("multi-model-64gpu.yaml").scaled(0.1);
        let all: Vec<_> = arrivals(&w, w.seed).collect();
        assert!(all.windows(2).all(|p| p[0] <= p[1]));
        let models: std::collections::BTreeSet<usize> = all.iter().map(|a| a.1).collect();
        assert_eq!(models.len(), 16);
    }

    #[test]
    fn scale_workload_is_generated_lazily() {
        let w = load("scale-1000gpu.yaml");
        let mut it = arrivals(&w, w.seed);
        assert_eq!(it.size_hint().0, 100);
        let first: Vec<_> = it.by_ref().take(10_000).collect();
        assert!(first.windows(2).all(|p| p[0] <= p[1]));
    }

    #[test]
    fn adding_a_model_does_not_change_the_others() {
        let one = one_model(Gap::Gamma { shape: 0.5 }, vec![seg(2.0, 300.0)]);
        let mut two = one.clone();
        let mut other = two.models[0].clone();
        other.name = "other".into();
        other.gap = Gap::Exp;
        two.models.push(other);
        let alone: Vec<i64> = arrivals(&one, 9).map(|a| a.0).collect();
        let shared: Vec<i64> = arrivals(&two, 9).filter(|a| a.1 == 0).map(|a| a.0).collect();
        assert_eq!(alone, shared);
    }

    #[test]
    fn scaled_doubles_counts() {
        let w = load("symphony-example.yaml");
        let count0 = |w: &Workload| arrivals(w, 1).filter(|a| a.1 == 0).count();
        assert_eq!(count0(&w), 10_000);
        let doubled = w.scaled(2.0);
        assert_eq!(count0(&doubled), 20_000);
        assert_eq!(doubled.models[1].bench[1], seg(12.0, 600.0));
        assert_eq!(doubled.duration(), w.duration());

        let w = one_model(Gap::Exp, vec![seg(10.0, 1000.0)]);
        let n1 = arrivals(&w, 2).count() as f64;
        let n2 = arrivals(&w.scaled(2.0), 2).count() as f64;
        assert!((n2 / n1 - 2.0).abs() < 0.1, "{n1} → {n2}");
    }

    const GOOD_MODEL: &str = "- framework: sleep#1082,5204,0,0\n  model: resnet_0\n  slo: 100\n  gap: exp\n";

    fn with_model_lines(extra: &str) -> String {
        format!("seed: 1\ngpus: 2\nmodels:\n{GOOD_MODEL}{extra}")
    }

    #[test]
    fn bad_inputs_name_the_model_and_key() {
        let bench = "  bench: [{duration: 1, rps: 10}]\n";
        let e = err_of(&with_model_lines(&format!("{bench}  slo_ms: 5\n")));
        assert!(
            e.contains("model `resnet_0` (models[0])") && e.contains("unknown key `slo_ms`"),
            "{e}"
        );

        let e = err_of(&with_model_lines("  bench: [{duration: 1, rps: 10}]\n").replace("gap: exp", "gap: gamma:x"));
        assert!(
            e.contains("model `resnet_0` (models[0]), key `gap`") && e.contains("gamma:<shape>"),
            "{e}"
        );
        let e = err_of(&with_model_lines(bench).replace("gap: exp", "gap: poisson"));
        assert!(e.contains("key `gap`") && e.contains("`poisson`"), "{e}");

        let e = err_of(&with_model_lines(bench).replace("sleep#1082,5204,0,0", "tensorflow#resnet50"));
        assert!(
            e.contains("model `resnet_0` (models[0]), key `framework`") && e.contains("sleep#slope_us"),
            "{e}"
        );

        let e = err_of(&with_model_lines(""));
        assert!(
            e.contains("model `resnet_0` (models[0])") && e.contains("missing required key `bench`"),
            "{e}"
        );

        let e = err_of(&with_model_lines("  bench: [10]\n"));
        assert!(
            e.contains("key `bench`, item 0") && e.contains("segment_duration"),
            "{e}"
        );

        let e = err_of(&with_model_lines("  bench: [{duration: 1, rate: 10}]\n"));
        assert!(
            e.contains("key `bench`, item 0") && e.contains("unknown key `rate`"),
            "{e}"
        );

        let e = err_of(&format!("{}typo: 1\n", with_model_lines(bench)));
        assert!(e.contains("unknown key `typo`"), "{e}");
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("baton-workload-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.yaml");
        std::fs::write(&path, with_model_lines("  bench: []\n")).unwrap();
        let e = Workload::load(&path).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            e.contains("bad.yaml") && e.contains("key `bench`") && e.contains("empty"),
            "{e}"
        );
    }

    #[test]
    fn loads_the_azure_conversation_trace() {
        let path = PathBuf::from(TRACES).join("azure-llm-2023-conv.csv");
        let trace = Trace::load_csv(&path, "TIMESTAMP").unwrap_or_else(|e| panic!("{e}"));
        // 19,366 data rows: the file has no trailing newline, so `wc -l` says 19,366 lines with the header.
        assert_eq!(trace.times_ns.len(), 19_366);
        assert_eq!(trace.times_ns[0], 0);
        assert!(trace.times_ns.windows(2).all(|p| p[0] <= p[1]));
        // Rows 1 and 2: 18:15:46.6805900 and 18:15:50.9951690.
        assert_eq!(trace.times_ns[1], 4_314_579_000);

        let fast = trace.scaled_to_rate(1000.0);
        assert!((fast.mean_rate() - 1000.0).abs() < 1e-3, "{}", fast.mean_rate());
        let slow = trace.scaled_by(2.0);
        assert!((slow.mean_rate() * 2.0 - trace.mean_rate()).abs() < 1e-6);

        let spread = trace_arrivals(&fast, 4, 1);
        assert_eq!(spread.len(), trace.times_ns.len());
        assert_eq!(spread, trace_arrivals(&fast, 4, 1));
        for m in 0..4 {
            let n = spread.iter().filter(|a| a.1 == m).count();
            assert!((4_000..5_700).contains(&n), "model {m}: {n}");
        }
    }

    #[test]
    fn timestamps_cross_midnight_month_and_leap_day() {
        let diff = |a: &str, b: &str| parse_timestamp(b).unwrap() - parse_timestamp(a).unwrap();
        assert_eq!(diff("2023-11-16 23:59:59.9", "2023-11-17 00:00:00.1"), 200_000_000);
        assert_eq!(diff("2023-12-31 23:59:59", "2024-01-01 00:00:00"), 1_000_000_000);
        assert_eq!(
            diff("2024-02-28 00:00:00", "2024-03-01 00:00:00"),
            2 * 86_400_000_000_000
        );
        assert_eq!(
            parse_timestamp("1970-01-02 00:00:00.000000001").unwrap(),
            86_400_000_000_001
        );
        assert!(parse_timestamp("2023-02-29 00:00:00").is_err());
        assert!(parse_timestamp("2023-11-16").is_err());
        assert!(parse_timestamp("2023-11-16 18:17:03.1234567890").is_err());
    }

    #[test]
    fn trace_errors_name_the_line_and_problem() {
        let e = Trace::from_csv_str("TIME,x\n2023-11-16 18:17:03,1\n", "TIMESTAMP")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 1") && e.contains("no column `TIMESTAMP`") && e.contains("TIME, x"),
            "{e}"
        );
        let csv = "TIMESTAMP,x\n2023-11-16 18:17:03,1\n2023-11-16 25:17:03,1\n";
        let e = Trace::from_csv_str(csv, "TIMESTAMP").unwrap_err().to_string();
        assert!(
            e.contains("<string>") && e.contains("line 3") && e.contains("hour 25"),
            "{e}"
        );
        let e = Trace::from_csv_str("TIMESTAMP\n", "TIMESTAMP").unwrap_err().to_string();
        assert!(e.contains("no data rows"), "{e}");
        // Unsorted rows are sorted; times are relative to the earliest.
        let t = Trace::from_csv_str("TIMESTAMP\n2023-01-01 00:00:02\n2023-01-01 00:00:01\n", "TIMESTAMP").unwrap();
        assert_eq!(t.times_ns, vec![0, 1_000_000_000]);
        assert_eq!(t.mean_rate(), 1.0);
    }
}
