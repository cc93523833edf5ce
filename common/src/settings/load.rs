//! The strict loader: defaults, then a TOML file, then `BATON_<SECTION>__<KEY>` variables, on
//! the `config` crate (DESIGN.md §7).
//!
//! `config` merges sources and deserializes, but it accepts keys nothing reads and words bad
//! values without saying where they came from. So before merging, every key of the file and of
//! the environment is checked against the sections' keys ([`super::SECTIONS`]), and when
//! deserializing fails the leaf at fault is found and named with its origin.

use std::collections::BTreeMap;
use std::path::Path;

use config::{Config, Environment, FileFormat, Source, Value, ValueKind};

use super::section::{Key, Section};
use super::{env_var_name, SettingOrigin, Settings, SettingsError, ENV_PREFIX, SECTIONS};

impl Settings {
    /// Loads settings: defaults, then the TOML `file` if given (it must exist), then the
    /// process environment's `BATON_<SECTION>__<KEY>` variables; then checks them.
    pub fn load(file: Option<&Path>) -> Result<Settings, SettingsError> {
        Self::load_from(file, None)
    }

    /// Like [`load`](Self::load) but reads `BATON_*` variables from `vars` instead of the
    /// process environment (for tests and for embedding without touching global state).
    pub fn load_with_env<I, K, V>(file: Option<&Path>, vars: I) -> Result<Settings, SettingsError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars = vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
        Self::load_from(file, Some(vars))
    }

    fn load_from(
        file: Option<&Path>,
        env_vars: Option<config::Map<String, String>>,
    ) -> Result<Settings, SettingsError> {
        let mut builder = Config::builder();
        let mut leaves = Vec::new();

        if let Some(path) = file {
            if !path.exists() {
                return Err(SettingsError::MissingFile {
                    path: path.to_path_buf(),
                });
            }
            let source = config::File::from(path).format(FileFormat::Toml).required(true);
            let table = source.collect().map_err(|e| SettingsError::File {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            leaves.extend(check_file_keys(&table, path)?);
            builder = builder.add_source(source);
        }

        let env = |vars| {
            Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .source(vars)
        };
        let parsed = env(env_vars.clone()).try_parsing(true);
        let flat = parsed.collect().map_err(|e| SettingsError::Other(e.to_string()))?;
        leaves.extend(check_env_keys(&flat)?);
        builder = builder.add_source(parsed);
        // `try_parsing` reads `0123` as the number 123 and `1e3` as 1000: right for numbers,
        // wrong for a password or a token. String settings take the variable's text verbatim.
        let raw = env(env_vars)
            .collect()
            .map_err(|e| SettingsError::Other(e.to_string()))?;
        for (key, value) in raw {
            if is_string_key(&key) {
                builder = builder
                    .set_override(key.as_str(), value)
                    .map_err(|e| SettingsError::Other(e.to_string()))?;
            }
        }

        check_booleans(&leaves)?;
        let config = builder.build().map_err(|e| SettingsError::Other(e.to_string()))?;
        let settings: Settings = match config.try_deserialize() {
            Ok(s) => s,
            Err(e) => return Err(pinpoint_bad_value(&leaves).unwrap_or(SettingsError::Other(e.to_string()))),
        };
        settings.validate()?;
        Ok(settings)
    }
}

/// One leaf value found in a source, kept to pinpoint bad values.
struct Leaf {
    key: String,
    origin: SettingOrigin,
    value: Value,
}

fn find_section(name: &str) -> Option<&'static Section> {
    SECTIONS.iter().find(|s| s.name == name)
}

/// The key `section.key`, if there is one.
fn find_key(dotted: &str) -> Option<&'static Key> {
    let (section, key) = dotted.split_once('.')?;
    find_section(section)?.key(key)
}

fn known_keys(section: &str) -> Option<Vec<&'static str>> {
    find_section(section).map(Section::key_names)
}

fn sections_hint() -> String {
    let names: Vec<&str> = SECTIONS.iter().map(|s| s.name).collect();
    format!("known sections: {}", names.join(", "))
}

fn check_key(section: &str, key: Option<&str>, origin: SettingOrigin) -> Result<(), SettingsError> {
    let Some(keys) = known_keys(section) else {
        return Err(SettingsError::UnknownKey {
            key: match key {
                Some(k) => format!("{section}.{k}"),
                None => section.to_string(),
            },
            origin,
            hint: sections_hint(),
        });
    };
    let unknown = |key: String| SettingsError::UnknownKey {
        key,
        origin: origin.clone(),
        hint: format!("known keys in [{section}]: {}", keys.join(", ")),
    };
    match key {
        None => Err(unknown(section.to_string())),
        Some(k) if keys.contains(&k) => Ok(()),
        Some(k) => Err(unknown(format!("{section}.{k}"))),
    }
}

