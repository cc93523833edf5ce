//! Latency profiles: how long a model takes to run a batch of `b` requests.
//!
//! Every part of Baton that reasons about time needs the same answer to "how long does batch `b`
//! take?": the dispatcher core (to place a batch before its earliest deadline), the simulator (to
//! fake a GPU), the planner (to size fleets), the worker (to emulate a model and to correct the
//! profile online) and the profiler (which writes profiles). They all use this one type, so a
//! profile measured by the profiler means exactly the same thing to the scheduler.
//!
//! A profile is a table indexed by batch size `1..=max_batch` of forward-pass latency mean and
//! standard deviation, plus fixed pre- and post-processing times. The latency the scheduler plans
//! with is the pessimistic `mean + std + pre + post`.
//!
//! Measured tables are noisy: batch 17 can come out a few microseconds faster than batch 16. The
//! scheduling algorithms assume `L(b)` is non-decreasing (growing a batch never makes it faster),
//! so construction forces monotonicity the way Nexus' `ForceMonotonicity` does: each entry's mean,
//! and its mean + std, is raised to at least the previous entry's.
//!
//! Every way of building a `Profile` — [`Profile::from_table`], [`Profile::from_spec`], loading a
//! file, or deserializing it as part of a larger document — runs the same validation, so a
//! `Profile` value is always well-formed.
//!
//! Longer than ~600 lines on purpose: about 480 lines of code and the tests that pin it, kept
//! beside the code they check (STYLE.md).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Batch size used by [`Profile::from_spec`] callers that have no better bound, e.g. workload
/// files in Symphony's benchmark format, which do not state a maximum batch size.
pub const DEFAULT_SPEC_MAX_BATCH: u32 = 256;

/// The only model kind [`Profile::from_spec`] understands: a linear "sleep" model.
const SPEC_PREFIX: &str = "sleep#";
const SPEC_FORM: &str = "`sleep#slope_us,intercept_us,pre_us,post_us` (e.g. `sleep#1082,5204,0,0`)";

/// Forward-pass latency of one batch size, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchLatency {
    /// Batch size this entry describes (1-based).
    pub batch: u32,
    /// Mean forward-pass latency in microseconds.
    pub mean_us: f64,
    /// Standard deviation of the forward-pass latency in microseconds.
    #[serde(default)]
    pub std_us: f64,
}

impl BatchLatency {
    /// Shorthand constructor.
    pub fn new(batch: u32, mean_us: f64, std_us: f64) -> Self {
        Self { batch, mean_us, std_us }
    }
}

/// A validated, monotone latency profile of one model on one hardware type.
///
/// Serialized (TOML or JSON) as:
///
/// ```toml
/// model = "resnet50"      # optional
/// hardware = "a100"       # optional
/// pre_us = 0.0
/// post_us = 0.0
/// [[batches]]
/// batch = 1
/// mean_us = 6286.0
/// std_us = 0.0
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ProfileRepr", into = "ProfileRepr")]
pub struct Profile {
    model: Option<String>,
    hardware: Option<String>,
    pre_us: f64,
    post_us: f64,
    /// `batches[i]` describes batch size `i + 1`; mean and mean + std are non-decreasing.
    batches: Vec<BatchLatency>,
}

/// The unvalidated on-disk shape of a [`Profile`]; deserialization goes through
/// [`Profile::from_table`] so that files get exactly the same checks as code.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hardware: Option<String>,
    #[serde(default)]
    pre_us: f64,
    #[serde(default)]
    post_us: f64,
    batches: Vec<BatchLatency>,
}

impl TryFrom<ProfileRepr> for Profile {
    type Error = ProfileError;

    fn try_from(repr: ProfileRepr) -> Result<Self, Self::Error> {
        let mut profile = Profile::from_table(repr.batches, repr.pre_us, repr.post_us)?;
        profile.model = repr.model;
        profile.hardware = repr.hardware;
        Ok(profile)
    }
}

impl From<Profile> for ProfileRepr {
    fn from(p: Profile) -> Self {
        ProfileRepr {
            model: p.model,
            hardware: p.hardware,
            pre_us: p.pre_us,
            post_us: p.post_us,
            batches: p.batches,
        }
    }
}

