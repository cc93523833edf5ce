//! [`SettingsError`]: why settings could not be loaded, naming the key and where it was set.

use std::fmt;
use std::path::PathBuf;

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

/// A broken rule as the `Err` a section's `validate` returns.
pub(super) fn rule(key: &'static str, message: String) -> Result<(), SettingsError> {
    Err(SettingsError::Rule { key, message })
}
