//! The planner's input: hardware types with prices, modules with a latency profile per hardware
//! type, and applications as DAGs of modules with fan-outs, rates and SLOs.
//!
//! ```toml
//! [[hardware]]
//! name = "t4"
//! price_per_hour = 0.35          # dollars per worker-hour
//!
//! [[modules]]
//! name = "detector"
//! max_batch = 32                 # batch sizes of `sleep#…` profiles (default 64)
//! [modules.profiles]
//! t4 = "sleep#2400,9000,500,300" # slope, intercept, pre, post in µs
//! a10g = { pre_us = 500.0, batches = [{ batch = 1, mean_us = 6100.0 }, { batch = 2, mean_us = 7300.0 }] }
//!
//! [[apps]]
//! name = "traffic"
//! rate_rps = 60                  # frames per second into every source module
//! slo_ms = 400                   # end to end, along every source→sink path
//! modules = ["detector", "vehicle", "plate"]
//! edges = [{ from = "detector", to = "vehicle", fanout = 3.0 }, { from = "detector", to = "plate" }]
//! ```
//!
//! Validation happens here, once, with errors that name the app, module or hardware and say what
//! to change; the planning levels then work on indices and never fail on input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use baton_common::profile::Profile;
use serde::Deserialize;

use super::dag::Dag;

/// Batch sizes of a `sleep#…` profile when the module gives no `max_batch`.
pub const DEFAULT_MAX_BATCH: u32 = 64;

/// A validated planning problem.
#[derive(Debug, Clone)]
pub struct Problem {
    pub hardware: Vec<Hardware>,
    pub modules: Vec<Module>,
    pub apps: Vec<App>,
}

/// A hardware type workers can run on.
#[derive(Debug, Clone, PartialEq)]
pub struct Hardware {
    pub name: String,
    /// Dollars per worker-hour.
    pub price_per_hour: f64,
}

/// A DNN module and its profile on each hardware type it can run on.
#[derive(Debug, Clone)]
pub struct Module {
    pub name: String,
    /// `profiles[h]`: the profile on hardware `h`, `None` where the module does not run.
    pub profiles: Vec<Option<Profile>>,
}

/// An application: a DAG of modules fed `rate_rps` at every source, with an end-to-end SLO.
#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    pub rate_rps: f64,
    pub slo_ms: f64,
    /// `nodes[i]`: index into [`Problem::modules`] of the app's `i`-th module.
    pub nodes: Vec<usize>,
    pub dag: Dag,
}

/// Everything wrong with an input file, phrased as what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    #[error("cannot read planner input {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("planner input is not valid TOML for the format in docs/planner.md: {0}")]
    Toml(String),

    #[error("{what} `{name}` is defined twice; names must be unique")]
    Duplicate { what: &'static str, name: String },

    #[error("{context}: {problem}")]
    Invalid { context: String, problem: String },

    #[error("module `{module}` has a profile for unknown hardware `{hardware}`; known hardware: {known}")]
    UnknownHardware {
        module: String,
        hardware: String,
        known: String,
    },

    #[error("app `{app}` uses unknown module `{module}`; known modules: {known}")]
    UnknownModule { app: String, module: String, known: String },

    #[error("app `{app}`: edge {from} → {to} names `{module}`, which is not in the app's `modules` list")]
    EdgeOutsideApp {
        app: String,
        from: String,
        to: String,
        module: String,
    },

    #[error("module `{module}` has no latency profile on any hardware type; add one under [modules.profiles] (e.g. `{hardware} = \"sleep#slope_us,intercept_us,pre_us,post_us\"`)")]
    MissingProfile { module: String, hardware: String },

    #[error("module `{module}`, profile on `{hardware}`: {source}")]
    BadProfile {
        module: String,
        hardware: String,
        source: baton_common::profile::ProfileError,
    },

    #[error("app `{app}` has a cycle {cycle}; an app must be a DAG (remove one of these edges)")]
    Cycle { app: String, cycle: String },
}

