#!/usr/bin/env bash
# `make bench-fleet`: the scheduler with 1,000 and 10,000 emulated workers (issue 12, item 4).
#
# For each COUNT, on a fresh nats-server and `baton scheduler` (release builds):
#   (a) start `baton-worker fleet --count COUNT` and time until `baton status` lists every
#       worker ready (plus one separate `baton-worker run` worker, `bench-single`);
#   (b) idle CPU over 30 s, from /proc/<pid>/stat utime+stime, as % of one core: the scheduler
#       (at idle nearly all of it is heartbeats; its CPU with only `bench-single` registered is
#       measured first, over 10 s), the fleet process and nats-server; and RSS;
#   (c) kill -9 `bench-single` and time until status no longer lists it ready (polled every
#       10 ms; also the scheduler's own "declared dead" log line);
#   (d) kill -9 the scheduler, start it again, and time until every fleet worker is ready again
#       (the workers say hello when the new scheduler asks them to);
#   then SIGTERM the fleet and time its drain until the scheduler lists no worker.
# Status is read with a persistent NATS connection (the protocol's few lines in Python's
# standard library), the same request `baton status` makes, so a 10 ms poll costs no process
# start. Prints a summary per COUNT and one JSON line; logs in $CARGO_TARGET_DIR/bench-fleet/.
#
#   deploy/bench-fleet.sh [COUNT...]        (default: 1000 10000)
#   START_RATE=5000 PER_CONNECTION=1000 IDLE_S=30 READY_TIMEOUT_S=120 deploy/bench-fleet.sh
#   BENCH_BIN=DIR deploy/bench-fleet.sh     (DIR's baton and baton-worker, without building)
#
# nats-server runs with max_payload 8 MB: the status reply lists every worker (~140 bytes each)
# and outgrows the default 1 MB at about 7,000 workers.
set -euo pipefail
cd "$(dirname "$0")/.."

counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1000 10000)

nats_bin=$(deploy/setup/nats-server.sh)
if [ -z "${BENCH_BIN:-}" ]; then
  cargo build --release -q -p baton-scheduler -p baton-worker
fi
bin=${BENCH_BIN:-${CARGO_TARGET_DIR:-target}/release}
out=${CARGO_TARGET_DIR:-target}/bench-fleet
mkdir -p "$out"

exec python3 - "$nats_bin" "$bin" "$out" "${counts[@]}" <<'EOF'
import calendar, json, os, re, signal, socket, subprocess, sys, time

nats_bin, bin_dir, out = sys.argv[1:4]
counts = [int(c) for c in sys.argv[4:]]
start_rate = os.environ.get("START_RATE", "5000")
per_connection = os.environ.get("PER_CONNECTION", "1000")
idle_s = float(os.environ.get("IDLE_S", "30"))
ready_timeout = float(os.environ.get("READY_TIMEOUT_S", "120"))
tick = os.sysconf("SC_CLK_TCK")
procs = []


