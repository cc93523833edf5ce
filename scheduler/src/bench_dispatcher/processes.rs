//! The processes a dispatcher benchmark runs: a nats-server (unless given one) and the real
//! dispatcher, `baton scheduler` without its embedded gateway; and the CPU time they use,
//! read from `/proc`.
//!
//! Both are children killed when their handle drops, so an error anywhere in a run leaves
//! nothing behind.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// A child process killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct Process {
    child: Child,
    what: &'static str,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error if the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status})", self.what);
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The nats-server binary, looked up as the tests do (`baton_common::testing`):
/// `$BATON_NATS_SERVER`, else `~/.cache/baton/bin/nats-server` (which
/// `deploy/setup/nats-server.sh` installs), else `nats-server` on `PATH`.
pub fn nats_server_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("BATON_NATS_SERVER") {
        return Ok(PathBuf::from(p));
    }
    let cached = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/baton/bin/nats-server"));
    if let Some(p) = cached.filter(|p| p.exists()) {
        return Ok(p);
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("nats-server"))
                .find(|p| p.exists())
        })
        .context(
            "nats-server not found: run deploy/setup/nats-server.sh (make setup does), set BATON_NATS_SERVER, \
             or give a running server with --nats URL",
        )
}

/// A nats-server of our own on a free loopback port.
#[derive(Debug)]
pub struct NatsServer {
    pub process: Process,
    pub url: String,
}

impl NatsServer {
    /// Starts one with the default settings and waits (up to 10 s) until it takes connections.
    pub fn start() -> Result<Self> {
        let binary = nats_server_binary()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut process = Process {
            child,
            what: "nats-server",
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            process.check_running()?;
            if start.elapsed() > Duration::from_secs(10) {
                bail!("{} did not take connections within 10 s", binary.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(NatsServer {
            process,
            url: format!("nats://127.0.0.1:{port}"),
        })
    }
}

/// Starts the dispatcher: `baton scheduler` (the binary at `baton`) on `nats_url`, without its
/// embedded gateway, metrics on a free port, warnings and errors to `log`.
pub fn start_dispatcher(baton: &Path, nats_url: &str, log: &Path) -> Result<Process> {
    let log_file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let child = Command::new(baton)
        .args(["scheduler", "--nats", nats_url])
        .env("BATON_SCHEDULER__EMBEDDED_GATEWAY", "false")
        .env("BATON_METRICS__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {} scheduler", baton.display()))?;
    Ok(Process {
        child,
        what: "the dispatcher (baton scheduler)",
    })
}

/// The last `lines` lines of a log file, for an error message.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Clock ticks per second of `/proc/<pid>/stat` times: `USER_HZ`, which Linux fixes at 100 on
/// every architecture it exports to user space.
const USER_HZ: f64 = 100.0;

/// CPU seconds (user + system, all threads) process `pid` has used, from `/proc/<pid>/stat`;
/// `None` where there is no such file (not Linux, or the process is gone).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    parse_stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// CPU seconds this process has used.
pub fn own_cpu_seconds() -> Option<f64> {
    parse_stat_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// `utime + stime` of a `/proc/<pid>/stat` line, in seconds. The command name (field 2) is in
/// parentheses and may hold spaces and parentheses itself, so fields are counted from the last
/// `)`: after it come field 3 (state) onwards, and utime and stime are fields 14 and 15.
fn parse_stat_cpu(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_from_a_stat_line() {
        // A command name with a space and a parenthesis; utime 250 and stime 37 ticks.
        let line = "4242 (baton (x) y) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 37 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_stat_cpu(line), Some(2.87));
        assert_eq!(parse_stat_cpu("4242 (baton) S 1 2"), None);
        assert_eq!(parse_stat_cpu("garbage"), None);
    }

    #[test]
    fn this_process_uses_some_cpu() {
        if Path::new("/proc/self/stat").exists() {
            assert!(own_cpu_seconds().is_some_and(|s| s >= 0.0));
        }
    }
}
