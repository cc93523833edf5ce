//! The YAML format of a workload file: a serde schema that refuses unknown keys, values checked
//! while they are read, and errors that name the line, the model and the key.
//!
//! # Why it reads like this
//!
//! A typo in a benchmark file must fail loudly, not silently run a different benchmark, so every
//! struct here is `deny_unknown_fields` and every value type (`values.rs`) checks its range inside
//! its own `Deserialize`: the YAML parser then knows where the bad value is and reports its line.
//! serde says where with a path (`models[3].bench[0]`); `explain.rs` turns that into the words the
//! rest of Baton uses ("model `yolo_2` (models[3]), key `bench`, item 0"), because a user knows
//! models by name. Checks that span keys (a bare rps number needs `segment_duration`; names are
//! unique) run after parsing, here, and name the model and key but not the line.
//!
//! The YAML crate is `yaml_serde`: `serde_yaml` (archived by its author in 2024) continued by the
//! YAML organisation, which also maintains the libyaml it is built on (0.10.7, August 2026). It is
//! the same parser, so Symphony's files (0x-hex seeds, YAML 1.2 numbers, duplicate keys refused)
//! read exactly as before, and it adds one crate to our tree (`libyaml-rs`, libyaml translated to
//! unsafe Rust as serde_yaml's was). `serde_yaml_ng` and `serde_norway` have had no release since
//! 2024, `serde-saphyr` (pure Rust, very active) needs Rust 1.89 where we promise 1.88 and has
//! changed major version twice since July, and `serde_yml` carries a soundness advisory
//! (RUSTSEC-2025-0068).

mod explain;
mod values;

use std::path::Path;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::{Gap, ModelLoad, Segment, Workload, WorkloadError};
use explain::{explain, invalid, model_context};
use values::{Framework, Gpus, Millis, Name, NonEmpty, Seconds, Seed, SegmentFile};

impl Workload {
    /// Reads and validates a workload file. Errors name the file, the line, the model and the key.
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
    pub fn from_yaml_str(text: &str) -> Result<Workload, WorkloadError> {
        let file: WorkloadFile =
            serde_path_to_error::deserialize(yaml_serde::Deserializer::from_str(text)).map_err(|e| explain(e, text))?;
        file.into_workload()
    }
}

// ---------------------------------------------------------------------------------------------
// The schema. Field order is the order in which "expected one of …" lists the keys.

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with keys `seed`, `gpus` and `models`")]
struct WorkloadFile {
    seed: Seed,
    /// Symphony's runner options: accepted so that its files load unchanged, otherwise ignored.
    #[serde(default, rename = "multithread")]
    _multithread: IgnoredAny,
    #[serde(default, rename = "dump_schedule")]
    _dump_schedule: IgnoredAny,
    gpus: Gpus,
    models: NonEmpty<ModelFile>,
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    expecting = "a mapping with keys framework, model, slo, gap, bench, …"
)]
struct ModelFile {
    framework: Framework,
    model: Name,
    slo: Millis,
    gap: Gap,
    #[serde(default)]
    segment_duration: Option<Seconds>,
    #[serde(default)]
    warmup: Option<Vec<SegmentFile>>,
    bench: NonEmpty<SegmentFile>,
    #[serde(default)]
    cooldown: Option<Vec<SegmentFile>>,
}

impl WorkloadFile {
    fn into_workload(self) -> Result<Workload, WorkloadError> {
        let models = (self.models.0.into_iter().enumerate())
            .map(|(i, m)| m.into_model(i))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, m) in models.iter().enumerate() {
            if let Some(j) = models[..i].iter().position(|other| other.name == m.name) {
                return Err(invalid(
                    None,
                    model_context(Some(&m.name), i),
                    format!("the name is already used by models[{j}]; model names must be unique"),
                ));
            }
        }
        Ok(Workload {
            seed: self.seed.0,
            gpus: self.gpus.0,
            models,
        })
    }
}

impl ModelFile {
    fn into_model(self, index: usize) -> Result<ModelLoad, WorkloadError> {
        let name = self.model.0;
        let segment_duration = self.segment_duration.map(|d| d.0);
        let phase = |key: &str, entries: Vec<SegmentFile>| {
            (entries.into_iter().enumerate())
                .map(|(item, entry)| match (entry, segment_duration) {
                    (SegmentFile::Timed(segment), _) => Ok(segment),
                    (SegmentFile::Bare(rps), Some(duration_s)) => Ok(Segment { duration_s, rps }),
                    (SegmentFile::Bare(_), None) => Err(invalid(
                        None,
                        format!("{}, key `{key}`, item {item}", model_context(Some(&name), index)),
                        "a bare rps number needs the model's `segment_duration`; \
                         set it or write `{duration: <s>, rps: <r>}`",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let warmup = phase("warmup", self.warmup.unwrap_or_default())?;
        let bench = phase("bench", self.bench.0)?;
        let cooldown = phase("cooldown", self.cooldown.unwrap_or_default())?;
        Ok(ModelLoad {
            profile: self.framework.0.with_model(name.clone()),
            name,
            slo_ms: self.slo.0,
            gap: self.gap,
            warmup,
            bench,
            cooldown,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::workload::testing::{err_of, load, seg, with_model_lines};
    use crate::workload::{Gap, Workload};

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
    fn runner_options_and_empty_phases_are_accepted() {
        let yaml =
            with_model_lines("  segment_duration:\n  warmup: []\n  bench: [{duration: 1, rps: 10}]\n  cooldown:\n")
                .replace("gpus: 2", "multithread: yes\ndump_schedule: stdout\ngpus: 2");
        let w = Workload::from_yaml_str(&yaml).unwrap();
        assert_eq!((w.models[0].warmup.len(), w.models[0].cooldown.len()), (0, 0));
        assert_eq!(w.models[0].bench, vec![seg(1.0, 10.0)]);
        assert_eq!(w.models[0].profile.model(), Some("resnet_0"));
    }
}
