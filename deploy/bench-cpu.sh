#!/usr/bin/env bash
# CPU per request of the dispatcher, each gateway process and nats-server, at a fixed rate
# (docs/benchmarks.md, "Serving 1 M and 10 M req/s"): a nats-server, `baton scheduler` without
# its embedded gateway, two `baton gateway` processes and two emulated workers that are not the
# bottleneck; `baton loadgen --one-inbox` at RATE (default 20000) req/s for 5 s; CPU from
# /proc/<pid>/stat before and after.
#
#   RATE=20000 deploy/bench-cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
nats_bin=$(deploy/setup/nats-server.sh)
cargo build --release -q -p baton-scheduler -p baton-worker
B=${CARGO_TARGET_DIR:-target}/release
out=${CARGO_TARGET_DIR:-target}/bench-cpu
mkdir -p "$out"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
U=nats://127.0.0.1:$port
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT
"$nats_bin" -a 127.0.0.1 -p "$port" >"$out/nats.log" 2>&1 & NSP=$!
sleep 0.3
BATON_SCHEDULER__EMBEDDED_GATEWAY=false BATON_METRICS__LISTEN=127.0.0.1:0 RUST_LOG=warn \
  "$B/baton" scheduler --nats "$U" >"$out/dispatcher.log" 2>&1 & DP=$!
BATON_METRICS__LISTEN=127.0.0.1:0 RUST_LOG=warn "$B/baton" gateway --nats "$U" --id g0 >"$out/g0.log" 2>&1 & G0=$!
BATON_METRICS__LISTEN=127.0.0.1:0 RUST_LOG=warn "$B/baton" gateway --nats "$U" --id g1 >"$out/g1.log" 2>&1 & G1=$!
for w in w1 w2; do
  RUST_LOG=warn "$B/baton-worker" run --nats "$U" --id $w --models m --profile 'sleep#1,50,0,0' \
    --input-shape 16 --input-dtype u8 >"$out/$w.log" 2>&1 &
done
sleep 2
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
a=($(cpu $DP) $(cpu $G0) $(cpu $G1) $(cpu $NSP))
"$B/baton" loadgen --nats "$U" --model m --rate "${RATE:-20000}" --duration 5 --payload-bytes 16 --one-inbox --json >"$out/load.json"
b=($(cpu $DP) $(cpu $G0) $(cpu $G1) $(cpu $NSP))
python3 - "$out/load.json" "${a[@]}" "${b[@]}" <<'PY'
import json, os, sys
t = os.sysconf("SC_CLK_TCK")
s = json.load(open(sys.argv[1]))
a, b = list(map(int, sys.argv[2:6])), list(map(int, sys.argv[6:10]))
n = s["sent"]
for name, x, y in zip(["dispatcher", "gateway g0", "gateway g1", "nats-server"], a, b):
    print(f"{name}: {(y - x) / t:.2f} CPU-s for {n} requests = {(y - x) / t / n * 1e6:.1f} us per request sent")
print(f"ok {s['ok']}, good {s['good']}, p99 {s['p99_ms']:.1f} ms, duplicates {s['duplicates']}")
PY
