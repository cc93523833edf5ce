//! A Baton deployment in containers: NATS, the scheduler and emulated workers on a network of
//! their own, plus the faults the tests inject into it.
//!
//! Each test builds one [`Cluster`] with names unique to the test and the process
//! (`baton-it-<pid>-<test>`), so leftovers never collide; only one cluster runs at a time in a
//! process ([`Cluster::start`] takes a lock), because the tests measure service on two cores.
//! Containers are removed when the cluster is dropped, the network with its last container; on a
//! failed assertion the scheduler's and workers' logs are printed first.
//!
//! The test process watches the deployment through NATS on a host port mapped to the NATS
//! container (the scheduler's `baton.ops.status`); load comes from `baton loadgen` containers
//! on the cluster's network ([`crate::load`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use baton_common::subjects;
use serde::Deserialize;
use testcontainers::bollard::models::{NetworkConnectRequest, NetworkDisconnectRequest};
use testcontainers::bollard::query_parameters::{
    KillContainerOptions, ListContainersOptionsBuilder, ListNetworksOptionsBuilder, RemoveContainerOptionsBuilder,
};
use testcontainers::core::IntoContainerPort;
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use testcontainers_modules::nats::Nats;
use tokio::sync::{Mutex, MutexGuard};

use crate::engine::{Engine, NATS_IMAGE, SCHEDULER_IMAGE, WORKER_IMAGE};
use crate::load::{LoadSpec, LoadSummary};
use crate::replies::ReplyWatch;

/// The model every worker serves.
pub const MODEL: &str = "m";
/// A light emulated model: l(b) = 0.2·b + 2 ms.
pub const FAST: &str = "sleep#200,2000,0,0";

/// Generous bounds: containers start slowly on a loaded two-core machine.
const STARTUP: Duration = Duration::from_secs(60);
const REGISTER: Duration = Duration::from_secs(60);

/// One cluster at a time per process.
static SERIAL: Mutex<()> = Mutex::const_new(());

/// Settings for the scheduler container, as `BATON_SECTION__KEY` variables.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    scheduler_env: Vec<(String, String)>,
}

impl ClusterOptions {
    /// `setting("scheduler.gpu_choice", "earliest")` → `BATON_SCHEDULER__GPU_CHOICE=earliest`.
    pub fn setting(mut self, key: &str, value: &str) -> Self {
        let var = format!("BATON_{}", key.to_ascii_uppercase().replace('.', "__"));
        self.scheduler_env.push((var, value.to_string()));
        self
    }
}

/// How the scheduler container is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// SIGTERM, then start again (`docker restart`).
    Graceful,
    /// SIGKILL, then start again: a crash.
    Crash,
}

/// The part of `baton.ops.status` the tests read.
#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    pub workers: Vec<WorkerStatus>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WorkerStatus {
    pub id: String,
    pub state: String,
}

impl Status {
    fn ready(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .workers
            .iter()
            .filter(|w| w.state == "ready")
            .map(|w| w.id.clone())
            .collect();
        ids.sort();
        ids
    }
}

/// A running deployment. Fields drop in order: the reply watch and the client, the workers, the
/// scheduler, NATS, and last the lock.
#[derive(Debug)]
pub struct Cluster {
    /// Prefix of every container name, and the network's name.
    pub name: String,
    replies: ReplyWatch,
    client: async_nats::Client,
    engine: Engine,
    nats_host_port: u16,
    loads: AtomicU32,
    workers: BTreeMap<String, ContainerAsync<GenericImage>>,
    scheduler: ContainerAsync<GenericImage>,
    nats: ContainerAsync<Nats>,
    _serial: MutexGuard<'static, ()>,
}

