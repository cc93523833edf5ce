//! The ids that cross process boundaries: a worker's name, a dispatched batch's id and a
//! client's request id.
//!
//! Each is a newtype, so that a request id cannot be passed where a batch id or a worker name is
//! expected, and each is `#[serde(transparent)]`: the wire carries exactly what it carried when
//! these were a bare `String` or `Uuid` (`control::tests::id_fields_encode_as_before` pins the
//! bytes). The scheduling core numbers workers, batches and requests with ids of its own, plain
//! counters private to one scheduler process; these are the names the other processes know them
//! by, and the dispatcher maps between the two.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Defines a string id with `Display`, `as_str` and conversions from and to `String`.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // `pad`, not `write_str`: tables align ids with `{:<16}`.
                f.pad(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                Self(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                Self(id.to_string())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl From<&$name> for String {
            fn from(id: &$name) -> Self {
                id.0.clone()
            }
        }
    };
}

string_id!(
    /// A worker's name: the id it says hello with (`baton-worker --id`, by default its host
    /// name), unique in a deployment and one NATS subject token (`baton.worker.<name>.plan`).
    /// A worker keeps its name across restarts; `WorkerHello::instance` tells the runs apart.
    WorkerName
);

string_id!(
    /// A gateway's name (`baton gateway --id`, by default `<host>-<pid>`), unique in a
    /// deployment and one NATS subject token (`baton.gateway.<name>.orders`).
    /// `GatewayBeat::instance` tells a restarted gateway from the one before.
    GatewayName
);

string_id!(
    /// A request's id as its client knows it: the id the client chose, or one the gateway
    /// assigned, echoed in the reply (`InferReply::id`).
    ClientRequestId
);

/// A dispatched batch, as the scheduler, the gateway and the worker name it in plans, inputs,
/// revokes and `BatchDone`. Random rather than counted: a restarted scheduler must not reuse
/// an id that a worker still remembers as closed or revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BatchUuid(Uuid);

impl BatchUuid {
    /// A fresh random (v4) id.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// A fixed id, for tests and examples.
    pub const fn from_u128(v: u128) -> Self {
        Self(Uuid::from_u128(v))
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for BatchUuid {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl fmt::Display for BatchUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_bare_id() {
        assert_eq!(WorkerName::new("w1").to_string(), "w1");
        assert_eq!(format!("[{:<4}]", WorkerName::new("w1")), "[w1  ]");
        assert_eq!(ClientRequestId::from("r7").to_string(), "r7");
        assert_eq!(
            BatchUuid::from_u128(7).to_string(),
            "00000000-0000-0000-0000-000000000007"
        );
    }
}
