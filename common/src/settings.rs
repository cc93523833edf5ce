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
//! exist. Bad values name the key and what is accepted. [`Settings::documented_defaults`] renders
//! the whole tree as commented TOML for `baton config` and docs/settings.md; tests keep both in
//! step with the structs.
//!
//! The scheduling policy enums ([`DropPolicy`], [`Condition`], [`GpuChoice`]) live here because
//! they are settings first; the scheduler core uses these same types.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use config::{Config, Environment, FileFormat, Source, Value, ValueKind};
use serde::{Deserialize, Serialize};

/// Prefix of environment variables read by [`Settings::load`].
pub const ENV_PREFIX: &str = "BATON";

/// Defines a settings enum with its wire/CLI names, `ALL`, `as_str`, `Display` and `FromStr`.
macro_rules! settings_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every variant, default first.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name used in settings files, on the command line and in metrics.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = ParseEnumError;

            /// Accepts the snake_case name, case-insensitively, with `-` for `_` (`window-drop`).
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let norm = s.trim().to_ascii_lowercase().replace('-', "_");
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == norm)
                    .ok_or_else(|| ParseEnumError {
                        what: $what,
                        value: s.to_string(),
                        expected: &[$($text),+],
                    })
            }
        }
    };
}

settings_enum! {
    /// What the dispatcher does with requests that cannot meet their deadline (DESIGN §4 step 3).
    DropPolicy, "drop policy" {
        /// Reject prefix requests whose deadline falls before the finish of the chosen batch
        /// (Symphony's default): keeps the queue healthy under overload.
        #[default]
        WindowDrop = "window_drop",
        /// Reject only requests that would miss their deadline even in a batch of one.
        DropTimeout = "drop_timeout",
        /// Never reject early; late results are still delivered, flagged `late`.
        Fcfs = "fcfs",
    }
}

settings_enum! {
    /// When a formed batch is dispatched (DESIGN §4, "schedulable window").
    Condition, "dispatch condition" {
        /// Wait until the latest moment that still meets the deadline or no further request could
        /// join, whichever is first: bigger batches, fewer GPUs.
        #[default]
        Deferred = "deferred",
        /// Dispatch as soon as a GPU is free (for ablation and comparison).
        Eager = "eager",
    }
}

settings_enum! {
    /// Which free GPU a batch is matched to.
    GpuChoice, "GPU choice" {
        /// The lowest stable rank among GPUs free in time: packs load onto few GPUs so the rest
        /// stay idle and can be scaled away.
        #[default]
        Consolidate = "consolidate",
        /// The earliest-free GPU (the Symphony authors' choice): spreads load over every GPU.
        Earliest = "earliest",
    }
}

/// A string that names none of an enum's variants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`; expected one of: {}", expected.join(", "))]
pub struct ParseEnumError {
    what: &'static str,
    value: String,
    expected: &'static [&'static str],
}

/// The whole settings tree. See [`Settings::documented_defaults`] for the TOML form.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `[nats]`: how to reach the NATS server.
    pub nats: NatsSettings,
    /// `[scheduler]`: the dispatcher's constants and policies.
    pub scheduler: SchedulerSettings,
    /// `[gateway]`: request intake limits.
    pub gateway: GatewaySettings,
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: MetricsSettings,
    /// `[log]`: logging.
    pub log: LogSettings,
}

/// `[nats]` settings: where the server is, how to authenticate, and TLS.
///
/// At most one authentication method may be set: `user` + `password`, `token`, `nkey_seed` or
/// `creds_file`; none means an open server. Empty strings mean "not set", so every key can be
/// given (or cleared) through the environment. [`crate::nats`] turns these settings into a
/// connection; it is the only place that does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsSettings {
    /// NATS server URL(s), comma-separated. Default `"nats://127.0.0.1:4222"`.
    pub url: String,
    /// Connection name shown by the NATS server's monitoring. Default `"baton"`.
    pub name: String,
    /// User for user/password authentication (with `password`). Default `""` (none).
    pub user: String,
    /// Password of `user`. Default `""`.
    pub password: Secret,
    /// Token authentication. Default `""` (none).
    pub token: Secret,
    /// NKey authentication: the user's seed (`SU…`). Default `""` (none).
    pub nkey_seed: Secret,
    /// A `.creds` file (user JWT and nkey seed) for decentralised authentication. Default `""`.
    pub creds_file: String,
    /// PEM file of the CA certificate(s) that signed the server's certificate. Default `""`
    /// (the system's roots).
    pub ca_file: String,
    /// PEM client certificate for mutual TLS (with `key_file`). Default `""`.
    pub cert_file: String,
    /// PEM private key of `cert_file`. Default `""`.
    pub key_file: String,
    /// Refuse to talk to a server without TLS. Default `false` (TLS when the server asks for it
    /// or the URL is `tls://`).
    pub require_tls: bool,
}