class Nats:
    """A status poller: the few lines of the NATS protocol it needs."""

    def __init__(self, port):
        self.port = port
        self.s = socket.create_connection(("127.0.0.1", port))
        self.buf = b""
        self._line()  # INFO
        # Headers and no_responders: a request nobody listens to (a scheduler still starting)
        # gets a 503 at once instead of a timeout. One inbox per request, so that an answer
        # that comes after its poll gave up is never taken for a later poll's.
        self.inbox = f"_INBOX.bench-fleet.{os.getpid()}.{time.monotonic_ns()}"
        self.n = 0
        self.s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,'
                       b'"name":"bench-fleet"}\r\n' + f"SUB {self.inbox}.* 1\r\n".encode())

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.s.recv(1 << 20)
            if not chunk:
                raise ConnectionError("NATS closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self.buf += self.s.recv(1 << 20)
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def status(self, timeout):
        """The scheduler's status JSON (bytes), or None if it is not there or does not answer in time."""
        self.n += 1
        reply_to = f"{self.inbox}.{self.n}".encode()
        self.s.settimeout(timeout)
        self.s.sendall(b"PUB baton.ops.status " + reply_to + b" 0\r\n\r\n")
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                line = self._line()
                if line.startswith(b"PING"):
                    self.s.sendall(b"PONG\r\n")
                elif line.startswith(b"MSG"):
                    body = self._exact(int(line.split()[-1]))
                    if line.split()[1] == reply_to:
                        return body
                elif line.startswith(b"HMSG"):
                    header_len, total = (int(x) for x in line.split()[-2:])
                    message = self._exact(total)
                    if line.split()[1] == reply_to:
                        return None if b" 503" in message[:header_len] else message[header_len:]
                elif line.startswith(b"-ERR"):
                    raise RuntimeError(line.decode())
        except socket.timeout:
            pass
        # Given up (perhaps mid-message): carry on over a new connection.
        self.s.close()
        self.__init__(self.port)
        return None


READY = re.compile(rb'"id":"([^"]*)","hardware":"[^"]*","backend":"[^"]*","state":"ready"')


def ready_ids(body):
    return set() if body is None else {m.decode() for m in READY.findall(body)}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def spawn(args, log, **kw):
    p = subprocess.Popen(args, stdout=kw.pop("stdout", open(log, "w")), stderr=open(log + ".err", "w"), **kw)
    procs.append(p)
    return p


def cpu_s(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick


def rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_ready(nats, pred, timeout, every, fresh=False):
    """Polls status until pred(ready ids) holds; returns (seconds, most ready seen, failed polls).
    With fresh, only a scheduler up for less than the wait counts (not one killed just before)."""
    t0 = time.monotonic()
    most, failed = 0, 0
    while time.monotonic() - t0 < timeout:
        body = nats.status(timeout=5)
        failed += body is None
        ids = ready_ids(body)
        most = max(most, len(ids))
        if fresh and body is not None:
            uptime = float(re.search(rb'"uptime_s":([0-9.e+-]+)', body).group(1))
            if uptime > time.monotonic() - t0 + 1:
                raise SystemExit(f"status came from a scheduler up for {uptime:.1f} s, not the restarted one")
        if body is not None and pred(ids):
            return time.monotonic() - t0, most, failed
        time.sleep(every)
    return None, most, failed


def scheduler(url, log):
    env = dict(os.environ, BATON_METRICS__LISTEN="127.0.0.1:0", RUST_LOG="warn")
    return spawn([f"{bin_dir}/baton", "scheduler", "--nats", url], log, env=env)


def stop(p, sig=signal.SIGTERM, timeout=30):
    if p.poll() is None:
        p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def bench(count):
    port = free_port()
    url = f"nats://127.0.0.1:{port}"
    conf = f"{out}/nats-{count}.conf"
    open(conf, "w").write("max_payload: 8MB\n")
    nats_p = spawn([nats_bin, "-c", conf, "-a", "127.0.0.1", "-p", str(port)], f"{out}/nats-{count}.log")
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            break
        except OSError:
            time.sleep(0.05)
    sched = scheduler(url, f"{out}/scheduler-{count}.log")
    nats = Nats(port)
    if wait_ready(nats, lambda ids: True, 30, 0.05)[0] is None:
        raise SystemExit(f"the scheduler never answered status; see {out}/scheduler-{count}.log.err")
    single = spawn([f"{bin_dir}/baton-worker", "run", "--nats", url, "--id", "bench-single", "--models", "m1,m2",
                    "--profile", "sleep#200,2000,0,0", "--input-shape", "none"],
                   f"{out}/single-{count}.log", env=dict(os.environ, RUST_LOG="warn"))
    if wait_ready(nats, lambda ids: "bench-single" in ids, 30, 0.05)[0] is None:
        raise SystemExit(f"bench-single never registered; see {out}/single-{count}.log.err")
    r = {"count": count, "start_rate": float(start_rate), "per_connection": int(per_connection)}
    # The scheduler's own idle CPU with one worker, to tell the fleet's heartbeats from it.
    before, t0 = cpu_s(sched.pid), time.monotonic()
    time.sleep(10)
    r["idle_cpu_pct_scheduler_one_worker"] = round(100 * (cpu_s(sched.pid) - before) / (time.monotonic() - t0), 1)

    # (a) registration
    fleet_out = f"{out}/fleet-{count}.out"
    fleet = spawn([f"{bin_dir}/baton-worker", "fleet", "--count", str(count), "--nats", url, "--models", "m1,m2",
                   "--profile", "sleep#200,2000,0,0", "--input-shape", "none", "--start-rate", start_rate,
                   "--per-connection", per_connection], fleet_out, env=dict(os.environ, RUST_LOG="warn"))
    everyone = count + 1
    took, most, failed = wait_ready(nats, lambda ids: len(ids) >= everyone, ready_timeout, 0.1)
    r["register_s"] = took
    r["register_most_ready"] = most - 1
    r["register_failed_polls"] = failed
    r["fleet_up_line"] = open(fleet_out).read().strip()
    if took is None:
        r["broke"] = f"only {most - 1} of {count} fleet workers were ever ready at once within {ready_timeout:.0f} s"

    # (b) idle CPU
    time.sleep(5)
    pids = {"scheduler": sched.pid, "fleet": fleet.pid, "nats": nats_p.pid}
    before = {k: cpu_s(p) for k, p in pids.items()}
    t0 = time.monotonic()
    time.sleep(idle_s)
    span = time.monotonic() - t0
    for k, p in pids.items():
        r[f"idle_cpu_pct_{k}"] = round(100 * (cpu_s(p) - before[k]) / span, 1)
        r[f"rss_mb_{k}"] = round(rss_mb(p))
    r["ready_after_idle"] = len(ready_ids(nats.status(timeout=10))) - 1

    # (c) declare one dead
    killed_at = time.time()
    t0 = time.monotonic()
    single.kill()
    took, _, failed = wait_ready(nats, lambda ids: "bench-single" not in ids, 30, 0.01)
    r["dead_s"] = took
    r["dead_failed_polls"] = failed
    time.sleep(1)
    r["dead_log_s"] = None
    for line in open(f"{out}/scheduler-{count}.log.err", errors="replace"):
        if "bench-single" in line and "declared dead" in line:
            stamp = re.search(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z", line)
            if stamp:
                whole, frac = stamp.group(1).split(".")
                t = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + float("0." + frac)
                r["dead_log_s"] = round(t - killed_at, 3)

    # (d) scheduler restart
    stop(sched, signal.SIGKILL)
    sched = scheduler(url, f"{out}/scheduler-{count}-restarted.log")
    took, most, failed = wait_ready(nats, lambda ids: len(ids) >= count, ready_timeout, 0.1, fresh=True)
    r["restart_ready_s"] = took
    r["restart_most_ready"] = most
    r["restart_failed_polls"] = failed

    # drain
    t0 = time.monotonic()
    stop(fleet, signal.SIGTERM, timeout=120)
    r["fleet_exit_s"] = round(time.monotonic() - t0, 2)
    r["fleet_exit_code"] = fleet.returncode
    took, _, _ = wait_ready(nats, lambda ids: len(ids) == 0, 60, 0.1)
    r["drained_s"] = round(time.monotonic() - t0, 2) if took is not None else None
    r["fleet_down_line"] = open(fleet_out).read().strip().splitlines()[-1]

    stop(sched)
    stop(nats_p)
    return r


def fmt(x, unit="s"):
    return "—" if x is None else f"{x:.3f} {unit}" if unit == "s" else f"{x} {unit}"


try:
    for count in counts:
        print(f"== {count} emulated workers (start rate {start_rate}/s, {per_connection} per connection)", flush=True)
        r = bench(count)
        print(f"  (a) all ready after          {fmt(r['register_s'])}  [{r['fleet_up_line']}]")
        if "broke" in r:
            print(f"      BROKE: {r['broke']}")
        print(f"  (b) idle CPU (% of a core)   scheduler {r['idle_cpu_pct_scheduler']}% "
              f"(with one worker: {r['idle_cpu_pct_scheduler_one_worker']}%), fleet {r['idle_cpu_pct_fleet']}%, "
              f"nats-server {r['idle_cpu_pct_nats']}%  (RSS MB: {r['rss_mb_scheduler']}, {r['rss_mb_fleet']}, "
              f"{r['rss_mb_nats']}; ready after idling: {r['ready_after_idle']})")
        print(f"  (c) one declared dead after  {fmt(r['dead_s'])} (status, 10 ms polls); scheduler log {fmt(r['dead_log_s'])}")
        print(f"  (d) all ready after restart  {fmt(r['restart_ready_s'])}  (most ready seen: {r['restart_most_ready']})")
        print(f"  drain: fleet exited {r['fleet_exit_code']} after {r['fleet_exit_s']} s; 0 workers listed after "
              f"{fmt(r['drained_s'])}  [{r['fleet_down_line']}]")
        print(json.dumps(r), flush=True)
finally:
    for p in reversed(procs):
        if p.poll() is None:
            p.kill()
            p.wait()
EOF
