//! Baton in containers: NATS, the scheduler, emulated workers and the loadgen, each in its own
//! container on a network of the test's own, and the faults a deployment meets. In every test
//! the loadgen ran to the end and its counts add up (a sanity check: the loadgen gives each request
//! one outcome by construction — ok, rejected with a reason, error or timeout — so what the tests
//! assert on is which outcomes and how many); that no request was answered twice is checked
//! independently, by the test's own subscriber counting replies on `_INBOX.>`.
//!
//! Needs a Docker engine and the images from `deploy/images/build.sh` (`make images`);
//! `BATON_SKIP_DOCKER_TESTS=1` skips them. The bounds are generous: two cores run everything.

use std::time::Duration;

use baton_integration_tests::{Cluster, ClusterOptions, LoadSpec, Restart, FAST};

/// Rejections a healthy deployment may give under load on a busy two-core machine.
const DEADLINE: &str = "deadline_unattainable";
const WORKER_LOST: &str = "worker_lost";

/// Two workers, registered. `spread` sends batches to the earliest-free worker rather than
/// packing them onto the first, so that both have work when one of them fails.
async fn two_workers(test: &str, spread: bool) -> Option<Cluster> {
    let mut options = ClusterOptions::default();
    if spread {
        options = options.setting("scheduler.gpu_choice", "earliest");
    }
    let mut c = Cluster::start(test, options).await?;
    c.add_worker("w0", FAST).await;
    c.add_worker("w1", FAST).await;
    c.wait_workers(&["w0", "w1"]).await;
    Some(c)
}

/// After a fault: the deployment serves as before.
async fn serves_normally(c: &Cluster) {
    let s = c.run_load(LoadSpec::new(200.0, 2.0)).await;
    s.assert_accounted();
    assert_eq!((s.errors, s.timeouts), (0, 0), "{s}");
    s.assert_rejections_only(&[DEADLINE]);
    s.assert_ok_at_least(0.97);
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_flow_end_to_end_through_containers() {
    let Some(c) = two_workers("end_to_end", false).await else {
        return;
    };
    let s = c.run_load(LoadSpec::new(200.0, 5.0)).await;
    s.assert_accounted();
    assert_eq!((s.errors, s.timeouts), (0, 0), "{s}");
    s.assert_rejections_only(&[DEADLINE]);
    s.assert_ok_at_least(0.97);
    c.assert_no_duplicate_replies();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_worker_loses_only_what_it_was_running() {
    let Some(c) = two_workers("killed_worker", true).await else {
        return;
    };
    let load = c.start_load(LoadSpec::new(300.0, 6.0)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.kill_worker("w0").await;
    let s = load.summary().await;
    s.assert_accounted();
    // Its requests were re-dispatched, or answered worker_lost when too little SLO remained;
    // the other worker served the rest.
    assert_eq!((s.errors, s.timeouts), (0, 0), "{s}");
    s.assert_rejections_only(&[WORKER_LOST, DEADLINE]);
    s.assert_ok_at_least(0.6);
    c.wait_worker_gone("w0").await;
    c.wait_workers(&["w1"]).await;
    serves_normally(&c).await;
    c.assert_no_duplicate_replies();
}

#[tokio::test(flavor = "multi_thread")]
async fn service_resumes_after_nats_is_paused_and_restarted() {
    let Some(c) = two_workers("nats_pause_restart", false).await else {
        return;
    };
    // Requests sent while NATS is frozen or down fail at the client (timeouts or errors); the
    // workers may be declared dead meanwhile and are taken back when their heartbeats return.
    let load = c.start_load(LoadSpec::new(100.0, 9.0)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.pause_nats().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.unpause_nats().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.restart_nats().await;
    let during = load.summary().await;
    during.assert_accounted();
    assert!(during.ok > 0, "{during}");

    c.wait_workers(&["w0", "w1"]).await;
    serves_normally(&c).await;
    c.assert_no_duplicate_replies();
}

/// While NATS is frozen, plans and heartbeats stop moving; the registry declares the workers
/// dead (750 ms) and the dispatcher has their in-flight requests answered `worker_lost` (or
/// re-planned), then revokes those batches (`baton.worker.<id>.revoke`). When NATS resumes, a
/// worker may still run a stale batch whose revoke came too late; its answers go to the gateway,
/// which is the only replier and drops answers to requests already answered (first answer
/// wins). Every reply on `_INBOX.>` is counted: none twice.
#[tokio::test(flavor = "multi_thread")]
async fn no_request_is_answered_twice_after_a_nats_stall() {
    let Some(c) = two_workers("nats_stall_duplicates", false).await else {
        return;
    };
    let load = c.start_load(LoadSpec::new(100.0, 5.0)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.pause_nats().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.unpause_nats().await;
    load.summary().await.assert_accounted();
    // How much the fence had to do (it depends on what the stall caught in flight).
    let count = |logs: &str, what: &str| logs.lines().filter(|l| l.contains(what)).count();
    let revokes = count(&c.scheduler_logs().await, "revoking the worker's outstanding batches");
    let (mut dropped, mut too_late) = (0, 0);
    for w in ["w0", "w1"] {
        let logs = c.worker_logs(w).await;
        dropped += count(&logs, "revoked batch dropped") + count(&logs, "plan of a revoked batch dropped");
        too_late += count(&logs, "revoked batch had already started");
    }
    eprintln!("fence: {revokes} revoke(s) sent, {dropped} batch(es) dropped unanswered, {too_late} too late");
    c.assert_no_duplicate_replies();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_cut_off_from_the_network_is_declared_dead_and_rejoins() {
    let Some(c) = two_workers("network_cut", true).await else {
        return;
    };
    let load = c.start_load(LoadSpec::new(300.0, 6.0)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.disconnect_worker("w0").await;
    // The registry declares it dead after scheduler.worker_dead_after_ms (750 ms by default).
    let gone = c.wait_worker_gone("w0").await;
    eprintln!("w0 declared dead {gone:?} after the disconnect");
    assert!(gone < Duration::from_secs(10), "w0 declared dead only after {gone:?}");
    let s = load.summary().await;
    s.assert_accounted();
    assert_eq!((s.errors, s.timeouts), (0, 0), "{s}");
    s.assert_rejections_only(&[WORKER_LOST, DEADLINE]);
    s.assert_ok_at_least(0.6);
    serves_normally(&c).await;

    // Back on the network, it reconnects to NATS and registers again.
    c.reconnect_worker("w0").await;
    c.wait_workers(&["w0", "w1"]).await;
    serves_normally(&c).await;
    c.assert_no_duplicate_replies();
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_re_register_after_the_scheduler_restarts() {
    let Some(c) = two_workers("scheduler_restart", false).await else {
        return;
    };
    for how in [Restart::Crash, Restart::Graceful] {
        // Requests the old scheduler held end as timeouts (crash) or rejections (graceful stop);
        // while no scheduler runs, requests find no responder (errors). All are counted.
        let load = c.start_load(LoadSpec::new(100.0, 6.0)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        c.restart_scheduler(how).await;
        // The new scheduler does not know the workers; their heartbeats make it ask them to say
        // hello again (baton.worker.<id>.rehello), without restarting them.
        c.wait_workers(&["w0", "w1"]).await;
        let s = load.summary().await;
        eprintln!("scheduler restart ({how:?}): {s}");
        s.assert_accounted();
        assert!(s.ok > 0, "{s}");
        serves_normally(&c).await;
    }
    c.assert_no_duplicate_replies();
}