impl Default for NatsSettings {
    fn default() -> Self {
        NatsSettings {
            url: "nats://127.0.0.1:4222".to_string(),
            name: "baton".to_string(),
            user: String::new(),
            password: Secret::default(),
            token: Secret::default(),
            nkey_seed: Secret::default(),
            creds_file: String::new(),
            ca_file: String::new(),
            cert_file: String::new(),
            key_file: String::new(),
            require_tls: false,
        }
    }
}

/// A secret setting (password, token, nkey seed): a plain string on the way in, never shown by
/// `Debug`, so settings can be logged without leaking it. Empty means "not set".
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for handing to the NATS client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_set(&self) -> bool {
        !self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_set() { "\"<redacted>\"" } else { "\"\"" })
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Secret(s.to_string())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl NatsSettings {
    /// The authentication methods set, as `(key, what)`; [`validate`](Self::validate) allows
    /// at most one.
    fn auth_methods(&self) -> Vec<(&'static str, &'static str)> {
        let mut methods = Vec::new();
        if !self.user.is_empty() || self.password.is_set() {
            methods.push(("nats.user", "user/password"));
        }
        if self.token.is_set() {
            methods.push(("nats.token", "token"));
        }
        if self.nkey_seed.is_set() {
            methods.push(("nats.nkey_seed", "nkey_seed"));
        }
        if !self.creds_file.is_empty() {
            methods.push(("nats.creds_file", "creds_file"));
        }
        methods
    }

    /// Checks the `[nats]` rules: a URL, at most one way to authenticate, complete pairs
    /// (user with password, certificate with key), a plausible nkey seed, and files that exist.
    /// Errors name the key and say what to change.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let rule = |key, message: String| Err(SettingsError::Rule { key, message });
        if self.url.trim().is_empty() {
            return rule("nats.url", "must not be empty, e.g. \"nats://127.0.0.1:4222\"".into());
        }
        if self.password.is_set() && self.user.is_empty() {
            return rule(
                "nats.password",
                format!(
                    "is set but nats.user is empty: set both ({} and {}) or neither",
                    env_var_name("nats.user"),
                    env_var_name("nats.password")
                ),
            );
        }
        if !self.user.is_empty() && !self.password.is_set() {
            return rule(
                "nats.user",
                format!(
                    "`{}` is set but nats.password is empty: set both ({} and {}) or neither",
                    self.user,
                    env_var_name("nats.user"),
                    env_var_name("nats.password")
                ),
            );
        }
        let methods = self.auth_methods();
        if let [_, (key, _), ..] = methods.as_slice() {
            let names: Vec<&str> = methods.iter().map(|(_, what)| *what).collect();
            return rule(
                key,
                format!(
                    "only one way to authenticate may be set, but {} are: keep one and clear the others",
                    names.join(" and ")
                ),
            );
        }
        // A user seed is "S" (seed) + "U" (user) + base32; account or server seeds would be
        // refused by the server with a less helpful message.
        let seed = self.nkey_seed.expose();
        if self.nkey_seed.is_set() && !(seed.starts_with("SU") && seed.len() == 58) {
            return rule(
                "nats.nkey_seed",
                "is not a user nkey seed (58 characters starting with `SU`): make one with \
                 `nk -gen user -pubout` and list its public key (U…) in the server's authorization"
                    .into(),
            );
        }
        if self.cert_file.is_empty() != self.key_file.is_empty() {
            let (set, missing) = if self.cert_file.is_empty() {
                ("nats.key_file", "nats.cert_file")
            } else {
                ("nats.cert_file", "nats.key_file")
            };
            return rule(
                set,
                format!("is set but {missing} is empty: a client certificate needs its private key (set both)"),
            );
        }
        for (key, path) in [
            ("nats.creds_file", &self.creds_file),
            ("nats.ca_file", &self.ca_file),
            ("nats.cert_file", &self.cert_file),
            ("nats.key_file", &self.key_file),
        ] {
            if !path.is_empty() && !Path::new(path).is_file() {
                return rule(
                    key,
                    format!(
                        "file `{path}` does not exist (or is not a file); fix the path or clear {}",
                        env_var_name(key)
                    ),
                );
            }
        }
        Ok(())
    }
}

