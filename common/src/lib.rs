//! Baton's shared vocabulary: everything that crosses a process boundary or is read by more than
//! one crate is defined here, once.
//!
//! - [`wire`] — the client protocol (MessagePack `InferRequest` / `InferReply`), specified for
//!   other languages in `docs/protocol.md`.
//! - [`control`] — the control protocol between the scheduler and its workers.
//! - [`ids`] — the ids of workers, batches and requests as they cross process boundaries.
//! - [`subjects`] — every NATS subject name.
//! - [`profile`] — the latency profile shared by scheduler, simulator, planner, worker and profiler.
//! - [`nats`] — connecting to NATS with the `[nats]` settings' credentials and TLS.
//! - [`settings`] — the settings tree (defaults, TOML file, `BATON_*` environment) and the
//!   scheduling policy enums.
//!
//! The crate does no I/O beyond reading and writing the files it is asked to, and has no async
//! runtime, so every other crate — including the sans-IO scheduling core — can depend on it.

pub mod client;
pub mod control;
pub mod ids;
pub mod nats;
pub mod profile;
pub mod settings;
pub mod subjects;
/// Test helpers (a real nats-server, the workspace's binaries), compiled only with the
/// `testing` feature, which the crates' dev-dependencies turn on.
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
pub mod wire;

pub use ids::{BatchUuid, ClientRequestId, WorkerName};
pub use profile::{BatchLatency, Profile, ProfileError, DEFAULT_SPEC_MAX_BATCH};
pub use settings::{
    Condition, DropPolicy, GatewaySettings, GpuChoice, LogSettings, MetricsSettings, NatsSettings, ParseEnumError,
    SchedulerSettings, Secret, SettingOrigin, Settings, SettingsError,
};
pub use wire::{decode, encode, DType, InferReply, InferRequest, RejectReason, Status, Tensor, Timings, WireError};