impl Cluster {
    /// NATS and the scheduler, serving (answering status), with no workers yet. `None` when the
    /// container tests are skipped ([`Engine::require`]).
    pub async fn start(test: &str, options: ClusterOptions) -> Option<Cluster> {
        let serial = SERIAL.lock().await;
        let engine = Engine::require(test).await?;
        let name = format!("baton-it-{}-{}", std::process::id(), test.replace('_', "-"));
        remove_leftovers(&engine).await;

        let nats_host_port = free_port();
        let nats = Nats::default()
            .with_name(NATS_IMAGE.0)
            .with_tag(NATS_IMAGE.1)
            .with_container_name(format!("{name}-nats"))
            .with_network(&name)
            .with_mapped_port(nats_host_port, 4222.tcp())
            .with_startup_timeout(STARTUP)
            .start()
            .await
            .unwrap_or_else(|e| panic!("starting NATS ({}:{}): {e}", NATS_IMAGE.0, NATS_IMAGE.1));

        let mut scheduler = GenericImage::new(SCHEDULER_IMAGE.0, SCHEDULER_IMAGE.1)
            .with_container_name(format!("{name}-scheduler"))
            .with_network(&name)
            .with_env_var("BATON_NATS__URL", nats_url(&name))
            .with_startup_timeout(STARTUP);
        for (k, v) in &options.scheduler_env {
            scheduler = scheduler.with_env_var(k, v);
        }
        let scheduler = scheduler
            .start()
            .await
            .unwrap_or_else(|e| panic!("starting the scheduler: {e}"));

        let client = async_nats::ConnectOptions::new()
            .name("baton-integration-test")
            .retry_on_initial_connect()
            .connect(format!("nats://127.0.0.1:{nats_host_port}"))
            .await
            .unwrap_or_else(|e| panic!("connecting to NATS on host port {nats_host_port}: {e}"));
        let replies = ReplyWatch::start(&client).await;
        let cluster = Cluster {
            name,
            replies,
            client,
            engine,
            nats_host_port,
            loads: AtomicU32::new(0),
            workers: BTreeMap::new(),
            scheduler,
            nats,
            _serial: serial,
        };
        cluster.wait_serving().await;
        Some(cluster)
    }

    /// The NATS URL inside the cluster's network.
    pub fn nats_url(&self) -> String {
        nats_url(&self.name)
    }

    /// Starts an emulated worker serving [`MODEL`] with latency `profile` (it registers on its own:
    /// see [`Cluster::wait_workers`]).
    pub async fn add_worker(&mut self, id: &str, profile: &str) {
        let container = GenericImage::new(WORKER_IMAGE.0, WORKER_IMAGE.1)
            .with_container_name(format!("{}-{id}", self.name))
            .with_network(&self.name)
            .with_cmd(
                [
                    "run",
                    "--nats",
                    &self.nats_url(),
                    "--id",
                    id,
                    "--models",
                    MODEL,
                    "--profile",
                    profile,
                    "--input-shape",
                    "16",
                    "--input-dtype",
                    "u8",
                ]
                .map(String::from),
            )
            .with_startup_timeout(STARTUP)
            .start()
            .await
            .unwrap_or_else(|e| panic!("starting worker {id}: {e}"));
        self.workers.insert(id.to_string(), container);
    }

    /// The scheduler's status, if it answers within 2 s.
    pub async fn status(&self) -> Option<Status> {
        let reply = tokio::time::timeout(
            Duration::from_secs(2),
            self.client.request(subjects::OPS_STATUS, "".into()),
        )
        .await
        .ok()?
        .ok()?;
        serde_json::from_slice::<Option<Status>>(&reply.payload).ok()?
    }

