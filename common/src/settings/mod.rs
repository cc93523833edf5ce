//! Baton's settings: one tree, documented defaults, strict loading.
//!
//! Every tunable lives in [`Settings`] with a default that works on a laptop. Values are layered:
//! built-in defaults, then an optional TOML file, then environment variables
//! `BATON_<SECTION>__<KEY>` (e.g. `BATON_SCHEDULER__DELTA_CTRL_US=150`), which is what container
//! deployments set.
//!
//! Loading is strict on purpose. A misspelt key (`delta_ctl_us`) that is silently ignored leaves
//! the default in force and costs an afternoon of confusion, so unknown keys — in the file or in
//! `BATON_*` variables — are errors that name the key, where it came from, and the keys that do
//! exist. Bad values name the key and what is accepted.
//!
//! A key's doc is written once, as the doc comment of its field: `settings_section!` (a
//! `macro_rules!` in `section.rs`) takes each section's struct with a default per field and
//! emits the struct, its `Default` and its key docs, which the loader checks keys against and
//! [`Settings::documented_defaults`] renders for `baton config` and docs/settings.md. We chose
//! this over confique, whose TOML template renders doc comments but which wants every variable
//! name written by hand per field (no `BATON_SECTION__KEY` derivation), cannot reject an unknown
//! `BATON_*` variable and would replace the `config` loader DESIGN.md §7 chose, and over figment,
//! which renders no template at all; the macro needs no new dependency.
//!
//! One file per job: `section.rs` (the macro), one file per section (`nats.rs` with its
//! authentication rules, `scheduler.rs`, `gateway.rs`, `metrics.rs`, `log.rs`), `secret.rs`,
//! `load.rs` (the strict loader), `error.rs` and `docs.rs` (the renderer).
//!
//! The scheduling policy enums ([`DropPolicy`], [`Condition`], [`GpuChoice`]) are the scheduling
//! core's (`baton-core`); settings name them through its `serde` feature.

mod docs;
mod error;
mod gateway;
mod load;
mod log;
mod metrics;
mod nats;
mod scheduler;
mod secret;
mod section;

use serde::{Deserialize, Serialize};

pub use baton_core::{Condition, DropPolicy, GpuChoice, ParseEnumError};
pub use error::{SettingOrigin, SettingsError};
pub use gateway::GatewaySettings;
pub use log::LogSettings;
pub use metrics::MetricsSettings;
pub use nats::NatsSettings;
pub use scheduler::SchedulerSettings;
pub use secret::Secret;

/// Prefix of environment variables read by [`Settings::load`].
pub const ENV_PREFIX: &str = "BATON";

/// The whole settings tree. See [`Settings::documented_defaults`] for the TOML form.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `[nats]`, see [`NatsSettings`].
    pub nats: NatsSettings,
    /// `[scheduler]`, see [`SchedulerSettings`].
    pub scheduler: SchedulerSettings,
    /// `[gateway]`, see [`GatewaySettings`].
    pub gateway: GatewaySettings,
    /// `[metrics]`, see [`MetricsSettings`].
    pub metrics: MetricsSettings,
    /// `[log]`, see [`LogSettings`].
    pub log: LogSettings,
}

/// Every section, in the order of [`Settings`]' fields (a test checks they match).
const SECTIONS: &[section::Section] = &[
    NatsSettings::SECTION,
    SchedulerSettings::SECTION,
    GatewaySettings::SECTION,
    MetricsSettings::SECTION,
    LogSettings::SECTION,
];

impl Settings {
    /// Checks rules that span values or that types cannot express, section by section.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.scheduler.validate()?;
        self.gateway.validate()?;
        self.nats.validate()?;
        self.metrics.validate()
    }
}

/// The environment variable that sets the dotted `key`, e.g. `BATON_NATS__USER` for `nats.user`.
fn env_var_name(key: &str) -> String {
    format!("{ENV_PREFIX}_{}", key.replace('.', "__").to_ascii_uppercase())
}

/// Settings files for tests.
#[cfg(test)]
mod test_files {
    use std::path::PathBuf;

    pub(super) fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// No `BATON_*` variables, for [`Settings::load_with_env`](super::Settings::load_with_env).
    pub(super) fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::test_files::no_env;
    use super::*;

    #[test]
    fn defaults() {
        let s = Settings::load_with_env(None, no_env()).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.nats.url, "nats://127.0.0.1:4222");
        assert_eq!(s.nats.name, "baton");
        assert_eq!(s.scheduler.delta_ctrl_us, 1000);
        assert_eq!(s.scheduler.delta_data_us, 50);
        assert_eq!(s.scheduler.delta_resp_us, 2000);
        assert_eq!(s.scheduler.epsilon_us, 1000);
        assert_eq!(s.scheduler.drop_policy, DropPolicy::WindowDrop);
        assert_eq!(s.scheduler.condition, Condition::Deferred);
        assert_eq!(s.scheduler.gpu_choice, GpuChoice::Consolidate);
        assert_eq!(s.scheduler.rate_bucket_ms, 50);
        assert_eq!(s.scheduler.rate_window_ms, 5000);
        assert_eq!(s.gateway.max_payload_bytes, 8 * 1024 * 1024);
        assert_eq!(s.gateway.held_bytes_budget, 1024 * 1024 * 1024);
        assert_eq!(s.gateway.default_slo_ms, 100.0);
        assert_eq!(s.metrics.listen, "127.0.0.1:9090");
        assert_eq!(s.log.level, "info");
        assert!(!s.log.json);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn rules_are_checked_after_loading() {
        let cases = [
            ("BATON_SCHEDULER__RATE_WINDOW_MS", "5001", "scheduler.rate_window_ms"),
            ("BATON_SCHEDULER__RATE_WINDOW_MS", "0", "scheduler.rate_window_ms"),
            ("BATON_SCHEDULER__RATE_BUCKET_MS", "0", "scheduler.rate_bucket_ms"),
            ("BATON_GATEWAY__DEFAULT_SLO_MS", "0", "gateway.default_slo_ms"),
            ("BATON_GATEWAY__HELD_BYTES_BUDGET", "10", "gateway.held_bytes_budget"),
            ("BATON_METRICS__LISTEN", "nowhere", "metrics.listen"),
        ];
        for (var, value, key) in cases {
            let err = Settings::load_with_env(None, [(var, value)]).unwrap_err();
            assert!(
                matches!(&err, SettingsError::Rule { key: k, .. } if *k == key),
                "{var}={value}: {err}"
            );
            assert!(err.to_string().contains(key), "{err}");
        }
        let msg = Settings::load_with_env(None, [("BATON_SCHEDULER__RATE_WINDOW_MS", "5001")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "invalid setting `scheduler.rate_window_ms`: 5001 must be a positive multiple of \
             scheduler.rate_bucket_ms (50)"
        );
    }
}