/// `[scheduler]` settings: the constants and policies of deferred batch scheduling (DESIGN §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerSettings {
    /// δ_ctrl: time from sending a batch plan to the batch being able to start, in µs.
    /// Default `1000` (measured over NATS on loopback: 0.9–2.2 ms including timer lag; see
    /// docs/benchmarks.md). Symphony's RDMA setting was 100.
    pub delta_ctrl_us: u64,
    /// δ_data: time to move one request's input to a worker, in µs. Default `50`.
    pub delta_data_us: u64,
    /// δ_resp: time reserved at the end of the SLO for delivering the reply, in µs. Default `2000`.
    pub delta_resp_us: u64,
    /// ε: timer margin before a batch's latest start, in µs. Default `1000` (tokio timers
    /// fire up to ~1 ms late). Symphony's RDMA setting was 100.
    pub epsilon_us: u64,
    /// Which requests are rejected early. Default `window_drop`.
    pub drop_policy: DropPolicy,
    /// When a batch is dispatched. Default `deferred`.
    pub condition: Condition,
    /// Which free GPU gets a batch. Default `consolidate`.
    pub gpu_choice: GpuChoice,
    /// Width of one arrival-rate meter bucket, in ms. Default `50`.
    pub rate_bucket_ms: u64,
    /// Window the arrival rate is averaged over, in ms; a multiple of `rate_bucket_ms`.
    /// Default `5000`.
    pub rate_window_ms: u64,
    /// A worker whose heartbeats stop for this long is declared dead, in ms. Default `750`
    /// (three 250 ms heartbeats).
    pub worker_dead_after_ms: u64,
    /// Weight of each finished batch when correcting a model's profile from what batches
    /// really take (an EWMA of actual / profiled; 0 turns correction off). Default `0.05`.
    pub profile_ewma: f64,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        SchedulerSettings {
            delta_ctrl_us: 1000,
            delta_data_us: 50,
            delta_resp_us: 2000,
            epsilon_us: 1000,
            drop_policy: DropPolicy::default(),
            condition: Condition::default(),
            gpu_choice: GpuChoice::default(),
            rate_bucket_ms: 50,
            rate_window_ms: 5000,
            worker_dead_after_ms: 750,
            profile_ewma: 0.05,
        }
    }
}

/// `[gateway]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    /// Largest accepted request body in bytes; larger ones get `payload_too_large`.
    /// Default `8388608` (8 MiB).
    pub max_payload_bytes: u64,
    /// Total request bytes a gateway holds while requests wait; when full, new requests get
    /// `overloaded`. Default `1073741824` (1 GiB).
    pub held_bytes_budget: u64,
    /// SLO for requests that do not set `slo_ms`, in ms. Default `100.0`.
    pub default_slo_ms: f64,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            max_payload_bytes: 8 << 20,
            held_bytes_budget: 1 << 30,
            default_slo_ms: 100.0,
        }
    }
}

/// `[metrics]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Address the Prometheus text endpoint listens on (`ip:port`). Default `"127.0.0.1:9090"`.
    pub listen: String,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            listen: "127.0.0.1:9090".to_string(),
        }
    }
}

/// `[log]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// Log filter in `tracing` `EnvFilter` syntax, e.g. `"info"` or `"baton=debug,info"`.
    /// Default `"info"`.
    pub level: String,
    /// Emit JSON lines instead of human-readable text. Default `false`.
    pub json: bool,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".to_string(),
            json: false,
        }
    }
}