    async fn wait_serving(&self) {
        let start = Instant::now();
        while self.status().await.is_none() {
            assert!(
                start.elapsed() < STARTUP,
                "the scheduler never answered baton.ops.status; its log:\n{}",
                self.scheduler_logs().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the scheduler lists exactly `ids` as ready workers.
    pub async fn wait_workers(&self, ids: &[&str]) {
        let mut want: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        want.sort();
        let start = Instant::now();
        let mut last = None;
        loop {
            if let Some(s) = self.status().await {
                let ready = s.ready();
                if ready == want {
                    return;
                }
                last = Some(ready);
            }
            assert!(
                start.elapsed() < REGISTER,
                "after {REGISTER:?} the scheduler lists ready workers {last:?}, want {want:?}; its log:\n{}",
                self.scheduler_logs().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Starts `baton loadgen` in a container; [`Load::summary`] waits for its result.
    pub async fn start_load(&self, spec: LoadSpec) -> Load {
        let n = self.loads.fetch_add(1, Ordering::Relaxed);
        let container = GenericImage::new(SCHEDULER_IMAGE.0, SCHEDULER_IMAGE.1)
            .with_container_name(format!("{}-load{n}", self.name))
            .with_network(&self.name)
            .with_cmd(spec.args(&self.nats_url(), MODEL))
            .with_startup_timeout(STARTUP)
            .start()
            .await
            .unwrap_or_else(|e| panic!("starting the loadgen: {e}"));
        Load {
            container,
            budget: Duration::from_secs_f64(spec.secs) + Duration::from_secs(120),
            started: Instant::now(),
        }
    }

    /// [`Cluster::start_load`] and wait for its summary.
    pub async fn run_load(&self, spec: LoadSpec) -> LoadSummary {
        self.start_load(spec).await.summary().await
    }

    fn worker(&self, id: &str) -> &ContainerAsync<GenericImage> {
        self.workers
            .get(id)
            .unwrap_or_else(|| panic!("no worker `{id}` in this cluster"))
    }

    /// SIGKILL: the worker dies with whatever it was running.
    pub async fn kill_worker(&self, id: &str) {
        self.kill(self.worker(id).id()).await;
    }

    async fn kill(&self, container: &str) {
        self.engine
            .docker
            .kill_container(
                container,
                Some(KillContainerOptions {
                    signal: "SIGKILL".into(),
                }),
            )
            .await
            .unwrap_or_else(|e| panic!("docker kill {container}: {e}"));
        let start = Instant::now();
        while self.is_running(container).await {
            assert!(start.elapsed() < STARTUP, "{container} still runs after SIGKILL");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn is_running(&self, container: &str) -> bool {
        let info = self
            .engine
            .docker
            .inspect_container(container, None)
            .await
            .unwrap_or_else(|e| panic!("docker inspect {container}: {e}"));
        info.state.and_then(|s| s.running).unwrap_or(false)
    }

    /// `docker network disconnect --force`: the worker keeps running, cut off from NATS.
    pub async fn disconnect_worker(&self, id: &str) {
        let request = NetworkDisconnectRequest {
            container: self.worker(id).id().to_string(),
            force: Some(true),
        };
        self.engine
            .docker
            .disconnect_network(&self.name, request)
            .await
            .unwrap_or_else(|e| panic!("docker network disconnect {} {id}: {e}", self.name));
    }

    /// `docker network connect`: the worker can reach NATS again.
    pub async fn reconnect_worker(&self, id: &str) {
        let request = NetworkConnectRequest {
            container: self.worker(id).id().to_string(),
            endpoint_config: None,
        };
        self.engine
            .docker
            .connect_network(&self.name, request)
            .await
            .unwrap_or_else(|e| panic!("docker network connect {} {id}: {e}", self.name));
    }

    /// Freezes every process of the NATS container (its connections stay open).
    pub async fn pause_nats(&self) {
        self.nats
            .pause()
            .await
            .unwrap_or_else(|e| panic!("docker pause NATS: {e}"));
    }

    pub async fn unpause_nats(&self) {
        self.nats
            .unpause()
            .await
            .unwrap_or_else(|e| panic!("docker unpause NATS: {e}"));
    }

    /// Stops NATS (SIGTERM; every connection drops) and starts it again on the same host port.
    pub async fn restart_nats(&self) {
        self.nats
            .stop_with_timeout(Some(10))
            .await
            .unwrap_or_else(|e| panic!("docker stop NATS: {e}"));
        self.nats
            .start()
            .await
            .unwrap_or_else(|e| panic!("docker start NATS: {e}"));
    }

    /// Restarts the scheduler container, then waits until it answers status again.
    pub async fn restart_scheduler(&self, how: Restart) {
        match how {
            Restart::Graceful => self
                .scheduler
                .stop_with_timeout(Some(10))
                .await
                .unwrap_or_else(|e| panic!("docker stop scheduler: {e}")),
            Restart::Crash => self.kill(self.scheduler.id()).await,
        }
        self.scheduler
            .start()
            .await
            .unwrap_or_else(|e| panic!("docker start scheduler: {e}"));
        self.wait_serving().await;
    }

    /// Waits until the scheduler no longer lists worker `id`; returns how long that took.
    pub async fn wait_worker_gone(&self, id: &str) -> Duration {
        let start = Instant::now();
        loop {
            if let Some(s) = self.status().await {
                if !s.workers.iter().any(|w| w.id == id) {
                    return start.elapsed();
                }
            }
            assert!(
                start.elapsed() < REGISTER,
                "the scheduler still lists worker {id} after {REGISTER:?}; its log:\n{}",
                self.scheduler_logs().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Everything the scheduler has logged (stderr), across restarts.
    pub async fn scheduler_logs(&self) -> String {
        logs(&self.scheduler).await
    }

    /// Everything worker `id` has logged (stderr), or nothing if there is no such worker.
    pub async fn worker_logs(&self, id: &str) -> String {
        match self.workers.get(id) {
            Some(w) => logs(w).await,
            None => String::new(),
        }
    }

    /// Requests answered more than once so far: inbox subject and the replies (`id status reason`).
    pub fn duplicate_replies(&self) -> Vec<(String, Vec<String>)> {
        self.replies.duplicates()
    }

    /// No request was answered twice (checked on every reply since the cluster started, except
    /// while the test's own NATS connection was down).
    pub fn assert_no_duplicate_replies(&self) {
        let duplicates = self.duplicate_replies();
        assert!(
            duplicates.is_empty(),
            "{} of {} requests were answered more than once, e.g. {:?}",
            duplicates.len(),
            self.replies.answered(),
            &duplicates[..duplicates.len().min(5)]
        );
        assert!(self.replies.answered() > 0, "no replies seen on _INBOX.>");
    }

    /// The host port NATS is published on.
    pub fn nats_host_port(&self) -> u16 {
        self.nats_host_port
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        // A failed assertion: show what the processes said before their containers go (this needs
        // the multi-thread runtime, which testcontainers' own clean-up wants too).
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return;
        }
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                eprintln!(
                    "---- {}-scheduler (last 40 lines) ----\n{}",
                    self.name,
                    tail(&logs(&self.scheduler).await, 40)
                );
                for (id, w) in &self.workers {
                    eprintln!(
                        "---- {}-{id} (last 20 lines) ----\n{}",
                        self.name,
                        tail(&logs(w).await, 20)
                    );
                }
            })
        });
    }
}

/// A running loadgen container.
#[derive(Debug)]
pub struct Load {
    container: ContainerAsync<GenericImage>,
    budget: Duration,
    started: Instant,
}

impl Load {
    /// Waits for the loadgen to exit and returns its summary (printed to stderr too).
    pub async fn summary(self) -> LoadSummary {
        let code = loop {
            match self.container.exit_code().await {
                Ok(Some(code)) => break code,
                Ok(None) => {}
                Err(e) => panic!("inspecting the loadgen container: {e}"),
            }
            assert!(
                self.started.elapsed() < self.budget,
                "the loadgen did not finish within {:?}",
                self.budget
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let stdout = String::from_utf8_lossy(&self.container.stdout_to_vec().await.unwrap_or_default()).into_owned();
        let stderr = String::from_utf8_lossy(&self.container.stderr_to_vec().await.unwrap_or_default()).into_owned();
        assert_eq!(code, 0, "the loadgen failed (exit {code}):\n{stderr}");
        let summary = LoadSummary::from_stdout(&stdout).unwrap_or_else(|e| panic!("{e}\nstderr:\n{stderr}"));
        eprintln!("loadgen: {summary}");
        summary
    }
}

fn nats_url(cluster: &str) -> String {
    format!("nats://{cluster}-nats:4222")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

async fn logs<I: testcontainers::Image>(c: &ContainerAsync<I>) -> String {
    let out = c.stdout_to_vec().await.unwrap_or_default();
    let err = c.stderr_to_vec().await.unwrap_or_default();
    format!("{}{}", String::from_utf8_lossy(&out), String::from_utf8_lossy(&err))
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Removes containers and networks of earlier test processes that died before cleaning up
/// (`baton-it-<pid>-…` with no such process).
async fn remove_leftovers(engine: &Engine) {
    let dead = |name: &str| {
        name.trim_start_matches('/')
            .strip_prefix("baton-it-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists())
    };
    let filters = HashMap::from([("name", vec!["baton-it-"])]);
    let list = ListContainersOptionsBuilder::new().all(true).filters(&filters).build();
    for c in engine.docker.list_containers(Some(list)).await.unwrap_or_default() {
        let names = c.names.unwrap_or_default();
        if let (Some(id), true) = (c.id, names.iter().any(|n| dead(n))) {
            let force = RemoveContainerOptionsBuilder::new().force(true).v(true).build();
            let _ = engine.docker.remove_container(&id, Some(force)).await;
        }
    }
    let list = ListNetworksOptionsBuilder::new().filters(&filters).build();
    for n in engine.docker.list_networks(Some(list)).await.unwrap_or_default() {
        if let Some(name) = n.name.filter(|n| dead(n)) {
            let _ = engine.docker.remove_network(&name).await;
        }
    }
}
