//! Metrics, exposed as Prometheus text on `metrics.listen` (`/metrics`),
//! through the `metrics` facade and its Prometheus exporter. Names live
//! here, once.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Requests answered with a worker's result, by model (label `outcome="answered"`, counted by
/// the gateway as it forwards the answers); rejections are counted in [`REJECTED`].
pub const REQUESTS: &str = "baton_requests_total";
/// Rejections by model and reason.
pub const REJECTED: &str = "baton_rejected_total";
/// Requests waiting in the dispatcher, by model, refreshed every second.
pub const QUEUE_DEPTH: &str = "baton_queue_depth";
/// Time from arrival to the plan being sent, seconds, by model.
pub const QUEUE_TIME: &str = "baton_queue_time_seconds";
/// Dispatched batch sizes, by model.
pub const BATCH_SIZE: &str = "baton_batch_size";
/// Batches dispatched, by model.
pub const BATCHES: &str = "baton_batches_total";
/// How late the dispatcher's timers fire, seconds.
pub const DISPATCHER_LAG: &str = "baton_dispatcher_lag_seconds";
/// From sending a plan to its batch starting, seconds (batches whose GPU was idle).
pub const PLAN_TO_START: &str = "baton_plan_to_start_seconds";
/// Registered workers by state.
pub const WORKERS: &str = "baton_workers";
/// Batches in flight per worker (0 or more), refreshed every second.
pub const WORKER_BATCHES: &str = "baton_worker_inflight_batches";
/// Execution time of each finished batch, seconds, per worker (as the worker measured it). Its
/// `_sum` is the worker's busy time: `rate(baton_worker_exec_seconds_sum[1m])` is its occupancy
/// (0 to 1), and the sum of those rates over the fleet is the number of devices' worth of work.
pub const WORKER_EXEC: &str = "baton_worker_exec_seconds";
/// Bytes a gateway holds (bodies plus the per-request overhead), by gateway.
pub const HELD_BYTES: &str = "baton_gateway_held_bytes";
/// Requests a gateway holds (received, not yet answered), by gateway.
pub const HELD_REQUESTS: &str = "baton_gateway_held_requests";
/// Answers a gateway dropped because their request had been answered already (first answer wins).
pub const DUPLICATES_DROPPED: &str = "baton_gateway_duplicates_dropped_total";
/// Requests per `Arrivals` message a gateway sends the dispatcher.
pub const ARRIVALS_PER_MESSAGE: &str = "baton_gateway_arrivals_per_message";
/// Gateways the dispatcher declared dead (missed heartbeats).
pub const GATEWAYS_LOST: &str = "baton_gateways_lost_total";
/// NATS slow-consumer events (messages the NATS client dropped).
pub const SLOW_CONSUMER: &str = "baton_slow_consumer_total";
/// Requests the intake admitted or shed before decoding (label `verdict`).
pub const INTAKE: &str = "baton_intake_total";
/// The intake queue's bound set by the admission controller (requests).
pub const INTAKE_LIMIT: &str = "baton_intake_queue_limit";
/// The decode stage's measured throughput under load (req/s), as the admission controller sees it.
pub const INTAKE_THROUGHPUT: &str = "baton_intake_throughput_rps";
/// Workers declared dead (missed heartbeats).
pub const WORKERS_LOST: &str = "baton_workers_lost_total";

/// Installs the global recorder and serves `/metrics` on `listen`.
pub fn install(listen: &str) -> Result<()> {
    let addr: SocketAddr = listen
        .parse()
        .with_context(|| format!("metrics.listen `{listen}` is not an ip:port address"))?;
    let ms = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];
    let sizes = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Full(QUEUE_TIME.into()), &ms)?
        .set_buckets_for_metric(Matcher::Full(DISPATCHER_LAG.into()), &ms)?
        .set_buckets_for_metric(Matcher::Full(PLAN_TO_START.into()), &ms)?
        .set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), &sizes)?
        .set_buckets_for_metric(Matcher::Full(ARRIVALS_PER_MESSAGE.into()), &sizes)?
        .install()
        .with_context(|| format!("serving metrics on {addr} (is the port in use? set metrics.listen)"))?;
    Ok(())
}
