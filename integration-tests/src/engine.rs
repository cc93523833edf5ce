//! Reaching the Docker engine, or saying clearly why the tests cannot.
//!
//! [`Engine::require`] is the first thing every container test calls. It
//! - returns `None` (the test passes, saying it was skipped) when `BATON_SKIP_DOCKER_TESTS=1`;
//! - fails, naming the address it tried and how to skip, when no engine answers;
//! - starts the API version shim ([`crate::api_proxy`]) once when the engine is older than
//!   testcontainers' client;
//! - fails, naming `deploy/images/build.sh` / `make images`, when an image is missing (nothing
//!   can be pulled here: a missing image would otherwise end in a confusing pull error), and
//!   warns when an image is older than the release binaries next to it.

use std::path::PathBuf;
use std::time::SystemTime;

use testcontainers::bollard::{Docker, API_DEFAULT_VERSION};
use tokio::sync::OnceCell;

/// Set to `1` to skip the container tests (they then pass, saying so).
pub const SKIP_ENV: &str = "BATON_SKIP_DOCKER_TESTS";

/// The images the tests run, built by `deploy/images/build.sh`.
pub const NATS_IMAGE: (&str, &str) = ("baton/nats", "local");
pub const SCHEDULER_IMAGE: (&str, &str) = ("baton/scheduler", "local");
pub const WORKER_IMAGE: (&str, &str) = ("baton/worker", "local");

/// A reachable engine, through a client that speaks its API version.
#[derive(Debug, Clone)]
pub struct Engine {
    pub docker: Docker,
}

/// What the one-time set-up found: `Err` is the message every test fails with.
static SETUP: OnceCell<Result<(), String>> = OnceCell::const_new();

impl Engine {
    /// The engine, or `None` when the tests are to be skipped. Panics with instructions when the
    /// engine or an image is missing.
    pub async fn require(test: &str) -> Option<Engine> {
        if std::env::var(SKIP_ENV).is_ok_and(|v| v == "1") {
            eprintln!("{test}: skipped ({SKIP_ENV}=1): this test needs a Docker engine and the baton/* images");
            return None;
        }
        if let Err(msg) = SETUP.get_or_init(setup).await {
            panic!("{msg}");
        }
        let docker = connect().await.unwrap_or_else(|e| panic!("{}", unreachable(&e)));
        check_images(&docker).await;
        Some(Engine { docker })
    }
}

fn docker_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

fn unreachable(e: &dyn std::fmt::Display) -> String {
    format!(
        "no Docker engine reachable at {} ({e}). The container tests run Baton's images under Docker: \
         start the engine (or set DOCKER_HOST), or set {SKIP_ENV}=1 to skip them.",
        docker_host()
    )
}

/// A client with the version negotiated down to the engine's.
async fn connect() -> Result<Docker, String> {
    let docker = Docker::connect_with_defaults().map_err(|e| e.to_string())?;
    let docker = docker.negotiate_version().await.map_err(|e| e.to_string())?;
    docker.ping().await.map_err(|e| e.to_string())?;
    Ok(docker)
}

fn parse_version(v: &str) -> Option<(u64, u64)> {
    let (major, minor) = v.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// Once per process: check the engine answers and, if its API is older than testcontainers'
/// client, put the version shim in front of it.
async fn setup() -> Result<(), String> {
    let docker = connect().await.map_err(|e| unreachable(&e))?;
    let version = docker.version().await.map_err(|e| unreachable(&e))?;
    let engine_api = version.api_version.clone().unwrap_or_default();
    let client_api = (
        API_DEFAULT_VERSION.major_version as u64,
        API_DEFAULT_VERSION.minor_version as u64,
    );
    match parse_version(&engine_api) {
        Some(v) if v >= client_api => return Ok(()),
        Some(_) => {}
        None => {
            return Err(format!(
                "the Docker engine reported API version `{engine_api}`, which is not n.m"
            ))
        }
    }
    let host = docker_host();
    let Some(socket) = host.strip_prefix("unix://") else {
        return Err(format!(
            "the Docker engine at {host} speaks API {engine_api}, older than testcontainers' {}.{}; \
             the version shim only fronts Unix sockets: use a local engine, or Docker 25 or newer",
            client_api.0, client_api.1
        ));
    };
    let dir = std::env::temp_dir().join(format!("baton-it-docker-{}", std::process::id()));
    remove_stale_shims();
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    restrict(&dir);
    let listen = dir.join("docker.sock");
    crate::api_proxy::spawn(&listen, PathBuf::from(socket), engine_api.clone())
        .map_err(|e| format!("starting the Docker API shim on {}: {e}", listen.display()))?;
    eprintln!(
        "the Docker engine speaks API {engine_api}; testcontainers speaks {}.{}: using the version shim at {}",
        client_api.0,
        client_api.1,
        listen.display()
    );
    // testcontainers reads DOCKER_HOST whenever it creates its client. Set while no container
    // test runs (they hold the serial lock around this), before any of them reads it.
    std::env::set_var("DOCKER_HOST", format!("unix://{}", listen.display()));
    Ok(())
}

/// The shim's socket directory is for this user only: the socket is as powerful as Docker's.
fn restrict(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

/// Shim sockets of test processes that are gone.
fn remove_stale_shims() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("baton-it-docker-") {
            if !PathBuf::from("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Where `make images` took its binaries from (to warn about stale images).
fn release_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release")
}

async fn check_images(docker: &Docker) {
    let mut missing = Vec::new();
    for ((name, tag), binary) in [
        (NATS_IMAGE, None),
        (SCHEDULER_IMAGE, Some("baton")),
        (WORKER_IMAGE, Some("baton-worker")),
    ] {
        let image = format!("{name}:{tag}");
        match docker.inspect_image(&image).await {
            Ok(info) => {
                let (Some(binary), Some(created)) = (binary, info.created) else {
                    continue;
                };
                let built = release_dir().join(binary);
                let newer = std::fs::metadata(&built)
                    .and_then(|m| m.modified())
                    .ok()
                    .zip(Some(SystemTime::from(created)))
                    .is_some_and(|(binary, image)| binary > image);
                if newer {
                    eprintln!(
                        "warning: {image} is older than {}: the tests run the image; rebuild it with \
                         deploy/images/build.sh (make images)",
                        built.display()
                    );
                }
            }
            Err(_) => missing.push(image),
        }
    }
    assert!(
        missing.is_empty(),
        "missing Docker images: {}. Nothing can be pulled: build them with deploy/images/build.sh \
         (or `make images`), or set {SKIP_ENV}=1 to skip the container tests.",
        missing.join(", ")
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_compare_numerically() {
        assert_eq!(parse_version("1.41"), Some((1, 41)));
        assert!(parse_version("1.9") < parse_version("1.41"));
        assert_eq!(parse_version("latest"), None);
    }
}
