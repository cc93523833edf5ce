//! Harness for Baton's container tests (`tests/containers.rs`): the whole system — NATS, the
//! scheduler, emulated workers and the loadgen — in containers built from `deploy/images/`, with
//! testcontainers, and the faults a deployment meets (killed workers, a paused or restarted NATS,
//! a worker cut off from the network, a restarted scheduler).
//!
//! - [`engine`]: finds the Docker engine and the images, or explains how to get them or skip;
//! - [`api_proxy`]: lets testcontainers' client talk to engines older than its API version;
//! - [`cluster`]: one deployment per test, and the faults;
//! - [`load`]: loadgen runs and their accounting (every request ends exactly once);
//! - [`replies`]: every reply in the deployment, counted per request (none answered twice).
//!
//! Run with `cargo test -p baton-integration-tests` after `make images`
//! (`deploy/images/build.sh`); `BATON_SKIP_DOCKER_TESTS=1` skips them where there is no Docker.

pub mod api_proxy;
pub mod cluster;
pub mod engine;
pub mod load;
pub mod replies;

pub use cluster::{Cluster, ClusterOptions, Restart, FAST, MODEL};
pub use engine::{Engine, SKIP_ENV};
pub use load::{LoadSpec, LoadSummary};