/// Everything that can go wrong building, querying, loading or saving a [`Profile`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// The table has no entries.
    #[error("latency profile has no batch entries; it needs one entry per batch size 1..=N")]
    Empty,

    /// Batch sizes do not run `1, 2, …, N` (after sorting).
    #[error(
        "latency profile batch sizes must run 1..=N without gaps or repeats; \
         expected batch {expected}, found batch {found}"
    )]
    NonContiguous {
        /// The batch size that should have come next.
        expected: u32,
        /// The batch size found in its place.
        found: u32,
    },

    /// A latency is NaN, infinite or negative.
    #[error("latency profile field `{field}` is {value}; it must be a finite, non-negative number of microseconds")]
    InvalidValue {
        /// Which field, e.g. `pre_us` or `batches[batch=3].mean_us`.
        field: String,
        /// The offending value.
        value: f64,
    },

    /// A query for a batch size the profile does not cover.
    #[error("batch size {batch} is outside this profile's range; valid batch sizes are 1..={max_batch}")]
    BatchOutOfRange {
        /// The requested batch size.
        batch: u32,
        /// The largest batch size in the profile.
        max_batch: u32,
    },

    /// A `sleep#…` spec string could not be parsed.
    #[error("invalid latency spec `{spec}`: {problem}; expected {SPEC_FORM}")]
    BadSpec {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        problem: String,
    },

    /// TOML text could not be parsed into a profile.
    #[error("invalid TOML latency profile: {0}")]
    Toml(String),

    /// JSON text could not be parsed into a profile.
    #[error("invalid JSON latency profile: {0}")]
    Json(String),

    /// The profile could not be rendered (should not happen for a valid profile).
    #[error("cannot serialize latency profile: {0}")]
    Serialize(String),

    /// A profile file's name does not end in `.toml` or `.json`.
    #[error("cannot tell the format of profile file {path}: its name must end in `.toml` or `.json`")]
    UnknownFormat {
        /// The file path.
        path: PathBuf,
    },

    /// Reading or writing a profile file failed.
    #[error("cannot {action} profile file {path}: {source}")]
    Io {
        /// `"read"` or `"write"`.
        action: &'static str,
        /// The file path.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// A profile file was read but its contents are invalid.
    #[error("in profile file {path}: {source}")]
    InFile {
        /// The file path.
        path: PathBuf,
        /// What is wrong with its contents.
        source: Box<ProfileError>,
    },
}

impl Profile {
    /// Builds a profile from a measured table, validating it and forcing monotonicity.
    ///
    /// Entries may come in any order but must cover batch sizes `1..=N` exactly once. All values
    /// must be finite and non-negative. Afterwards the mean, and the mean + std, are raised where
    /// needed so both are non-decreasing in the batch size.
    pub fn from_table(mut entries: Vec<BatchLatency>, pre_us: f64, post_us: f64) -> Result<Profile, ProfileError> {
        if entries.is_empty() {
            return Err(ProfileError::Empty);
        }
        check_value("pre_us", pre_us)?;
        check_value("post_us", post_us)?;
        entries.sort_by_key(|e| e.batch);
        for (i, e) in entries.iter().enumerate() {
            let expected = i as u32 + 1;
            if e.batch != expected {
                return Err(ProfileError::NonContiguous {
                    expected,
                    found: e.batch,
                });
            }
            check_value(&format!("batches[batch={}].mean_us", e.batch), e.mean_us)?;
            check_value(&format!("batches[batch={}].std_us", e.batch), e.std_us)?;
        }
        force_monotonicity(&mut entries);
        Ok(Profile {
            model: None,
            hardware: None,
            pre_us,
            post_us,
            batches: entries,
        })
    }

