//! The scheduling policies a deployment chooses between (DESIGN.md §4): which requests are
//! dropped early, when a formed batch is sent, and which free GPU gets it.
//!
//! They are the core's concepts, so they live here; the settings tree (`baton-common`) names
//! them in files and environment variables through the optional `serde` feature, and the CLI
//! through [`FromStr`].

use std::fmt;
use std::str::FromStr;

/// Defines a policy enum with its settings/CLI names, `ALL`, `as_str`, `Display` and `FromStr`.
macro_rules! policy_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
        #[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
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

policy_enum! {
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

policy_enum! {
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

policy_enum! {
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

/// Why the core refused a request. The runtime maps it onto the wire's reason (which has more:
/// the reasons a gateway or worker gives); the simulator counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// The request cannot finish before its deadline, even in the best batch.
    DeadlineUnattainable,
    /// No worker serves the request's model.
    UnknownModel,
    /// The worker running the request was removed and there was no time to run it elsewhere.
    WorkerLost,
    /// Out of capacity: no GPU at all, or a baseline policy's queue limit.
    Overloaded,
}

impl RejectReason {
    /// The name used on the wire and in metrics, e.g. `"deadline_unattainable"`.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::DeadlineUnattainable => "deadline_unattainable",
            RejectReason::UnknownModel => "unknown_model",
            RejectReason::WorkerLost => "worker_lost",
            RejectReason::Overloaded => "overloaded",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
