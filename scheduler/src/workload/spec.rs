//! What a workload is once read: the fleet, and per model its profile, SLO, gap distribution
//! and phases of constant rate. These are the types the simulator and the load generator
//! consume; [`super::format`] fills them from a YAML file, and code (the planner's check, the
//! load generator's `--rate`) can build them directly.

use std::str::FromStr;

use baton_common::profile::Profile;

/// The forms `gap` accepts, for error messages.
pub(crate) const GAP_FORM: &str = "`const`, `exp` or `gamma:<shape>` (e.g. `gamma:0.5`)";

/// A parsed workload file: the fleet size and the per-model load.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Seed for arrival generation (the file's `seed`).
    pub seed: u64,
    /// Number of GPUs in the fleet.
    pub gpus: usize,
    /// The models, in file order; a model's index here is its id in [`super::arrivals()`].
    pub models: Vec<ModelLoad>,
}

/// One model of a workload: its latency profile, SLO and arrival pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelLoad {
    /// The model's name (the file's `model`).
    pub name: String,
    /// Latency profile built from `framework` with
    /// [`DEFAULT_SPEC_MAX_BATCH`](baton_common::profile::DEFAULT_SPEC_MAX_BATCH) batch sizes.
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

impl FromStr for Gap {
    type Err = String;

    /// Parses `const`, `exp` or `gamma:<shape>` with a finite, positive shape; surrounding
    /// spaces are ignored.
    fn from_str(s: &str) -> Result<Gap, String> {
        let shape = |k: &str| k.trim().parse::<f64>().ok().filter(|k| k.is_finite() && *k > 0.0);
        match s.trim() {
            "const" => Ok(Gap::Const),
            "exp" => Ok(Gap::Exp),
            other => match other.strip_prefix("gamma:").and_then(shape) {
                Some(shape) => Ok(Gap::Gamma { shape }),
                None => Err(format!("`{s}` is not one of {GAP_FORM}")),
            },
        }
    }
}

/// A stretch of time at a constant request rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// Length in seconds (finite, positive).
    pub duration_s: f64,
    /// Requests per second (finite, non-negative).
    pub rps: f64,
}

impl Workload {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_forms() {
        assert_eq!("const".parse::<Gap>(), Ok(Gap::Const));
        assert_eq!(" exp ".parse::<Gap>(), Ok(Gap::Exp));
        assert_eq!(" gamma: 2 ".parse::<Gap>(), Ok(Gap::Gamma { shape: 2.0 }));
        for bad in ["poisson", "gamma:x", "gamma:0", "gamma:-1", "gamma:inf", ""] {
            let e = bad.parse::<Gap>().unwrap_err();
            assert!(e.contains(&format!("`{bad}`")) && e.contains("gamma:<shape>"), "{e}");
        }
    }
}