    /// Parses the workload-file form `sleep#slope_us,intercept_us,pre_us,post_us` into a linear
    /// profile `mean(b) = slope_us·b + intercept_us`, `std(b) = 0`, for `b = 1..=max_batch`.
    ///
    /// This is the `framework` field of Symphony's benchmark workloads; `sleep#1082,5204,0,0` is
    /// the ResNet-50 profile used throughout the paper.
    pub fn from_spec(spec: &str, max_batch: u32) -> Result<Profile, ProfileError> {
        let bad = |problem: String| ProfileError::BadSpec {
            spec: spec.to_string(),
            problem,
        };
        let body = spec
            .trim()
            .strip_prefix(SPEC_PREFIX)
            .ok_or_else(|| bad(format!("it does not start with `{SPEC_PREFIX}`")))?;
        let parts: Vec<&str> = body.split(',').map(str::trim).collect();
        if parts.len() != 4 {
            return Err(bad(format!("it has {} numbers, not 4", parts.len())));
        }
        const NAMES: [&str; 4] = ["slope_us", "intercept_us", "pre_us", "post_us"];
        let mut nums = [0.0f64; 4];
        for (i, part) in parts.iter().enumerate() {
            let v: f64 = part
                .parse()
                .map_err(|_| bad(format!("{} `{part}` is not a number", NAMES[i])))?;
            if !v.is_finite() || v < 0.0 {
                return Err(bad(format!(
                    "{} `{part}` must be a finite, non-negative number",
                    NAMES[i]
                )));
            }
            nums[i] = v;
        }
        if max_batch == 0 {
            return Err(bad("the maximum batch size is 0; it must be at least 1".into()));
        }
        let [slope, intercept, pre, post] = nums;
        let entries = (1..=max_batch)
            .map(|b| BatchLatency::new(b, slope * f64::from(b) + intercept, 0.0))
            .collect();
        Profile::from_table(entries, pre, post)
    }

    /// Attaches the model name (informational; not used in any computation).
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Attaches the hardware type name (informational; not used in any computation).
    pub fn with_hardware(mut self, hardware: impl Into<String>) -> Self {
        self.hardware = Some(hardware.into());
        self
    }

    /// The model this profile was measured for, if recorded.
    pub fn model(&self) -> Option<&str> {
        self.model.as_deref()
    }

    /// The hardware type this profile was measured on, if recorded.
    pub fn hardware(&self) -> Option<&str> {
        self.hardware.as_deref()
    }

    /// Fixed pre-processing time per batch, in microseconds.
    pub fn pre_us(&self) -> f64 {
        self.pre_us
    }

    /// Fixed post-processing time per batch, in microseconds.
    pub fn post_us(&self) -> f64 {
        self.post_us
    }

    /// The (monotone) table, entry `i` for batch size `i + 1`.
    pub fn batches(&self) -> &[BatchLatency] {
        &self.batches
    }

    /// The largest batch size the profile covers.
    pub fn max_batch(&self) -> u32 {
        self.batches.len() as u32
    }

    fn entry(&self, b: u32) -> Result<&BatchLatency, ProfileError> {
        if b == 0 || b > self.max_batch() {
            return Err(ProfileError::BatchOutOfRange {
                batch: b,
                max_batch: self.max_batch(),
            });
        }
        Ok(&self.batches[b as usize - 1])
    }

    /// Planning latency of a batch of `b`: `mean(b) + std(b) + pre + post`, in microseconds.
    ///
    /// Non-decreasing in `b`. Errors with [`ProfileError::BatchOutOfRange`] unless
    /// `1 <= b <= max_batch()`.
    pub fn latency_us(&self, b: u32) -> Result<f64, ProfileError> {
        let e = self.entry(b)?;
        // Sum mean + std first: that pair is what monotonicity was forced on, and adding the same
        // constants afterwards keeps the order.
        Ok((e.mean_us + e.std_us) + self.pre_us + self.post_us)
    }

    /// [`latency_us`](Self::latency_us) in whole nanoseconds (rounded to nearest).
    pub fn latency_ns(&self, b: u32) -> Result<u64, ProfileError> {
        Ok((self.latency_us(b)? * 1000.0).round() as u64)
    }

    /// Mean forward-pass latency of a batch of `b`, in microseconds (no pre/post, no std).
    pub fn forward_mean_us(&self, b: u32) -> Result<f64, ProfileError> {
        Ok(self.entry(b)?.mean_us)
    }

    /// Standard deviation of the forward-pass latency of a batch of `b`, in microseconds.
    pub fn std_us(&self, b: u32) -> Result<f64, ProfileError> {
        Ok(self.entry(b)?.std_us)
    }

    /// The table the scheduling core plans with: L(b) = mean + std + pre + post in nanoseconds,
    /// with the std kept apart so profile correction scales the margin too.
    pub fn latency_table(&self) -> baton_core::LatencyTable {
        let std_ns = |b| (self.std_us(b).unwrap_or(0.0) * 1e3).round() as baton_core::Time;
        baton_core::LatencyTable::from_fn_with_std(
            self.max_batch(),
            // In range by construction; a profile never yields an error for 1..=max.
            |b| self.latency_ns(b).unwrap_or(u64::MAX / 4) as baton_core::Time - std_ns(b),
            std_ns,
        )
    }