fn invalid(context: impl Into<String>, problem: impl Into<String>) -> InputError {
    InputError::Invalid {
        context: context.into(),
        problem: problem.into(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRepr {
    hardware: Vec<HardwareRepr>,
    modules: Vec<ModuleRepr>,
    apps: Vec<AppRepr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HardwareRepr {
    name: String,
    price_per_hour: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModuleRepr {
    name: String,
    #[serde(default)]
    max_batch: Option<u32>,
    #[serde(default)]
    profiles: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppRepr {
    name: String,
    rate_rps: f64,
    slo_ms: f64,
    modules: Vec<String>,
    #[serde(default)]
    edges: Vec<EdgeRepr>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EdgeRepr {
    from: String,
    to: String,
    #[serde(default = "one")]
    fanout: f64,
}

fn one() -> f64 {
    1.0
}

impl Problem {
    /// Reads and validates a planner input file.
    pub fn load(path: &Path) -> Result<Problem, InputError> {
        let text = std::fs::read_to_string(path).map_err(|source| InputError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Problem::from_toml_str(&text)
    }

    /// Parses and validates planner input from TOML text.
    pub fn from_toml_str(s: &str) -> Result<Problem, InputError> {
        let repr: FileRepr = toml::from_str(s).map_err(|e| InputError::Toml(e.to_string()))?;
        validate(repr)
    }

    /// Index of the hardware type called `name`.
    pub fn hardware_index(&self, name: &str) -> Option<usize> {
        self.hardware.iter().position(|h| h.name == name)
    }
}

fn positive(context: String, key: &str, v: f64) -> Result<f64, InputError> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(invalid(
            context,
            format!("`{key}` is {v}; it must be a finite number above 0"),
        ))
    }
}

fn check_unique<'a>(what: &'static str, names: impl Iterator<Item = &'a String>) -> Result<(), InputError> {
    let mut seen = std::collections::BTreeSet::new();
    for n in names {
        if !seen.insert(n.as_str()) {
            return Err(InputError::Duplicate { what, name: n.clone() });
        }
    }
    Ok(())
}

fn validate(repr: FileRepr) -> Result<Problem, InputError> {
    if repr.hardware.is_empty() || repr.modules.is_empty() || repr.apps.is_empty() {
        return Err(invalid(
            "planner input",
            "it needs at least one [[hardware]], one [[modules]] and one [[apps]] entry",
        ));
    }
    check_unique("hardware", repr.hardware.iter().map(|h| &h.name))?;
    check_unique("module", repr.modules.iter().map(|m| &m.name))?;
    check_unique("app", repr.apps.iter().map(|a| &a.name))?;
    let mut hardware = Vec::new();
    for h in repr.hardware {
        let price = positive(format!("hardware `{}`", h.name), "price_per_hour", h.price_per_hour)?;
        hardware.push(Hardware {
            name: h.name,
            price_per_hour: price,
        });
    }
    let hw_names = || hardware.iter().map(|h| h.name.as_str()).collect::<Vec<_>>().join(", ");

    let mut modules = Vec::new();
    for m in repr.modules {
        let max_batch = m.max_batch.unwrap_or(DEFAULT_MAX_BATCH);
        if max_batch == 0 {
            return Err(invalid(
                format!("module `{}`", m.name),
                "`max_batch` must be at least 1",
            ));
        }
        let mut profiles = vec![None; hardware.len()];
        for (hw, v) in m.profiles {
            let Some(h) = hardware.iter().position(|x| x.name == hw) else {
                return Err(InputError::UnknownHardware {
                    module: m.name,
                    hardware: hw,
                    known: hw_names(),
                });
            };
            let bad = |source| InputError::BadProfile {
                module: m.name.clone(),
                hardware: hw.clone(),
                source,
            };
            let p = match v {
                toml::Value::String(spec) => Profile::from_spec(&spec, max_batch).map_err(bad)?,
                toml::Value::Table(t) => {
                    let p: Profile = toml::Value::Table(t).try_into().map_err(|e: toml::de::Error| {
                        invalid(
                            format!("module `{}`, profile on `{hw}`", m.name),
                            format!("not a profile table (keys pre_us, post_us, batches): {}", e.message()),
                        )
                    })?;
                    p
                }
                other => {
                    return Err(invalid(
                        format!("module `{}`, profile on `{hw}`", m.name),
                        format!(
                            "a {} is not a profile; give a `sleep#…` string or a table with `batches`",
                            other.type_str()
                        ),
                    ))
                }
            };
            profiles[h] = Some(p.with_model(m.name.clone()).with_hardware(hw));
        }
        if profiles.iter().all(Option::is_none) {
            return Err(InputError::MissingProfile {
                module: m.name,
                hardware: hardware[0].name.clone(),
            });
        }
        modules.push(Module { name: m.name, profiles });
    }
    let module_names = || modules.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ");

    let mut apps = Vec::new();
    for a in repr.apps {
        let ctx = format!("app `{}`", a.name);
        let rate_rps = positive(ctx.clone(), "rate_rps", a.rate_rps)?;
        let slo_ms = positive(ctx.clone(), "slo_ms", a.slo_ms)?;
        if a.modules.is_empty() {
            return Err(invalid(ctx, "`modules` is empty; list the app's modules"));
        }
        let mut nodes = Vec::new();
        for name in &a.modules {
            let Some(m) = modules.iter().position(|m| &m.name == name) else {
                return Err(InputError::UnknownModule {
                    app: a.name,
                    module: name.clone(),
                    known: module_names(),
                });
            };
            if nodes.contains(&m) {
                return Err(invalid(ctx, format!("module `{name}` is listed twice in `modules`")));
            }
            nodes.push(m);
        }
        let mut edges = Vec::new();
        for e in &a.edges {
            let node = |name: &str| -> Result<usize, InputError> {
                if let Some(i) = a.modules.iter().position(|m| m == name) {
                    return Ok(i);
                }
                if modules.iter().any(|m| m.name == name) {
                    Err(InputError::EdgeOutsideApp {
                        app: a.name.clone(),
                        from: e.from.clone(),
                        to: e.to.clone(),
                        module: name.to_string(),
                    })
                } else {
                    Err(InputError::UnknownModule {
                        app: a.name.clone(),
                        module: name.to_string(),
                        known: module_names(),
                    })
                }
            };
            let (u, v) = (node(&e.from)?, node(&e.to)?);
            let fanout = positive(format!("{ctx}, edge {} → {}", e.from, e.to), "fanout", e.fanout)?;
            if edges.iter().any(|&(x, y, _)| (x, y) == (u, v)) {
                return Err(invalid(ctx, format!("edge {} → {} is listed twice", e.from, e.to)));
            }
            edges.push((u, v, fanout));
        }
        let dag = Dag::new(nodes.len(), &edges).map_err(|cycle| {
            let mut names: Vec<&str> = cycle.iter().map(|&i| a.modules[i].as_str()).collect();
            names.push(names[0]);
            InputError::Cycle {
                app: a.name.clone(),
                cycle: names.join(" → "),
            }
        })?;
        apps.push(App {
            name: a.name,
            rate_rps,
            slo_ms,
            nodes,
            dag,
        });
    }
    Ok(Problem {
        hardware,
        modules,
        apps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = r#"
[[hardware]]
name = "t4"
price_per_hour = 0.5
[[hardware]]
name = "a100"
price_per_hour = 3.0
"#;

    fn err(body: &str) -> String {
        Problem::from_toml_str(&format!("{HEAD}{body}"))
            .unwrap_err()
            .to_string()
    }

    const MODS: &str = r#"
[[modules]]
name = "a"
profiles.t4 = "sleep#1000,5000,0,0"
[[modules]]
name = "b"
max_batch = 4
profiles.a100 = { pre_us = 100.0, batches = [{ batch = 1, mean_us = 900.0 }, { batch = 2, mean_us = 1000.0 }] }
"#;

    #[test]
    fn parses_specs_tables_and_fanouts() {
        let p = Problem::from_toml_str(&format!(
            "{HEAD}{MODS}[[apps]]\nname = \"x\"\nrate_rps = 10\nslo_ms = 100\nmodules = [\"a\", \"b\"]\n\
             edges = [{{ from = \"a\", to = \"b\", fanout = 2.5 }}]\n"
        ))
        .unwrap();
        assert_eq!(p.modules[0].profiles[0].as_ref().unwrap().max_batch(), 64);
        assert!(p.modules[0].profiles[1].is_none());
        assert_eq!(
            p.modules[1].profiles[1].as_ref().unwrap().latency_us(2).unwrap(),
            1100.0
        );
        assert_eq!(p.apps[0].dag.rates(10.0), vec![10.0, 25.0]);
    }

    #[test]
    fn cycle_names_the_app_and_the_modules() {
        let e = err(&format!(
            "{MODS}[[apps]]\nname = \"loop\"\nrate_rps = 1\nslo_ms = 100\nmodules = [\"a\", \"b\"]\n\
             edges = [{{ from = \"a\", to = \"b\" }}, {{ from = \"b\", to = \"a\" }}]\n"
        ));
        assert!(e.starts_with("app `loop` has a cycle "), "{e}");
        assert!(e.contains("a → b → a") || e.contains("b → a → b"), "{e}");
    }

    #[test]
    fn unknown_module_lists_the_known_ones() {
        let e = err(&format!(
            "{MODS}[[apps]]\nname = \"x\"\nrate_rps = 1\nslo_ms = 100\nmodules = [\"a\", \"zz\"]\n"
        ));
        assert_eq!(e, "app `x` uses unknown module `zz`; known modules: a, b");
    }

    #[test]
    fn unknown_hardware_lists_the_known_ones() {
        let e = err("[[modules]]\nname = \"a\"\nprofiles.v100 = \"sleep#1,1,0,0\"\n[[apps]]\nname = \"x\"\nrate_rps = 1\nslo_ms = 100\nmodules = [\"a\"]\n");
        assert_eq!(
            e,
            "module `a` has a profile for unknown hardware `v100`; known hardware: t4, a100"
        );
    }

    #[test]
    fn missing_profile_says_how_to_add_one() {
        let e =
            err("[[modules]]\nname = \"a\"\n[[apps]]\nname = \"x\"\nrate_rps = 1\nslo_ms = 100\nmodules = [\"a\"]\n");
        assert!(
            e.starts_with("module `a` has no latency profile on any hardware type; add one"),
            "{e}"
        );
    }

    #[test]
    fn bad_numbers_and_unknown_keys_are_rejected() {
        let e = err(&format!(
            "{MODS}[[apps]]\nname = \"x\"\nrate_rps = 0\nslo_ms = 100\nmodules = [\"a\"]\n"
        ));
        assert_eq!(e, "app `x`: `rate_rps` is 0; it must be a finite number above 0");
        let e = err(&format!(
            "{MODS}[[apps]]\nname = \"x\"\nrate = 3\nslo_ms = 100\nmodules = [\"a\"]\n"
        ));
        assert!(e.contains("unknown field `rate`"), "{e}");
        let e = err(&format!(
            "{MODS}[[apps]]\nname = \"x\"\nrate_rps = 3\nslo_ms = 100\nmodules = [\"a\"]\nedges = [{{ from = \"a\", to = \"b\" }}]\n"
        ));
        assert_eq!(
            e,
            "app `x`: edge a → b names `b`, which is not in the app's `modules` list"
        );
    }
}
