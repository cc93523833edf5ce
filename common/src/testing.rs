//! A real nats-server for tests: started on a free loopback port, stopped on
//! drop. Tests across the workspace use this one helper rather than mocks.
//!
//! The binary is `$BATON_NATS_SERVER`, else `~/.cache/baton/bin/nats-server`
//! (what `deploy/setup/nats-server.sh` installs; `make test` runs it), else
//! `nats-server` on `PATH`.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// A running nats-server.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Mutex<Option<Child>>,
}

/// Where the nats-server binary is, if anywhere.
pub fn nats_server_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BATON_NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = PathBuf::from(home).join(".cache/baton/bin/nats-server");
        if p.exists() {
            return Some(p);
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nats-server"))
            .find(|p| p.exists())
    })
}

impl NatsServer {
    /// Starts a server on a free port with extra command-line `args`.
    pub fn start_with(args: &[&str]) -> io::Result<Self> {
        Self::launch(args.iter().map(|a| a.to_string()).collect(), Vec::new())
    }

    pub fn start() -> io::Result<Self> {
        Self::start_with(&[])
    }

    /// Starts a server with a configuration file (`-c config`) and these environment
    /// variables, which the file can use as `$NAME` (e.g. passwords). The address and port
    /// still come from the command line, overriding the file's `listen`/`port`, and so does a
    /// free port for HTTP monitoring, so that servers from one file can run side by side.
    pub fn start_with_config(config: &std::path::Path, env: &[(&str, &str)]) -> io::Result<Self> {
        let monitoring = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        Self::launch(
            vec![
                "-c".to_string(),
                config.display().to_string(),
                "-m".to_string(),
                monitoring.to_string(),
            ],
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        )
    }

    fn launch(args: Vec<String>, env: Vec<(String, String)>) -> io::Result<Self> {
        let binary = nats_server_binary().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "nats-server not found: run deploy/setup/nats-server.sh (make test does) or set BATON_NATS_SERVER",
            )
        })?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let s = Self {
            binary,
            port,
            args,
            env,
            child: Mutex::new(None),
        };
        s.spawn()?;
        Ok(s)
    }

    fn spawn(&self) -> io::Result<()> {
        let child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            let exited = match self.child.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
                Some(c) => c.try_wait()?,
                None => None,
            };
            if let Some(status) = exited {
                return Err(io::Error::other(format!(
                    "nats-server exited at start ({status}); run it by hand with the same arguments to see why: {:?}",
                    self.args
                )));
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "nats-server did not start in 10 s",
                ));
            }
            sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (clients see the connection drop).
    pub fn stop(&self) {
        if let Some(mut c) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&self) -> io::Result<()> {
        self.stop();
        self.spawn()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A binary of another workspace package, from an integration test: test executables run from
/// `<target>/<profile>/deps/`, and the workspace's binaries sit one level up. Panics naming the
/// build command when it is missing (`make test` builds the whole workspace first).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --workspace` first (make test does)",
        p.display()
    );
    p
}

/// `baton scheduler` (the binary at `baton`) on the NATS server at `nats_url`, as the tests run
/// it: metrics on a free port, warnings only, stdout discarded. Add to it, then `spawn()`.
pub fn scheduler_command(baton: impl AsRef<std::path::Path>, nats_url: &str) -> Command {
    let mut c = Command::new(baton.as_ref());
    c.args(["scheduler", "--nats", nats_url])
        .env("BATON_METRICS__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null());
    c
}
