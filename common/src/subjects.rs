//! Every NATS subject Baton uses, in one place.
//!
//! Subjects are the API between processes; a typo in one is a silent message loss, not a compile
//! error. Keeping them all here means a reader sees the whole topology at once, clients and
//! servers cannot disagree on a spelling, and `docs/protocol.md` has one list to mirror — as does
//! `deploy/nats/nats.conf`, whose subject permissions must follow any change here.
//!
//! Layout:
//!
//! | subject | who publishes | who subscribes |
//! |---|---|---|
//! | `baton.infer.<model>` | clients (request/reply) | gateways, queue group `baton-gateway` |
//! | `baton.sched.arrivals` | gateways (request metadata, batched) | dispatcher |
//! | `baton.gateway.heartbeat` | gateways | dispatcher |
//! | `baton.gateway.<gw>.orders` | dispatcher (ship / reject orders) | that gateway |
//! | `baton.gateway.<gw>.results` | workers (answers for that gateway's requests) | that gateway |
//! | `baton.worker.hello` / `.heartbeat` / `.goodbye` | workers | registry |
//! | `baton.worker.<id>.plan` | dispatcher | that worker |
//! | `baton.worker.<id>.input` | gateways holding the payloads | that worker |
//! | `baton.worker.<id>.rehello` | registry | that worker |
//! | `baton.worker.<id>.revoke` | dispatcher | that worker |
//! | `baton.sched.batch_done` | workers | dispatcher |
//! | `baton.ops.status` | operators (request/reply) | scheduler |
//! | `baton.ops.gateway_status` | operators (request/reply; every gateway answers) | gateways |

/// Prefix of the per-model inference subjects.
pub const INFER_PREFIX: &str = "baton.infer";

/// Wildcard the gateways subscribe to: every model's inference subject.
pub const INFER_WILDCARD: &str = "baton.infer.>";

/// Queue group of the gateways, so each request is handled by exactly one gateway.
pub const GATEWAY_QUEUE_GROUP: &str = "baton-gateway";

/// A worker announces itself (devices, hardware class, loaded models).
pub const WORKER_HELLO: &str = "baton.worker.hello";

/// A worker's periodic liveness and state report.
pub const WORKER_HEARTBEAT: &str = "baton.worker.heartbeat";

/// A worker leaves cleanly (after draining).
pub const WORKER_GOODBYE: &str = "baton.worker.goodbye";

/// Workers report a finished batch (actual start and finish) to the dispatcher.
pub const BATCH_DONE: &str = "baton.sched.batch_done";

/// Gateways send request metadata, batched, to the dispatcher.
pub const ARRIVALS: &str = "baton.sched.arrivals";

/// A gateway's periodic liveness and load report.
pub const GATEWAY_HEARTBEAT: &str = "baton.gateway.heartbeat";

/// Every gateway answers a request here with its JSON status (held requests and bytes,
/// duplicates dropped); `baton status` collects the answers.
pub const OPS_GATEWAY_STATUS: &str = "baton.ops.gateway_status";

/// Request/reply endpoint for a JSON status snapshot.
pub const OPS_STATUS: &str = "baton.ops.status";

/// The subject clients send requests for `model` to: `baton.infer.<model>`.
///
/// `model` should satisfy [`validate_token`]; a model name containing `.` would span several
/// subject tokens and not be recognised by [`model_from_infer_subject`].
pub fn infer(model: &str) -> String {
    format!("{INFER_PREFIX}.{model}")
}

/// The subject a worker receives batch plans on: `baton.worker.<id>.plan`.
pub fn worker_plans(worker_id: impl std::fmt::Display) -> String {
    format!("baton.worker.{worker_id}.plan")
}

/// The subject a worker receives request inputs on: `baton.worker.<id>.input`.
pub fn worker_inputs(worker_id: impl std::fmt::Display) -> String {
    format!("baton.worker.{worker_id}.input")
}

/// Where the registry asks a worker it does not know (e.g. after a scheduler
/// restart) to announce itself again: `baton.worker.<id>.rehello`.
pub fn worker_rehello(worker_id: impl std::fmt::Display) -> String {
    format!("baton.worker.{worker_id}.rehello")
}