    /// Renders the profile as TOML.
    pub fn to_toml_string(&self) -> Result<String, ProfileError> {
        toml::to_string_pretty(self).map_err(|e| ProfileError::Serialize(e.to_string()))
    }

    /// Parses and validates a TOML profile.
    pub fn from_toml_str(s: &str) -> Result<Profile, ProfileError> {
        let repr: ProfileRepr = toml::from_str(s).map_err(|e| ProfileError::Toml(e.to_string()))?;
        Profile::try_from(repr)
    }

    /// Renders the profile as pretty-printed JSON.
    pub fn to_json_string(&self) -> Result<String, ProfileError> {
        serde_json::to_string_pretty(self).map_err(|e| ProfileError::Serialize(e.to_string()))
    }

    /// Parses and validates a JSON profile.
    pub fn from_json_str(s: &str) -> Result<Profile, ProfileError> {
        let repr: ProfileRepr = serde_json::from_str(s).map_err(|e| ProfileError::Json(e.to_string()))?;
        Profile::try_from(repr)
    }

    /// Loads a profile from a `.toml` or `.json` file (chosen by extension) and validates it.
    pub fn load(path: impl AsRef<Path>) -> Result<Profile, ProfileError> {
        let path = path.as_ref();
        let format = Format::of(path)?;
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        let parsed = match format {
            Format::Toml => Profile::from_toml_str(&text),
            Format::Json => Profile::from_json_str(&text),
        };
        parsed.map_err(|e| ProfileError::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Saves the profile to a `.toml` or `.json` file (chosen by extension).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ProfileError> {
        let path = path.as_ref();
        let text = match Format::of(path)? {
            Format::Toml => self.to_toml_string()?,
            Format::Json => self.to_json_string()?,
        };
        std::fs::write(path, text).map_err(|source| ProfileError::Io {
            action: "write",
            path: path.to_path_buf(),
            source,
        })
    }
}

enum Format {
    Toml,
    Json,
}

impl Format {
    fn of(path: &Path) -> Result<Format, ProfileError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("toml") => Ok(Format::Toml),
            Some(e) if e.eq_ignore_ascii_case("json") => Ok(Format::Json),
            _ => Err(ProfileError::UnknownFormat {
                path: path.to_path_buf(),
            }),
        }
    }
}

fn check_value(field: &str, value: f64) -> Result<(), ProfileError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(ProfileError::InvalidValue {
            field: field.to_string(),
            value,
        })
    }
}