/// Documentation of every key, rendered by [`Settings::documented_defaults`]. A test checks it
/// lists exactly the fields of the structs above, in order.
/// `(key, doc)` pairs of one section.
type KeyDocs = &'static [(&'static str, &'static str)];

/// `(section, doc, keys)`.
const SECTIONS: &[(&str, &str, KeyDocs)] = &[
    (
        "nats",
        "How to reach the NATS server. At most one way to authenticate: user + password, token,\n\
         nkey_seed or creds_file (none: an open server). Empty means not set.",
        &[
            (
                "url",
                "NATS server URL(s), comma-separated; tls://host:port requires TLS.",
            ),
            ("name", "Connection name shown by the NATS server's monitoring."),
            ("user", "User for user/password authentication."),
            (
                "password",
                "Password of user. Secrets are best passed as BATON_NATS__PASSWORD etc. from a secret store.",
            ),
            ("token", "Token authentication."),
            (
                "nkey_seed",
                "NKey authentication: the user's seed (SU...), from `nk -gen user`.",
            ),
            (
                "creds_file",
                "Path of a .creds file (user JWT + nkey seed) for decentralised (operator mode) auth.",
            ),
            (
                "ca_file",
                "PEM CA certificate(s) to verify the server's TLS certificate; empty: system roots.",
            ),
            ("cert_file", "PEM client certificate for mutual TLS (with key_file)."),
            ("key_file", "PEM private key of cert_file."),
            (
                "require_tls",
                "Refuse to connect without TLS (otherwise TLS when the server or a tls:// URL asks).",
            ),
        ],
    ),
    (
        "scheduler",
        "Deferred batch scheduling constants (microseconds) and policies.",
        &[
            ("delta_ctrl_us", "delta_ctrl: time to deliver a batch plan to a worker."),
            (
                "delta_data_us",
                "delta_data: time to move one request's input to a worker.",
            ),
            (
                "delta_resp_us",
                "delta_resp: time reserved at the end of the SLO for the reply.",
            ),
            ("epsilon_us", "epsilon: timer margin before a batch's latest start."),
            (
                "drop_policy",
                "Early rejection: window_drop | drop_timeout | fcfs (never drop, answer late).",
            ),
            (
                "condition",
                "Dispatch time: deferred (as late as safe) | eager (as soon as a GPU is free).",
            ),
            (
                "gpu_choice",
                "GPU matching: consolidate (fewest GPUs busy) | earliest (spread load).",
            ),
            ("rate_bucket_ms", "Arrival-rate meter bucket width, in ms."),
            (
                "rate_window_ms",
                "Arrival-rate averaging window, in ms; a multiple of rate_bucket_ms.",
            ),
            (
                "worker_dead_after_ms",
                "A worker silent this long (no heartbeat) is declared dead, in ms.",
            ),
            (
                "profile_ewma",
                "Weight of each finished batch in correcting a profile online (0: off).",
            ),
        ],
    ),
    (
        "gateway",
        "Request intake limits.",
        &[
            (
                "max_payload_bytes",
                "Largest request body; larger ones are rejected payload_too_large.",
            ),
            (
                "held_bytes_budget",
                "Total bytes of waiting requests held; when full, new ones are rejected overloaded.",
            ),
            (
                "default_slo_ms",
                "Latency budget for requests that do not set slo_ms, in ms.",
            ),
        ],
    ),
    (
        "metrics",
        "Prometheus text metrics over HTTP.",
        &[("listen", "Listen address, ip:port.")],
    ),
    (
        "log",
        "Logging.",
        &[
            (
                "level",
                "Filter in tracing EnvFilter syntax, e.g. \"info\" or \"baton=debug,info\".",
            ),
            ("json", "Emit JSON lines instead of human-readable text."),
        ],
    ),
];

/// Where a setting came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingOrigin {
    /// A settings file.
    File(PathBuf),
    /// An environment variable (its name as Baton expects it, upper case).
    Env(String),
}

