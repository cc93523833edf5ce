//! The operator-facing files in `deploy/` and `docs/operations.md` say true things: every
//! manifest parses, the Kubernetes copy of the NATS configuration is the real one, the compose
//! file and the Kubernetes manifests give nats-server every password it reads, and every Baton
//! metric they name is one the scheduler or a gateway exports.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use baton_scheduler::runtime::telemetry;
use serde::Deserialize;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.yaml`/`.yml` file under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(yaml_files(&path));
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The YAML documents of one file (a file may hold several, separated by `---`).
fn documents(path: &Path) -> Vec<yaml_serde::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    yaml_serde::Deserializer::from_str(&text)
        .map(|d| {
            yaml_serde::Value::deserialize(d).unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn kubernetes_manifests_parse_and_name_their_kind() {
    let files = yaml_files(&repo().join("deploy/k8s"));
    assert!(files.len() >= 8, "{files:?}");
    for file in files {
        for doc in documents(&file) {
            for key in ["apiVersion", "kind", "metadata"] {
                assert!(doc.get(key).is_some(), "{}: a document without {key}", file.display());
            }
        }
    }
}

#[test]
fn the_compose_file_parses_and_has_its_services() {
    let docs = documents(&repo().join("deploy/docker-compose.yml"));
    assert_eq!(docs.len(), 1);
    let services = docs[0].get("services").expect("services");
    for name in ["nats", "scheduler", "gateway", "worker", "client"] {
        assert!(services.get(name).is_some(), "no service {name}");
    }
}

#[test]
fn the_kubernetes_nats_config_is_deploy_nats_conf() {
    let conf = std::fs::read_to_string(repo().join("deploy/nats/nats.conf")).unwrap();
    let docs = documents(&repo().join("deploy/k8s/20-nats.yaml"));
    let map = docs
        .iter()
        .find(|d| d.get("kind").and_then(|k| k.as_str()) == Some("ConfigMap"))
        .expect("a ConfigMap in 20-nats.yaml");
    let copy = map["data"]["nats.conf"].as_str().expect("data.nats.conf");
    assert!(
        copy == conf,
        "deploy/k8s/20-nats.yaml's nats.conf differs from deploy/nats/nats.conf: copy it over \
         (indented by four spaces)"
    );
}

/// The `$NATS_…_PASSWORD` variables deploy/nats/nats.conf reads, sorted.
fn passwords_nats_conf_reads() -> BTreeSet<String> {
    let conf = std::fs::read_to_string(repo().join("deploy/nats/nats.conf")).unwrap();
    conf.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$')))
        .filter_map(|w| w.strip_prefix('$'))
        .filter(|w| w.starts_with("NATS_") && w.ends_with("_PASSWORD"))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_nats_server_gets_every_password_its_config_reads() {
    let wanted = passwords_nats_conf_reads();
    assert_eq!(
        wanted.iter().map(String::as_str).collect::<Vec<_>>(),
        [
            "NATS_CLIENT_PASSWORD",
            "NATS_GATEWAY_PASSWORD",
            "NATS_SCHEDULER_PASSWORD",
            "NATS_WORKER_PASSWORD"
        ]
    );
    // Compose: the nats service's environment.
    let compose = &documents(&repo().join("deploy/docker-compose.yml"))[0];
    let env = compose["services"]["nats"]["environment"]
        .as_mapping()
        .expect("services.nats.environment is a map");
    let given: BTreeSet<String> = env.keys().filter_map(|k| k.as_str().map(str::to_string)).collect();
    assert!(
        wanted.is_subset(&given),
        "docker-compose.yml's nats service lacks {:?}",
        wanted.difference(&given).collect::<Vec<_>>()
    );
    // Kubernetes: the NATS container's environment, each from a key of the baton-nats Secret.
    let secret_keys: BTreeSet<String> = documents(&repo().join("deploy/k8s/10-secrets.yaml"))[0]["stringData"]
        .as_mapping()
        .expect("stringData")
        .keys()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    let nats = documents(&repo().join("deploy/k8s/20-nats.yaml"))
        .into_iter()
        .find(|d| d.get("kind").and_then(|k| k.as_str()) == Some("Deployment"))
        .expect("a Deployment in 20-nats.yaml");
    let env = nats["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_sequence()
        .expect("the nats container's env");
    let mut given = BTreeSet::new();
    for var in env {
        let name = var["name"].as_str().expect("env name").to_string();
        let key = var["valueFrom"]["secretKeyRef"]["key"]
            .as_str()
            .expect("a secretKeyRef");
        assert!(
            secret_keys.contains(key),
            "20-nats.yaml reads `{key}`, which 10-secrets.yaml lacks"
        );
        given.insert(name);
    }
    assert_eq!(given, wanted, "20-nats.yaml's NATS environment");
}

/// Words that look like Baton metric names (`baton_…`) in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("baton_") {
        let preceded_by_word = rest[..i]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        if !preceded_by_word {
            names.insert(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_metric_the_operator_docs_name_is_exported() {
    let exported = [
        telemetry::REQUESTS,
        telemetry::REJECTED,
        telemetry::QUEUE_DEPTH,
        telemetry::QUEUE_TIME,
        telemetry::BATCH_SIZE,
        telemetry::BATCHES,
        telemetry::DISPATCHER_LAG,
        telemetry::PLAN_TO_START,
        telemetry::WORKERS,
        telemetry::WORKER_BATCHES,
        telemetry::WORKER_EXEC,
        telemetry::HELD_BYTES,
        telemetry::HELD_REQUESTS,
        telemetry::DUPLICATES_DROPPED,
        telemetry::ARRIVALS_PER_MESSAGE,
        telemetry::GATEWAYS_LOST,
        telemetry::SLOW_CONSUMER,
        telemetry::WORKERS_LOST,
    ];
    let known = |name: &str| {
        exported.iter().any(|m| {
            name == *m
                || ["_sum", "_count", "_bucket"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(m))
        })
    };
    let mut files = yaml_files(&repo().join("deploy/k8s"));
    files.push(repo().join("docs/operations.md"));
    let mut seen = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for name in metric_names(&text) {
            // Settings keys and the like are not metrics.
            if name == "baton_" || name.starts_with("baton_gpu_busy") {
                continue;
            }
            assert!(
                known(&name),
                "{} names `{name}`, which Baton does not export",
                file.display()
            );
            seen.insert(name);
        }
    }
    // The operations guide explains every metric.
    let guide = std::fs::read_to_string(repo().join("docs/operations.md")).unwrap();
    for m in exported {
        assert!(guide.contains(m), "docs/operations.md does not explain {m}");
    }
    assert!(seen.contains(telemetry::QUEUE_DEPTH));
}
