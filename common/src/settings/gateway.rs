//! `[gateway]`: how much a gateway takes in before it refuses requests.

use super::error::rule;
use super::section::settings_section;
use super::SettingsError;

settings_section! {
    /// Request intake limits.
    [gateway] pub struct GatewaySettings {
        /// Largest accepted request body, in bytes; larger ones are rejected `payload_too_large`.
        pub max_payload_bytes: u64 = 8 << 20,
        /// Total request bytes a gateway holds while requests wait; when it is full, new
        /// requests are rejected `overloaded`. At least `max_payload_bytes`.
        pub held_bytes_budget: u64 = 1 << 30,
        /// Latency budget (SLO) for requests that do not set `slo_ms`, in ms.
        pub default_slo_ms: f64 = 100.0,
        /// Bytes the held budget charges each request on top of its body: the bookkeeping a
        /// held request costs whatever its size, so that tiny requests cannot hold memory
        /// unboundedly.
        pub per_request_overhead_bytes: u64 = 512,
        /// The gateway sends the dispatcher the metadata of this many arrivals in one message
        /// at most.
        pub arrival_batch: u64 = 256,
        /// …and sends what it has at the latest this long after the first of them arrived,
        /// in µs (the most the batching adds to a request's latency).
        pub arrival_flush_us: u64 = 100,
        /// Every this many ms the gateway tells the dispatcher it is alive (with its load).
        pub heartbeat_ms: u64 = 250,
        /// A held request still unanswered this long after its deadline is answered by the
        /// gateway itself (`worker_lost`) and forgotten, in ms: the last resort if a plan, the
        /// inputs, the results or the dispatcher were lost.
        pub orphan_after_ms: u64 = 2000,
    }
}

impl GatewaySettings {
    /// Checks that the limits are positive and that a largest request fits in the budget.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if !(self.default_slo_ms.is_finite() && self.default_slo_ms > 0.0) {
            return rule(
                "gateway.default_slo_ms",
                format!("{} must be a positive number of milliseconds", self.default_slo_ms),
            );
        }
        if self.arrival_batch == 0 {
            return rule("gateway.arrival_batch", "must be at least 1".into());
        }
        if self.heartbeat_ms == 0 {
            return rule("gateway.heartbeat_ms", "must be greater than 0".into());
        }
        if self.max_payload_bytes == 0 {
            return rule("gateway.max_payload_bytes", "must be greater than 0".into());
        }
        if self.held_bytes_budget < self.max_payload_bytes {
            return rule(
                "gateway.held_bytes_budget",
                format!(
                    "{} is smaller than gateway.max_payload_bytes ({}), so a maximal request \
                     could never be held",
                    self.held_bytes_budget, self.max_payload_bytes
                ),
            );
        }
        Ok(())
    }
}
