//! `[log]`: what is logged and in which format.

use super::section::settings_section;

settings_section! {
    /// Logging.
    [log] pub struct LogSettings {
        /// Log filter in `tracing` `EnvFilter` syntax, e.g. `"info"` or `"baton=debug,info"`.
        pub level: String = "info",
        /// Emit JSON lines instead of human-readable text.
        pub json: bool = false,
    }
}
