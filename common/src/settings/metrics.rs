//! `[metrics]`: where the Prometheus endpoint listens.

use std::net::SocketAddr;

use super::error::rule;
use super::section::settings_section;
use super::SettingsError;

settings_section! {
    /// Prometheus text metrics over HTTP.
    [metrics] pub struct MetricsSettings {
        /// Address the Prometheus text endpoint listens on (`ip:port`).
        pub listen: String = "127.0.0.1:9090",
    }
}

impl MetricsSettings {
    /// Checks that `listen` is a socket address.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.listen.parse::<SocketAddr>().is_err() {
            return rule(
                "metrics.listen",
                format!(
                    "`{}` is not an ip:port socket address, e.g. \"0.0.0.0:9090\"",
                    self.listen
                ),
            );
        }
        Ok(())
    }
}