/// Where the scheduler withdraws batches it has answered itself (their worker was declared
/// dead): `baton.worker.<id>.revoke`. Published on the connection that published the plans, so
/// a worker subscribed to [`worker_all`] receives a revoke after the plans it names.
pub fn worker_revoke(worker_id: impl std::fmt::Display) -> String {
    format!("baton.worker.{worker_id}.revoke")
}

/// Everything addressed to one worker: `baton.worker.<id>.>`.
pub fn worker_all(worker_id: impl std::fmt::Display) -> String {
    format!("baton.worker.{worker_id}.>")
}

/// Where the dispatcher sends one gateway its ship and reject orders: `baton.gateway.<gw>.orders`.
pub fn gateway_orders(gateway: impl std::fmt::Display) -> String {
    format!("baton.gateway.{gateway}.orders")
}

/// Where workers send one gateway the answers for its requests: `baton.gateway.<gw>.results`.
pub fn gateway_results(gateway: impl std::fmt::Display) -> String {
    format!("baton.gateway.{gateway}.results")
}

/// Everything addressed to one gateway: `baton.gateway.<gw>.>`.
pub fn gateway_all(gateway: impl std::fmt::Display) -> String {
    format!("baton.gateway.{gateway}.>")
}

/// The model named by an inference subject, or `None` if the subject is not
/// `baton.infer.<model>` with `<model>` a single valid token.
pub fn model_from_infer_subject(subject: &str) -> Option<&str> {
    let model = subject.strip_prefix(INFER_PREFIX)?.strip_prefix('.')?;
    validate_token(model).ok()?;
    Some(model)
}

/// Checks that `token` can be used as one NATS subject token (a model name, a worker id):
/// non-empty, no whitespace, and none of `.`, `*`, `>`.
pub fn validate_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("a NATS subject token must not be empty".to_string());
    }
    if let Some(c) = token
        .chars()
        .find(|&c| c.is_whitespace() || matches!(c, '.' | '*' | '>'))
    {
        return Err(format!(
            "`{token}` cannot be a NATS subject token: it contains {c:?}; \
             tokens must be non-empty and free of whitespace, '.', '*' and '>'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_builders() {
        assert_eq!(infer("resnet50"), "baton.infer.resnet50");
        assert_eq!(worker_plans("w1"), "baton.worker.w1.plan");
        assert_eq!(worker_inputs("w1"), "baton.worker.w1.input");
        assert_eq!(worker_revoke("w1"), "baton.worker.w1.revoke");
        assert_eq!(worker_all("w1"), "baton.worker.w1.>");
        assert_eq!(gateway_orders("g1"), "baton.gateway.g1.orders");
        assert_eq!(gateway_results("g1"), "baton.gateway.g1.results");
        assert_eq!(gateway_all("g1"), "baton.gateway.g1.>");
        let id = uuid::Uuid::nil();
        assert_eq!(
            worker_plans(id),
            "baton.worker.00000000-0000-0000-0000-000000000000.plan"
        );
        assert!(INFER_WILDCARD.starts_with(INFER_PREFIX));
    }

    #[test]
    fn model_round_trips_through_its_subject() {
        for m in ["resnet50", "bert-base_v2", "模型"] {
            assert_eq!(model_from_infer_subject(&infer(m)), Some(m));
        }
    }

    #[test]
    fn non_infer_subjects_have_no_model() {
        for s in [
            "baton.infer",
            "baton.infer.",
            "baton.infer.a.b",
            "baton.infer.>",
            "baton.infer.*",
            "baton.inferx.m",
            "baton.worker.hello",
            "",
        ] {
            assert_eq!(model_from_infer_subject(s), None, "{s}");
        }
    }

    #[test]
    fn token_rules() {
        assert!(validate_token("resnet50").is_ok());
        assert!(validate_token("a-b_c:1").is_ok());
        assert!(validate_token("").unwrap_err().contains("empty"));
        for bad in ["a.b", "a*", ">", "a b", "a\tb", "a\n"] {
            let err = validate_token(bad).unwrap_err();
            assert!(err.contains("cannot be a NATS subject token"), "{bad}: {err}");
        }
    }
}
