//! Workloads: which models are served, with which profile and SLO, and when their requests arrive.
//!
//! Both the simulator (`baton sim`) and the load generator (`baton loadgen`) replay the same
//! workloads, so the format lives here, beside them, rather than inside either.
//!
//! # Why this format
//!
//! Baton is measured against Symphony, whose public benchmark describes a run in a small YAML
//! file. The simulator and the load generator read those files **unchanged** (copies are in the
//! repository's `workloads/`), so a Baton result and a Symphony result describe the same run,
//! request for request in distribution. Nothing here adds keys of its own.
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
//! checked: a misspelt key is an error naming the line, the model and the key, never silently
//! ignored.
//!
//! # Layout
//!
//! - [`spec`]: what a workload is once read ([`Workload`], [`ModelLoad`], [`Gap`], [`Segment`]);
//! - [`format`]: the YAML schema, its validation and its error messages;
//! - [`arrivals`]: seeded arrival times for every model, merged lazily;
//! - [`trace`]: real arrival times from a CSV trace ([`Trace`]).

pub mod arrivals;
pub mod format;
pub mod spec;
pub mod trace;

use std::path::PathBuf;

pub use arrivals::{arrivals, Arrivals};
pub use spec::{Gap, ModelLoad, Segment, Workload};
pub use trace::{trace_arrivals, Trace};

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
    #[error("{}{context}: {problem}", .line.map(|l| format!("line {l}, ")).unwrap_or_default())]
    Invalid {
        /// 1-based line of the offending value, when the YAML parser knows it.
        line: Option<usize>,
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

/// Files and helpers shared by the tests of every submodule.
#[cfg(test)]
mod testing {
    use std::path::PathBuf;

    use baton_common::profile::Profile;

    use super::{Gap, ModelLoad, Segment, Workload};

    /// The repository's copies of Symphony's benchmark workloads and of the Azure traces.
    pub const WORKLOADS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../workloads/");
    pub const TRACES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../traces/");

    pub fn load(name: &str) -> Workload {
        let path = PathBuf::from(WORKLOADS).join(name);
        Workload::load(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The error message of a workload that must not parse.
    pub fn err_of(yaml: &str) -> String {
        match Workload::from_yaml_str(yaml) {
            Ok(_) => panic!("expected an error for:\n{yaml}"),
            Err(e) => e.to_string(),
        }
    }

    /// A valid model, lines 4 to 7 of [`with_model_lines`]; it lacks `bench`.
    pub const GOOD_MODEL: &str = "- framework: sleep#1082,5204,0,0\n  model: resnet_0\n  slo: 100\n  gap: exp\n";

    /// A workload whose one model is [`GOOD_MODEL`] followed by `extra` (from line 8).
    pub fn with_model_lines(extra: &str) -> String {
        format!("seed: 1\ngpus: 2\nmodels:\n{GOOD_MODEL}{extra}")
    }

    pub fn seg(duration_s: f64, rps: f64) -> Segment {
        Segment { duration_s, rps }
    }

    /// A one-model workload with a single bench segment.
    pub fn one_model(gap: Gap, bench: Vec<Segment>) -> Workload {
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

    /// FNV-1a over the arrivals' little-endian bytes, with their count: a fingerprint that is
    /// stable across Rust releases (std's hasher is not promised to be).
    pub fn fingerprint(arrivals: impl Iterator<Item = (i64, usize)>) -> (usize, u64) {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let mut n = 0;
        for (t, model) in arrivals {
            for b in t.to_le_bytes().into_iter().chain((model as u64).to_le_bytes()) {
                hash ^= u64::from(b);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
            n += 1;
        }
        (n, hash)
    }
}