fn check_file_keys(table: &config::Map<String, Value>, path: &Path) -> Result<Vec<Leaf>, SettingsError> {
    let origin = || SettingOrigin::File(path.to_path_buf());
    let mut leaves = Vec::new();
    // Sorted so the first error reported is deterministic.
    let sorted: BTreeMap<_, _> = table.iter().collect();
    for (section, value) in sorted {
        let ValueKind::Table(entries) = &value.kind else {
            if known_keys(section).is_none() {
                check_key(section, None, origin())?;
            }
            // A known section given as a plain value, e.g. `scheduler = 5`.
            return Err(SettingsError::InvalidValue {
                key: section.clone(),
                origin: origin(),
                message: format!("`{section}` is a section; write it as a [{section}] table"),
            });
        };
        let sorted: BTreeMap<_, _> = entries.iter().collect();
        for (key, value) in sorted {
            let dotted = format!("{section}.{key}");
            check_key(section, Some(key), origin())?;
            leaves.push(Leaf {
                key: dotted.clone(),
                origin: origin(),
                value: value.clone(),
            });
        }
    }
    Ok(leaves)
}

fn check_env_keys(flat: &config::Map<String, Value>) -> Result<Vec<Leaf>, SettingsError> {
    let mut leaves = Vec::new();
    let sorted: BTreeMap<_, _> = flat.iter().collect();
    for (dotted, value) in sorted {
        let origin = SettingOrigin::Env(env_var_name(dotted));
        match dotted.split_once('.') {
            None if known_keys(dotted).is_some() => return Err(env_section_without_key(dotted, origin)),
            None => check_key(dotted, None, origin.clone())?,
            Some((section, key)) => check_key(section, Some(key), origin.clone())?,
        }
        leaves.push(Leaf {
            key: dotted.clone(),
            origin,
            value: value.clone(),
        });
    }
    Ok(leaves)
}

/// `BATON_SCHEDULER=…` names a known section without a key: say how to spell one key.
fn env_section_without_key(section: &str, origin: SettingOrigin) -> SettingsError {
    SettingsError::UnknownKey {
        key: section.to_string(),
        origin,
        hint: format!(
            "`{section}` is a section; set one key with {}, known keys: {}",
            env_var_name(&format!("{section}.<KEY>")),
            known_keys(section).unwrap_or_default().join(", ")
        ),
    }
}

/// Whether the dotted `key` is a string setting (its default is a string).
fn is_string_key(key: &str) -> bool {
    let defaults = toml::Value::try_from(Settings::default()).expect("defaults serialize to TOML");
    key.split_once('.')
        .and_then(|(section, key)| defaults.get(section)?.get(key))
        .is_some_and(toml::Value::is_str)
}

/// The `config` crate reads `yes`, `on` or `3` as `true`; a typo in a flag should not silently
/// turn it on, so boolean settings accept only real booleans (`true`/`false`).
fn check_booleans(leaves: &[Leaf]) -> Result<(), SettingsError> {
    let defaults = toml::Value::try_from(Settings::default()).expect("defaults serialize to TOML");
    for leaf in leaves {
        let is_bool_key = leaf
            .key
            .split_once('.')
            .and_then(|(section, key)| defaults.get(section)?.get(key))
            .is_some_and(toml::Value::is_bool);
        if is_bool_key && !matches!(leaf.value.kind, ValueKind::Boolean(_)) {
            return Err(SettingsError::InvalidValue {
                key: leaf.key.clone(),
                origin: leaf.origin.clone(),
                message: format!("`{}` is not accepted; accepted values: true, false", leaf.value),
            });
        }
    }
    Ok(())
}

/// Finds the first leaf whose value alone fails to deserialize, to name it in the error.
fn pinpoint_bad_value(leaves: &[Leaf]) -> Option<SettingsError> {
    leaves.iter().find_map(|leaf| {
        let result = Config::builder()
            .set_override(leaf.key.as_str(), leaf.value.clone())
            .and_then(|b| b.build())
            .and_then(|c| c.try_deserialize::<Settings>());
        result.err().map(|e| SettingsError::InvalidValue {
            key: leaf.key.clone(),
            origin: leaf.origin.clone(),
            message: value_message(&leaf.key, &e.to_string()),
        })
    })
}