impl fmt::Display for SettingOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingOrigin::File(p) => write!(f, "from file {}", p.display()),
            SettingOrigin::Env(v) => write!(f, "from environment variable {v}"),
        }
    }
}

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The settings file given does not exist.
    #[error("settings file {} does not exist", path.display())]
    MissingFile {
        /// The path given.
        path: PathBuf,
    },

    /// The settings file exists but is not valid TOML (or cannot be read).
    #[error("cannot read settings file {}: {message}", path.display())]
    File {
        /// The path given.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// A key names no setting.
    #[error("unknown setting `{key}` ({origin}); {hint}")]
    UnknownKey {
        /// The dotted key, e.g. `scheduler.delta_ctl_us`.
        key: String,
        /// Where it was set.
        origin: SettingOrigin,
        /// The keys that do exist there.
        hint: String,
    },

    /// A key exists but its value has the wrong type or is not one of the accepted values.
    #[error("invalid value for setting `{key}` ({origin}): {message}")]
    InvalidValue {
        /// The dotted key.
        key: String,
        /// Where it was set.
        origin: SettingOrigin,
        /// What is wrong and what is accepted.
        message: String,
    },

    /// The values are individually fine but break a rule (checked after loading).
    #[error("invalid setting `{key}`: {message}")]
    Rule {
        /// The dotted key at fault.
        key: &'static str,
        /// The rule and the offending value.
        message: String,
    },

    /// Any other failure from the `config` crate.
    #[error("cannot load settings: {0}")]
    Other(String),
}

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

    /// Checks rules that span values or that types cannot express.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let rule = |key, message: String| Err(SettingsError::Rule { key, message });
        let s = &self.scheduler;
        if s.rate_bucket_ms == 0 {
            return rule("scheduler.rate_bucket_ms", "must be greater than 0".into());
        }
        if s.rate_window_ms == 0 || !s.rate_window_ms.is_multiple_of(s.rate_bucket_ms) {
            return rule(
                "scheduler.rate_window_ms",
                format!(
                    "{} must be a positive multiple of scheduler.rate_bucket_ms ({})",
                    s.rate_window_ms, s.rate_bucket_ms
                ),
            );
        }
        if !(0.0..=1.0).contains(&s.profile_ewma) {
            return rule(
                "scheduler.profile_ewma",
                format!("{} must be between 0 (off) and 1", s.profile_ewma),
            );
        }
        let g = &self.gateway;
        if !(g.default_slo_ms.is_finite() && g.default_slo_ms > 0.0) {
            return rule(
                "gateway.default_slo_ms",
                format!("{} must be a positive number of milliseconds", g.default_slo_ms),
            );
        }
        if g.max_payload_bytes == 0 {
            return rule("gateway.max_payload_bytes", "must be greater than 0".into());
        }
        if g.held_bytes_budget < g.max_payload_bytes {
            return rule(
                "gateway.held_bytes_budget",
                format!(
                    "{} is smaller than gateway.max_payload_bytes ({}), so a maximal request \
                     could never be held",
                    g.held_bytes_budget, g.max_payload_bytes
                ),
            );
        }
        self.nats.validate()?;
        if self.metrics.listen.parse::<SocketAddr>().is_err() {
            return rule(
                "metrics.listen",
                format!(
                    "`{}` is not an ip:port socket address, e.g. \"0.0.0.0:9090\"",
                    self.metrics.listen
                ),
            );
        }
        Ok(())
    }

    /// The whole settings tree as TOML with every key at its default, each with a comment.
    pub fn documented_defaults() -> String {
        let defaults = toml::Value::try_from(Settings::default()).expect("default settings serialize to TOML");
        let mut out = String::from(
            "# Baton settings. Every key is optional; the values shown are the defaults.\n\
             # Override any key with an environment variable BATON_<SECTION>__<KEY>,\n\
             # e.g. BATON_SCHEDULER__DELTA_CTRL_US=150.\n",
        );
        for (section, section_doc, keys) in SECTIONS {
            out.push_str(&format!("\n# {}\n[{section}]\n", section_doc.replace('\n', "\n# ")));
            for (key, doc) in keys.iter() {
                let value = &defaults[section][key];
                out.push_str(&format!("# {doc}\n{key} = {value}\n"));
            }
        }
        out
    }
}

/// One leaf value found in a source, kept to pinpoint bad values.
struct Leaf {
    key: String,
    origin: SettingOrigin,
    value: Value,
}

