//! The simulator end to end: a workload whose outcome can be computed by
//! hand, reproducibility, and every request accounted for by every policy.

use baton_scheduler::sim::engine::{Jitter, SimOptions};
use baton_scheduler::sim::{run_named, POLICIES};
use baton_scheduler::workload::Workload;

fn shared(name: &str) -> Workload {
    let path = format!("{}/../workloads/{name}", env!("CARGO_MANIFEST_DIR"));
    Workload::load(std::path::Path::new(&path)).unwrap()
}

/// One model, l(b) = 1·b + 4 ms, SLO 50 ms, one request every 10 ms, one GPU.
const CONST_100: &str = "
seed: 1
gpus: 1
models:
- framework: sleep#1000,4000,0,0
  model: m
  slo: 50
  gap: const
  warmup: [{duration: 1, rps: 100}]
  bench: [{duration: 10, rps: 100}]
  cooldown: [{duration: 1, rps: 100}]
";

#[test]
fn const_arrivals_match_the_hand_computation() {
    let w = Workload::from_yaml_str(CONST_100).unwrap();
    let r = run_named(&w, "const", "symphony", &SimOptions::default()).unwrap();
    // Request at t (deadline t + 48 ms) waits for t+10, t+20, t+30: with 4
    // queued at t+30, finish(4) = t+30.3+8 ≤ t+48, and the batch can no
    // longer grow by a fifth (t_f = t+48−0.1−L(5)−0.05 = t+38.85 < t+40),
    // so it is sent at t+38.55, starts at t+38.85, ends at t+46.85.
    assert_eq!((r.requests, r.good, r.late, r.dropped), (1000, 1000, 0, 0));
    assert_eq!(r.mean_batch, 4.0);
    assert_eq!((r.p50_batch, r.p99_batch), (4, 4));
    assert_eq!(r.goodput_rps, 100.0);
    // Latencies 46.85, 36.85, 26.85, 16.85 ms, in equal numbers.
    assert_eq!(r.p50_latency_ms, 26.85);
    assert_eq!(r.p99_latency_ms, 46.85);
    assert_eq!(r.gpus_used, 1);
    // 25 batches a second of L(4) = 8 ms.
    assert!((r.gpu_busy_fraction - 0.2).abs() < 1e-3, "{}", r.gpu_busy_fraction);

    // Triton's default here: max_batch 20 (2·L(20) = 48 ms fits), a
    // 0.1 ms queue delay: each request goes alone, 0.1 ms after it came,
    // starts 0.15 ms later (plan and input delivery) and runs 5 ms.
    let t = run_named(&w, "const", "triton", &SimOptions::default()).unwrap();
    assert_eq!((t.good, t.mean_batch), (1000, 1.0));
    assert_eq!(t.p50_latency_ms, 5.25);
    assert!((t.gpu_busy_fraction - 0.5).abs() < 1e-3, "{}", t.gpu_busy_fraction);
}

#[test]
fn same_seed_same_results() {
    let w = shared("resnet-8gpu-gamma.yaml");
    let opts = SimOptions {
        seed: Some(3),
        jitter: Jitter::PRESET,
        ..SimOptions::default()
    };
    for p in ["symphony", "nexus"] {
        let mut a = run_named(&w, "gamma", p, &opts).unwrap();
        let mut b = run_named(&w, "gamma", p, &opts).unwrap();
        a.wall_seconds = 0.0;
        b.wall_seconds = 0.0;
        assert_eq!(a, b, "{p}");
    }
    let a = run_named(&w, "gamma", "symphony", &opts).unwrap();
    let c = run_named(
        &w,
        "gamma",
        "symphony",
        &SimOptions {
            seed: Some(4),
            ..opts.clone()
        },
    )
    .unwrap();
    assert_ne!(a.requests, c.requests);
}

#[test]
fn every_request_is_accounted_for_in_every_policy() {
    for (file, k) in [
        ("resnet-8gpu-poisson.yaml", 1.4),
        ("resnet-8gpu-gamma.yaml", 1.0),
        ("multi-model-64gpu.yaml", 1.2),
        ("symphony-example.yaml", 1.0),
    ] {
        let w = shared(file);
        for jitter in [Jitter::default(), Jitter::PRESET] {
            let opts = SimOptions {
                jitter,
                rate_multiplier: k,
                ..SimOptions::default()
            };
            for p in POLICIES {
                let r = run_named(&w, file, p, &opts).unwrap();
                let what = format!("{p} on {file} ×{k} {jitter:?}: {r:?}");
                assert!(r.requests > 0, "{what}");
                assert_eq!(r.unanswered, 0, "{what}");
                assert_eq!(r.duplicates, 0, "{what}");
                assert_eq!(r.good + r.late + r.dropped, r.requests, "{what}");
                assert!(r.bad_rate >= 0.0 && r.bad_rate <= 1.0, "{what}");
            }
        }
    }
}

#[test]
fn unknown_policy_names_the_known_ones() {
    let w = Workload::from_yaml_str(CONST_100).unwrap();
    let e = run_named(&w, "const", "clockwork", &SimOptions::default()).unwrap_err();
    assert!(e.to_string().contains("symphony, symphony-eager"), "{e}");
}

/// The profile says batches take half what they do. Without online
/// correction the deferred core plans every batch to finish late; with it,
/// the factor converges during warm-up and goodput recovers.
#[test]
fn a_profile_off_by_two_is_corrected_online() {
    let w = shared("resnet-8gpu-poisson.yaml");
    let wrong = |ewma: f64| SimOptions {
        profile_error: 0.5,
        config: baton_scheduler::core::CoreConfig {
            profile_ewma: ewma,
            ..baton_scheduler::core::CoreConfig::paper()
        },
        ..SimOptions::default()
    };
    let truth = run_named(&w, "poisson", "symphony", &SimOptions::default()).unwrap();
    let stale = run_named(&w, "poisson", "symphony", &wrong(0.0)).unwrap();
    let fixed = run_named(&w, "poisson", "symphony", &wrong(0.05)).unwrap();
    assert!(truth.bad_rate < 0.01, "{truth:?}");
    assert!(stale.bad_rate > 0.5, "uncorrected: {stale:?}");
    assert!(fixed.bad_rate < 0.01, "corrected: {fixed:?}");
    assert!(fixed.goodput_rps > 0.98 * truth.goodput_rps, "{fixed:?} vs {truth:?}");
}