/// Tidies a `config`/serde message: drops the redundant " for key `…`" suffix and adds the
/// accepted values for enum keys.
fn value_message(key: &str, raw: &str) -> String {
    let mut msg = raw.to_string();
    if let Some(i) = msg.find(" for key `") {
        msg.truncate(i);
    }
    let accepted = find_key(key).map_or_else(Vec::new, |k| (k.accepted)());
    if !accepted.is_empty() {
        // config words an unknown variant as "enum X does not have variant constructor y".
        if let Some(i) = msg.find("does not have variant constructor ") {
            let value = &msg[i + "does not have variant constructor ".len()..];
            msg = format!("`{value}` is not accepted");
        }
        msg.push_str(&format!("; accepted values: {}", accepted.join(", ")));
    }
    msg
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::super::test_files::{no_env, write};
    use super::super::{DropPolicy, GpuChoice, NatsSettings};
    use super::*;

    /// Serializes the tests that touch the process environment.
    static ENV_LOCK: Mutex<()> = Mutex::new(());

    /// [`Settings::load`] with `var` set in the real process environment meanwhile.
    fn load_with_process_var(var: &str, value: &str) -> Result<Settings, SettingsError> {
        let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        std::env::set_var(var, value);
        let result = Settings::load(None);
        std::env::remove_var(var);
        result
    }

    /// The message of the error that loading `file` gives.
    fn file_error(file: &Path) -> String {
        Settings::load_with_env(Some(file), no_env()).unwrap_err().to_string()
    }

    /// The message of the error that one `BATON_*` variable gives.
    fn env_error(var: &str, value: &str) -> String {
        Settings::load_with_env(None, [(var, value)]).unwrap_err().to_string()
    }

    #[test]
    fn file_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            &dir,
            "baton.toml",
            "[scheduler]\ndelta_ctrl_us = 300\ndrop_policy = \"fcfs\"\n\
             [gateway]\ndefault_slo_ms = 50\n[log]\njson = true\n",
        );
        let s = Settings::load_with_env(Some(&path), no_env()).unwrap();
        assert_eq!(s.scheduler.delta_ctrl_us, 300);
        assert_eq!(s.scheduler.drop_policy, DropPolicy::Fcfs);
        assert_eq!(s.gateway.default_slo_ms, 50.0);
        assert!(s.log.json);
        // Untouched keys keep their defaults.
        assert_eq!(s.scheduler.delta_data_us, 50);
        assert_eq!(s.nats, NatsSettings::default());
    }

    #[test]
    fn env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "b.toml", "[scheduler]\ndelta_ctrl_us = 300\nepsilon_us = 7\n");
        let s = Settings::load_with_env(
            Some(&path),
            [
                ("BATON_SCHEDULER__DELTA_CTRL_US", "150"),
                ("BATON_SCHEDULER__GPU_CHOICE", "earliest"),
                ("BATON_NATS__URL", "nats://nats:4222"),
                ("BATON_LOG__JSON", "true"),
                ("BATON_GATEWAY__DEFAULT_SLO_MS", "33.5"),
                ("BATON_LOG__LEVEL", "baton=debug,info"),
                ("PATH", "/usr/bin"),
            ],
        )
        .unwrap();
        assert_eq!(s.scheduler.delta_ctrl_us, 150);
        assert_eq!(s.scheduler.epsilon_us, 7);
        assert_eq!(s.scheduler.gpu_choice, GpuChoice::Earliest);
        assert_eq!(s.nats.url, "nats://nats:4222");
        assert!(s.log.json);
        assert_eq!(s.gateway.default_slo_ms, 33.5);
        assert_eq!(s.log.level, "baton=debug,info");
    }

    #[test]
    fn real_process_environment_is_read() {
        let result = load_with_process_var("BATON_SCHEDULER__DELTA_RESP_US", "4321");
        assert_eq!(result.unwrap().scheduler.delta_resp_us, 4321);
    }

    #[test]
    fn real_process_environment_unknown_key_is_rejected() {
        let result = load_with_process_var("BATON_SCHEDULER__BOGUS", "1");
        let msg = result.unwrap_err().to_string();
        assert!(msg.contains("unknown setting `scheduler.bogus`"), "{msg}");
        assert!(
            msg.contains("from environment variable BATON_SCHEDULER__BOGUS"),
            "{msg}"
        );
        assert!(msg.contains("known keys in [scheduler]: delta_ctrl_us,"), "{msg}");
    }

    #[test]
    fn unknown_file_key_is_named_with_the_known_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "x.toml", "[scheduler]\ndelta_ctl_us = 3\n");
        let err = Settings::load_with_env(Some(&path), no_env()).unwrap_err();
        assert!(matches!(err, SettingsError::UnknownKey { .. }));
        let msg = err.to_string();
        assert!(
            msg.starts_with("unknown setting `scheduler.delta_ctl_us` (from file "),
            "{msg}"
        );
        assert!(msg.contains("x.toml"), "{msg}");
        assert!(
            msg.ends_with(
                "known keys in [scheduler]: delta_ctrl_us, delta_data_us, delta_resp_us, \
                 epsilon_us, drop_policy, condition, gpu_choice, rate_bucket_ms, rate_window_ms, worker_dead_after_ms, \
                 gateway_dead_after_ms, embedded_gateway, profile_ewma"
            ),
            "{msg}"
        );

        let path = write(&dir, "y.toml", "[schedular]\ndelta_ctrl_us = 3\n");
        let msg = file_error(&path);
        assert!(msg.contains("unknown setting `schedular.delta_ctrl_us`"), "{msg}");
        assert!(
            msg.contains("known sections: nats, scheduler, gateway, metrics, log"),
            "{msg}"
        );

        let path = write(&dir, "z.toml", "scheduler = 5\n");
        let msg = file_error(&path);
        assert!(msg.contains("write it as a [scheduler] table"), "{msg}");
    }

    #[test]
    fn unknown_env_keys_are_named() {
        let err = Settings::load_with_env(None, [("BATON_SCHEDULER__BOGUS", "1")]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown setting `scheduler.bogus`"), "{msg}");
        assert!(msg.contains("BATON_SCHEDULER__BOGUS"), "{msg}");

        // A single underscore is a common slip: it makes one unknown section.
        let msg = env_error("BATON_SCHEDULER_DELTA_CTRL_US", "1");
        assert!(msg.contains("unknown setting `scheduler_delta_ctrl_us`"), "{msg}");
        assert!(msg.contains("known sections:"), "{msg}");

        let msg = env_error("BATON_SCHEDULER", "1");
        assert!(msg.contains("BATON_SCHEDULER__<KEY>"), "{msg}");
    }

    #[test]
    fn invalid_values_name_the_key_and_what_is_accepted() {
        let err = Settings::load_with_env(None, [("BATON_SCHEDULER__DROP_POLICY", "sometimes")]).unwrap_err();
        assert!(matches!(err, SettingsError::InvalidValue { .. }));
        let msg = err.to_string();
        assert!(msg.contains("`scheduler.drop_policy`"), "{msg}");
        assert!(msg.contains("BATON_SCHEDULER__DROP_POLICY"), "{msg}");
        assert!(msg.contains("window_drop"), "{msg}");
        assert!(msg.contains("fcfs"), "{msg}");

        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "v.toml", "[scheduler]\ncondition = \"lazy\"\n");
        let msg = file_error(&path);
        assert!(msg.contains("`scheduler.condition`"), "{msg}");
        assert!(msg.contains("v.toml"), "{msg}");
        assert!(msg.contains("deferred") && msg.contains("eager"), "{msg}");

        let path = write(&dir, "w.toml", "[scheduler]\ndelta_ctrl_us = \"fast\"\n");
        let msg = file_error(&path);
        assert!(msg.contains("`scheduler.delta_ctrl_us`"), "{msg}");

        for bad in ["yes", "1", "on"] {
            let msg = env_error("BATON_LOG__JSON", bad);
            assert!(msg.contains("`log.json`"), "{msg}");
            assert!(msg.contains("accepted values: true, false"), "{msg}");
        }
        let path = write(&dir, "j.toml", "[log]\njson = 3\n");
        let msg = file_error(&path);
        assert!(msg.contains("`log.json`"), "{msg}");

        let msg = env_error("BATON_SCHEDULER__EPSILON_US", "-5");
        assert!(msg.contains("`scheduler.epsilon_us`"), "{msg}");
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.toml");
        let err = Settings::load_with_env(Some(&path), no_env()).unwrap_err();
        assert!(matches!(err, SettingsError::MissingFile { .. }));
        assert!(err.to_string().contains("nope.toml"), "{err}");
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn malformed_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "broken.toml", "[scheduler\n");
        let err = Settings::load_with_env(Some(&path), no_env()).unwrap_err();
        assert!(matches!(err, SettingsError::File { .. }), "{err}");
        assert!(err.to_string().contains("broken.toml"), "{err}");
    }
}
