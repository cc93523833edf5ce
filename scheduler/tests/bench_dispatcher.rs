//! `baton bench dispatcher` end to end: the real dispatcher on a real nats-server, with 20
//! emulated workers and two emulated gateways, one short run. Every request sent must come
//! back shipped or rejected, once.

use std::process::Command;

#[test]
fn a_short_run_accounts_for_every_request() {
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "bench",
            "dispatcher",
            "--workers",
            "20",
            "--models",
            "4",
            "--rate",
            "5000",
            "--duration",
            "1",
            "--json",
        ])
        .output()
        .expect("run baton bench dispatcher");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "baton bench dispatcher failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().expect("one JSON line");
    let r: serde_json::Value = serde_json::from_str(line).expect("a JSON object");
    let n = |k: &str| r[k].as_u64().unwrap_or_else(|| panic!("`{k}` in {line}"));
    // A warm-up second and a measured one at 5,000 req/s.
    assert!((9_000..=11_000).contains(&n("sent")), "{line}");
    assert_eq!(n("unaccounted"), 0, "{line}");
    assert_eq!(n("shipped") + n("rejected"), n("sent"), "{line}");
    assert_eq!(n("duplicates") + n("unknown_orders") + n("stray_orders"), 0, "{line}");
    assert_eq!(n("revoked_batches"), 0, "{line}");
    assert_eq!((n("workers"), n("models"), n("gateways")), (20, 4, 2), "{line}");
    assert!(n("batches") > 0, "{line}");
    assert!(r["status_answered"].as_bool() == Some(true), "{line}");
}