/// Raises each entry so that `mean` and `mean + std` never decrease with the batch size
/// (Nexus' `ModelProfile::ForceMonotonicity`). Expects entries sorted by batch size.
fn force_monotonicity(entries: &mut [BatchLatency]) {
    for i in 1..entries.len() {
        let prev = entries[i - 1];
        let cur = &mut entries[i];
        if cur.mean_us < prev.mean_us {
            cur.mean_us = prev.mean_us;
        }
        let prev_total = prev.mean_us + prev.std_us;
        if cur.mean_us + cur.std_us < prev_total {
            cur.std_us = prev_total - cur.mean_us;
            // `prev_total - mean + mean` can round to just below `prev_total`; nudge up by ulps
            // so the sum the scheduler computes is really non-decreasing.
            while cur.mean_us + cur.std_us < prev_total {
                cur.std_us = f64::from_bits(cur.std_us.to_bits() + 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn table(rows: &[(u32, f64, f64)]) -> Vec<BatchLatency> {
        rows.iter().map(|&(b, m, s)| BatchLatency::new(b, m, s)).collect()
    }

    #[test]
    fn resnet_spec_matches_the_paper_numbers() {
        let p = Profile::from_spec("sleep#1082,5204,0,0", DEFAULT_SPEC_MAX_BATCH).unwrap();
        assert_eq!(p.max_batch(), 256);
        assert_eq!(p.latency_us(1).unwrap(), 6286.0);
        assert_eq!(p.latency_us(10).unwrap(), 16024.0);
        assert_eq!(p.latency_ns(10).unwrap(), 16_024_000);
        assert_eq!(p.forward_mean_us(2).unwrap(), 7368.0);
        assert_eq!(p.std_us(2).unwrap(), 0.0);
    }

    #[test]
    fn spec_with_pre_post_and_spaces() {
        let p = Profile::from_spec(" sleep#1.5, 10, 2 ,3 ", 4).unwrap();
        assert_eq!(p.max_batch(), 4);
        assert_eq!(p.pre_us(), 2.0);
        assert_eq!(p.post_us(), 3.0);
        assert_eq!(p.latency_us(2).unwrap(), 1.5 * 2.0 + 10.0 + 2.0 + 3.0);
    }

    #[test]
    fn bad_specs_name_the_problem_and_the_form() {
        let cases = [
            ("tf#1,2,3,4", "does not start with `sleep#`"),
            ("sleep#1,2,3", "has 3 numbers, not 4"),
            ("sleep#1,2,3,4,5", "has 5 numbers, not 4"),
            ("sleep#", "has 1 numbers, not 4"),
            ("sleep#1,x,3,4", "intercept_us `x` is not a number"),
            ("sleep#1,2,,4", "pre_us `` is not a number"),
            ("sleep#-1,2,3,4", "slope_us `-1` must be a finite, non-negative number"),
            ("sleep#1,2,3,inf", "post_us `inf` must be a finite"),
            ("sleep#1,2,3,NaN", "post_us `NaN` must be a finite"),
        ];
        for (spec, want) in cases {
            let err = Profile::from_spec(spec, 8).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, ProfileError::BadSpec { .. }), "{spec}: {msg}");
            assert!(msg.contains(want), "{spec}: {msg}");
            assert!(msg.contains("sleep#slope_us,intercept_us,pre_us,post_us"), "{msg}");
        }
        let err = Profile::from_spec("sleep#1,2,3,4", 0).unwrap_err();
        assert!(err.to_string().contains("maximum batch size is 0"), "{err}");
    }

    #[test]
    fn monotonicity_is_forced_on_mean_and_mean_plus_std() {
        let p = Profile::from_table(
            table(&[(1, 10.0, 5.0), (2, 8.0, 1.0), (3, 20.0, 0.0), (4, 19.0, 0.5)]),
            0.0,
            0.0,
        )
        .unwrap();
        let means: Vec<f64> = (1..=4).map(|b| p.forward_mean_us(b).unwrap()).collect();
        let stds: Vec<f64> = (1..=4).map(|b| p.std_us(b).unwrap()).collect();
        // b=2: mean raised 8 -> 10, then mean+std raised 11 -> 15 (std 5).
        // b=4: mean raised 19 -> 20, mean+std 20.5 >= 20 so std kept.
        assert_eq!(means, vec![10.0, 10.0, 20.0, 20.0]);
        assert_eq!(stds, vec![5.0, 5.0, 0.0, 0.5]);
        let lat: Vec<f64> = (1..=4).map(|b| p.latency_us(b).unwrap()).collect();
        assert_eq!(lat, vec![15.0, 15.0, 20.0, 20.5]);
    }

    #[test]
    fn table_validation() {
        assert!(matches!(
            Profile::from_table(vec![], 0.0, 0.0),
            Err(ProfileError::Empty)
        ));
        let err = Profile::from_table(table(&[(1, 1.0, 0.0), (3, 2.0, 0.0)]), 0.0, 0.0).unwrap_err();
        assert!(matches!(err, ProfileError::NonContiguous { expected: 2, found: 3 }));
        let err = Profile::from_table(table(&[(2, 1.0, 0.0)]), 0.0, 0.0).unwrap_err();
        assert!(err.to_string().contains("expected batch 1, found batch 2"), "{err}");
        let err = Profile::from_table(table(&[(1, 1.0, 0.0), (1, 2.0, 0.0)]), 0.0, 0.0).unwrap_err();
        assert!(matches!(err, ProfileError::NonContiguous { .. }));
        let err = Profile::from_table(table(&[(1, f64::NAN, 0.0)]), 0.0, 0.0).unwrap_err();
        assert!(err.to_string().contains("`batches[batch=1].mean_us` is NaN"), "{err}");
        let err = Profile::from_table(table(&[(1, 1.0, 0.0)]), -1.0, 0.0).unwrap_err();
        assert!(err.to_string().contains("`pre_us` is -1"), "{err}");
        // Unsorted input is accepted and sorted.
        let p = Profile::from_table(table(&[(2, 2.0, 0.0), (1, 1.0, 0.0)]), 0.0, 0.0).unwrap();
        assert_eq!(p.latency_us(1).unwrap(), 1.0);
        assert_eq!(p.latency_us(2).unwrap(), 2.0);
    }

    #[test]
    fn out_of_range_batches_are_typed_errors() {
        let p = Profile::from_spec("sleep#1,1,0,0", 8).unwrap();
        for b in [0, 9, u32::MAX] {
            let err = p.latency_us(b).unwrap_err();
            assert!(matches!(err, ProfileError::BatchOutOfRange { batch, max_batch: 8 } if batch == b));
            assert!(err.to_string().contains("valid batch sizes are 1..=8"), "{err}");
            assert!(p.latency_ns(b).is_err());
            assert!(p.forward_mean_us(b).is_err());
            assert!(p.std_us(b).is_err());
        }
    }

    fn sample() -> Profile {
        Profile::from_table(table(&[(1, 100.5, 3.25), (2, 150.0, 4.0), (3, 190.0, 0.0)]), 12.0, 7.5)
            .unwrap()
            .with_model("resnet50")
            .with_hardware("t4")
    }

    #[test]
    fn toml_and_json_round_trip_through_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = sample();
        for name in ["p.toml", "p.json", "P.JSON"] {
            let path = dir.path().join(name);
            p.save(&path).unwrap();
            assert_eq!(Profile::load(&path).unwrap(), p, "{name}");
        }
        // Anonymous profiles omit model/hardware and still round-trip.
        let anon = Profile::from_spec("sleep#1,2,3,4", 3).unwrap();
        assert_eq!(Profile::from_toml_str(&anon.to_toml_string().unwrap()).unwrap(), anon);
        assert_eq!(Profile::from_json_str(&anon.to_json_string().unwrap()).unwrap(), anon);
    }

    #[test]
    fn loading_revalidates_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(
            &path,
            "pre_us = 0.0\npost_us = 0.0\n[[batches]]\nbatch = 2\nmean_us = 1.0\nstd_us = 0.0\n",
        )
        .unwrap();
        let err = Profile::load(&path).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("bad.toml"), "{msg}");
        assert!(msg.contains("expected batch 1, found batch 2"), "{msg}");

        let json = r#"{"pre_us":0,"post_us":0,"batches":[{"batch":1,"mean_us":-3,"std_us":0}]}"#;
        let err = Profile::from_json_str(json).unwrap_err();
        assert!(err.to_string().contains("mean_us` is -3"), "{err}");

        // Deserializing through serde directly (e.g. embedded in a bigger document) validates too.
        let err = serde_json::from_str::<Profile>(json).unwrap_err();
        assert!(err.to_string().contains("mean_us` is -3"), "{err}");

        let err = Profile::load(dir.path().join("missing.toml")).unwrap_err();
        assert!(err.to_string().contains("cannot read profile file"), "{err}");
        assert!(err.to_string().contains("missing.toml"), "{err}");

        let err = Profile::load(dir.path().join("p.yaml")).unwrap_err();
        assert!(matches!(err, ProfileError::UnknownFormat { .. }));
        assert!(err.to_string().contains("p.yaml"), "{err}");

        let err = Profile::from_toml_str("pre_us = 0\nbogus = 1\nbatches = []").unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    proptest! {
        #[test]
        fn latency_is_non_decreasing_for_any_valid_table(
            rows in prop::collection::vec((0.0f64..1e7, 0.0f64..1e6), 1..64),
            pre in 0.0f64..1e4,
            post in 0.0f64..1e4,
        ) {
            let entries = rows
                .iter()
                .enumerate()
                .map(|(i, &(m, s))| BatchLatency::new(i as u32 + 1, m, s))
                .collect();
            let p = Profile::from_table(entries, pre, post).unwrap();
            prop_assert_eq!(p.max_batch() as usize, rows.len());
            for b in 2..=p.max_batch() {
                prop_assert!(p.forward_mean_us(b).unwrap() >= p.forward_mean_us(b - 1).unwrap());
                prop_assert!(p.latency_us(b).unwrap() >= p.latency_us(b - 1).unwrap());
                prop_assert!(p.latency_ns(b).unwrap() >= p.latency_ns(b - 1).unwrap());
            }
            // Forcing only ever raises values.
            for (i, &(m, s)) in rows.iter().enumerate() {
                let b = i as u32 + 1;
                prop_assert!(p.forward_mean_us(b).unwrap() >= m);
                prop_assert!(p.forward_mean_us(b).unwrap() + p.std_us(b).unwrap() >= m + s);
            }
        }
    }
}