fn known_keys(section: &str) -> Option<Vec<&'static str>> {
    SECTIONS
        .iter()
        .find(|(s, _, _)| *s == section)
        .map(|(_, _, keys)| keys.iter().map(|(k, _)| *k).collect())
}

fn sections_hint() -> String {
    let names: Vec<&str> = SECTIONS.iter().map(|(s, _, _)| *s).collect();
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

fn env_var_name(dotted: &str) -> String {
    format!("{ENV_PREFIX}_{}", dotted.replace('.', "__").to_ascii_uppercase())
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
    let accepted: Option<Vec<&str>> = match key {
        "scheduler.drop_policy" => Some(DropPolicy::ALL.iter().map(|v| v.as_str()).collect()),
        "scheduler.condition" => Some(Condition::ALL.iter().map(|v| v.as_str()).collect()),
        "scheduler.gpu_choice" => Some(GpuChoice::ALL.iter().map(|v| v.as_str()).collect()),
        _ => None,
    };
    if let Some(accepted) = accepted {
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
    use super::*;
    use std::sync::Mutex;

    /// Serializes the tests that touch the process environment.
    static ENV_LOCK: Mutex<()> = Mutex::new(());

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

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
        let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let var = "BATON_SCHEDULER__DELTA_RESP_US";
        std::env::set_var(var, "4321");
        let result = Settings::load(None);
        std::env::remove_var(var);
        assert_eq!(result.unwrap().scheduler.delta_resp_us, 4321);
    }

    #[test]
    fn real_process_environment_unknown_key_is_rejected() {
        let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let var = "BATON_SCHEDULER__BOGUS";
        std::env::set_var(var, "1");
        let result = Settings::load(None);
        std::env::remove_var(var);
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
                 epsilon_us, drop_policy, condition, gpu_choice, rate_bucket_ms, rate_window_ms, worker_dead_after_ms, profile_ewma"
            ),
            "{msg}"
        );

        let path = write(&dir, "y.toml", "[schedular]\ndelta_ctrl_us = 3\n");
        let msg = Settings::load_with_env(Some(&path), no_env()).unwrap_err().to_string();
        assert!(msg.contains("unknown setting `schedular.delta_ctrl_us`"), "{msg}");
        assert!(
            msg.contains("known sections: nats, scheduler, gateway, metrics, log"),
            "{msg}"
        );

        let path = write(&dir, "z.toml", "scheduler = 5\n");
        let msg = Settings::load_with_env(Some(&path), no_env()).unwrap_err().to_string();
        assert!(msg.contains("write it as a [scheduler] table"), "{msg}");
    }

    #[test]
    fn unknown_env_keys_are_named() {
        let err = Settings::load_with_env(None, [("BATON_SCHEDULER__BOGUS", "1")]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown setting `scheduler.bogus`"), "{msg}");
        assert!(msg.contains("BATON_SCHEDULER__BOGUS"), "{msg}");

        // A single underscore is a common slip: it makes one unknown section.
        let msg = Settings::load_with_env(None, [("BATON_SCHEDULER_DELTA_CTRL_US", "1")])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("unknown setting `scheduler_delta_ctrl_us`"), "{msg}");
        assert!(msg.contains("known sections:"), "{msg}");

        let msg = Settings::load_with_env(None, [("BATON_SCHEDULER", "1")])
            .unwrap_err()
            .to_string();
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
        let msg = Settings::load_with_env(Some(&path), no_env()).unwrap_err().to_string();
        assert!(msg.contains("`scheduler.condition`"), "{msg}");
        assert!(msg.contains("v.toml"), "{msg}");
        assert!(msg.contains("deferred") && msg.contains("eager"), "{msg}");

        let path = write(&dir, "w.toml", "[scheduler]\ndelta_ctrl_us = \"fast\"\n");
        let msg = Settings::load_with_env(Some(&path), no_env()).unwrap_err().to_string();
        assert!(msg.contains("`scheduler.delta_ctrl_us`"), "{msg}");

        for bad in ["yes", "1", "on"] {
            let msg = Settings::load_with_env(None, [("BATON_LOG__JSON", bad)])
                .unwrap_err()
                .to_string();
            assert!(msg.contains("`log.json`"), "{msg}");
            assert!(msg.contains("accepted values: true, false"), "{msg}");
        }
        let path = write(&dir, "j.toml", "[log]\njson = 3\n");
        let msg = Settings::load_with_env(Some(&path), no_env()).unwrap_err().to_string();
        assert!(msg.contains("`log.json`"), "{msg}");

        let msg = Settings::load_with_env(None, [("BATON_SCHEDULER__EPSILON_US", "-5")])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("`scheduler.epsilon_us`"), "{msg}");
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

    #[test]
    fn documented_defaults_cover_every_key_and_parse_back() {
        let text = Settings::documented_defaults();
        let parsed: Settings = toml::from_str(&text).unwrap();
        assert_eq!(parsed, Settings::default());

        // The documentation table lists exactly the struct fields.
        let defaults = toml::Value::try_from(Settings::default()).unwrap();
        let table = defaults.as_table().unwrap();
        let mut documented: Vec<String> = Vec::new();
        for (section, _, keys) in SECTIONS {
            for (key, _) in keys.iter() {
                documented.push(format!("{section}.{key}"));
            }
        }
        let mut actual: Vec<String> = Vec::new();
        for (section, keys) in table {
            for key in keys.as_table().unwrap().keys() {
                actual.push(format!("{section}.{key}"));
            }
        }
        documented.sort();
        actual.sort();
        assert_eq!(documented, actual);

        // And the file is accepted by the loader itself.
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "defaults.toml", &text);
        assert_eq!(
            Settings::load_with_env(Some(&path), no_env()).unwrap(),
            Settings::default()
        );
        assert!(text.contains("drop_policy = \"window_drop\""), "{text}");
    }

    #[test]
    fn nats_credentials_and_tls_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let ca = write(&dir, "ca.pem", "-");
        let cert = write(&dir, "client.pem", "-");
        let key = write(&dir, "client-key.pem", "-");
        let s = Settings::load_with_env(
            None,
            [
                ("BATON_NATS__URL", "tls://nats:4222"),
                ("BATON_NATS__USER", "worker"),
                ("BATON_NATS__PASSWORD", "0123"),
                ("BATON_NATS__CA_FILE", ca.to_str().unwrap()),
                ("BATON_NATS__CERT_FILE", cert.to_str().unwrap()),
                ("BATON_NATS__KEY_FILE", key.to_str().unwrap()),
                ("BATON_NATS__REQUIRE_TLS", "true"),
            ],
        )
        .unwrap();
        assert_eq!(s.nats.user, "worker");
        // Taken verbatim, not parsed as the number 123.
        assert_eq!(s.nats.password.expose(), "0123");
        assert_eq!(s.nats.ca_file, ca.to_str().unwrap());
        assert!(s.nats.require_tls);
        for (var, value) in [("BATON_NATS__TOKEN", "1e3"), ("BATON_NATS__TOKEN", "true")] {
            let s = Settings::load_with_env(None, [(var, value)]).unwrap();
            assert_eq!(s.nats.token.expose(), value);
        }
        let path = write(&dir, "n.toml", "[nats]\nuser = \"client\"\npassword = \"s3cret\"\n");
        let s = Settings::load_with_env(Some(&path), no_env()).unwrap();
        assert_eq!((s.nats.user.as_str(), s.nats.password.expose()), ("client", "s3cret"));
        // Settings can be logged: secrets do not show.
        let debug = format!("{s:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("password: \"<redacted>\""), "{debug}");
        assert!(debug.contains("token: \"\""), "{debug}");
    }

    #[test]
    fn bad_nats_credential_combinations_name_the_key_and_the_fix() {
        let seed = format!("SU{}", "A".repeat(56));
        /// Environment, the key at fault, and part of the message.
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (
                &[("BATON_NATS__PASSWORD", "x")],
                "nats.password",
                "is set but nats.user is empty: set both (BATON_NATS__USER and BATON_NATS__PASSWORD) or neither",
            ),
            (
                &[("BATON_NATS__USER", "x")],
                "nats.user",
                "`x` is set but nats.password is empty",
            ),
            (
                &[
                    ("BATON_NATS__USER", "u"),
                    ("BATON_NATS__PASSWORD", "p"),
                    ("BATON_NATS__TOKEN", "t"),
                ],
                "nats.token",
                "only one way to authenticate may be set, but user/password and token are: keep one and clear \
                 the others",
            ),
            (
                &[("BATON_NATS__TOKEN", "t"), ("BATON_NATS__NKEY_SEED", seed.as_str())],
                "nats.nkey_seed",
                "but token and nkey_seed are",
            ),
            (
                &[("BATON_NATS__NKEY_SEED", "SAxyz")],
                "nats.nkey_seed",
                "is not a user nkey seed (58 characters starting with `SU`)",
            ),
            (
                &[("BATON_NATS__CREDS_FILE", "/nonexistent/baton.creds")],
                "nats.creds_file",
                "file `/nonexistent/baton.creds` does not exist (or is not a file); fix the path or clear \
                 BATON_NATS__CREDS_FILE",
            ),
            (
                &[("BATON_NATS__CA_FILE", "/nonexistent/ca.pem")],
                "nats.ca_file",
                "does not exist",
            ),
            (
                &[("BATON_NATS__CERT_FILE", "/nonexistent/c.pem")],
                "nats.cert_file",
                "is set but nats.key_file is empty: a client certificate needs its private key (set both)",
            ),
            (
                &[("BATON_NATS__KEY_FILE", "/k.pem")],
                "nats.key_file",
                "nats.cert_file is empty",
            ),
            (&[("BATON_NATS__URL", " ")], "nats.url", "must not be empty"),
        ];
        for (vars, key, message) in cases {
            let err = Settings::load_with_env(None, vars.iter().copied()).unwrap_err();
            assert!(
                matches!(&err, SettingsError::Rule { key: k, .. } if k == key),
                "{vars:?}: {err}"
            );
            let text = err.to_string();
            assert!(text.starts_with(&format!("invalid setting `{key}`: ")), "{text}");
            assert!(text.contains(message), "{vars:?}: {text}\nexpected: {message}");
        }
        // A well-formed seed alone is fine (the server judges whether it is known).
        let s = Settings::load_with_env(None, [("BATON_NATS__NKEY_SEED", seed.as_str())]).unwrap();
        assert_eq!(s.nats.nkey_seed.expose(), seed);
    }

    /// docs/settings.md shows `baton config`'s output; this keeps it current. After changing a
    /// setting, regenerate it with `BATON_UPDATE_DOCS=1 cargo test -p baton-common settings_doc`.
    #[test]
    fn settings_doc_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/settings.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let (start, end) = ("```toml\n", "```\n");
        let from = doc.find(start).expect("a ```toml block in docs/settings.md") + start.len();
        let to = from + doc[from..].find(end).expect("the end of the ```toml block");
        let current = Settings::documented_defaults();
        if doc[from..to] == current {
            return;
        }
        if std::env::var_os("BATON_UPDATE_DOCS").is_some() {
            std::fs::write(&path, format!("{}{current}{}", &doc[..from], &doc[to..])).unwrap();
            return;
        }
        panic!(
            "docs/settings.md does not show the current `baton config` output; regenerate it with \
             BATON_UPDATE_DOCS=1 cargo test -p baton-common settings_doc"
        );
    }

    #[test]
    fn enums_parse_from_cli_strings() {
        assert_eq!("window_drop".parse::<DropPolicy>().unwrap(), DropPolicy::WindowDrop);
        assert_eq!("Drop-Timeout".parse::<DropPolicy>().unwrap(), DropPolicy::DropTimeout);
        assert_eq!("eager".parse::<Condition>().unwrap(), Condition::Eager);
        assert_eq!("earliest".parse::<GpuChoice>().unwrap(), GpuChoice::Earliest);
        let err = "lifo".parse::<DropPolicy>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown drop policy `lifo`; expected one of: window_drop, drop_timeout, fcfs"
        );
        for &v in DropPolicy::ALL {
            assert_eq!(v.to_string().parse::<DropPolicy>().unwrap(), v);
        }
        for &v in Condition::ALL {
            assert_eq!(v.as_str().parse::<Condition>().unwrap(), v);
        }
        for &v in GpuChoice::ALL {
            assert_eq!(v.as_str().parse::<GpuChoice>().unwrap(), v);
        }
    }
}
