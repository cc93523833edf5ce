#!/usr/bin/env bash
# `make bench-e2e`: end-to-end throughput of `baton scheduler` over NATS, and goodput under overload.
#
# In one run, on loopback, with the same open-loop loadgen (`baton loadgen --one-inbox --json`,
# Poisson, 16-byte payloads, SLO 100 ms) throughout:
#   1. the raw NATS request/reply ceiling: the highest rate at <= 1% bad against `baton echo`;
#   2. the knee: the highest rate at <= 1% bad through nats-server, a release `baton scheduler` and
#      two emulated workers that are not the bottleneck (l(b) = 0.001·b + 0.05 ms), once with the
#      scheduler's embedded gateway (1 gateway) and once with the dispatcher alone and two
#      `baton gateway` processes;
#   3. goodput at 1x, 3x and 10x the better knee (the loadgen reports the rate it could send).
# Both searches are bisections over short runs. "bad" = sent - answered ok within the SLO.
# The last line is one JSON object: knee_rps, raw_rps, ratio, goodput_at_{1,3,10}x_rps, and the
# offered and achieved rates of those runs. Everything it starts is stopped on exit.
#
#   deploy/bench-e2e.sh            (BENCH_SECONDS: length of each search run, default 2)
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${BENCH_SECONDS:-2}
steps=${BENCH_STEPS:-6}
nats_bin=$(deploy/setup/nats-server.sh)
cargo build --release -q -p baton-scheduler -p baton-worker
bin=${CARGO_TARGET_DIR:-target}/release
out=${CARGO_TARGET_DIR:-target}/bench-e2e
mkdir -p "$out"

# Processes this script started, in order; `stop_all` ends them newest first.
pids=()
start() { "$@" & pids+=($!); }
stop_all() {
  while [ ${#pids[@]} -gt 0 ]; do
    kill -TERM "${pids[-1]}" 2>/dev/null || true
    wait "${pids[-1]}" 2>/dev/null || true
    unset 'pids[-1]'
  done
}
trap 'trap - EXIT INT TERM; stop_all; [ -z "${nats_pid:-}" ] || { kill -TERM "$nats_pid"; wait "$nats_pid"; } 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="nats://127.0.0.1:$port"
"$nats_bin" -a 127.0.0.1 -p "$port" >"$out/nats.log" 2>&1 &
nats_pid=$!

# One loadgen run at $1 req/s for $2 s; prints its JSON summary (also kept in $out).
load() {
  "$bin/baton" loadgen --nats "$url" --model m --rate "$1" --duration "$2" --payload-bytes 16 \
    --slo-ms 100 --one-inbox --json | tee -a "$out/runs.jsonl"
}
# The fraction of a run's requests that were not answered ok within the SLO.
bad() { python3 -c 'import json,sys; s=json.loads(sys.stdin.read()); print((s["sent"]-s["good"])/max(s["sent"],1))'; }
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read())[\"$1\"])"; }

# The highest rate in [$1, $2] at <= 1% bad, by bisection on a log scale ($steps runs).
search() {
  local lo=$1 hi=$2 mid s b
  for ((k = 0; k < steps; k++)); do
    mid=$(python3 -c "print(int(($lo*$hi)**0.5))")
    s=$(load "$mid" "$secs")
    b=$(bad <<<"$s")
    echo "   $mid req/s: bad $(python3 -c "print(f'{$b:.2%}')")" >&2
    if python3 -c "import sys; sys.exit(0 if $b <= 0.01 else 1)"; then lo=$mid; else hi=$mid; fi
  done
  echo "$lo"
}

: >"$out/runs.jsonl"
echo "== raw NATS ceiling: baton echo" >&2
RUST_LOG=warn start "$bin/baton" echo --nats "$url" --model m >"$out/echo.log" 2>&1
sleep 0.5
raw=$(search 20000 400000)
stop_all

# Baton with $1 gateway processes (0: the scheduler's embedded gateway) and two emulated workers.
baton_up() {
  if [ "$1" = 0 ]; then
    BATON_METRICS__LISTEN=127.0.0.1:0 RUST_LOG=warn start "$bin/baton" scheduler --nats "$url" >"$out/scheduler.log" 2>&1
  else
    BATON_SCHEDULER__EMBEDDED_GATEWAY=false BATON_METRICS__LISTEN=127.0.0.1:0 RUST_LOG=warn \
      start "$bin/baton" scheduler --nats "$url" >"$out/scheduler.log" 2>&1
    for ((g = 0; g < $1; g++)); do
      BATON_METRICS__LISTEN=127.0.0.1:0 RUST_LOG=warn start "$bin/baton" gateway --nats "$url" --id "g$g" \
        >"$out/gateway-g$g.log" 2>&1
    done
  fi
  for w in w1 w2; do
    RUST_LOG=warn start "$bin/baton-worker" run --nats "$url" --id "$w" --models m --profile 'sleep#1,50,0,0' \
      --input-shape 16 --input-dtype u8 >"$out/worker-$w.log" 2>&1
  done
  for _ in $(seq 100); do
    n=$("$bin/baton" status --nats "$url" --json 2>/dev/null | python3 -c 'import json,sys; s=json.load(sys.stdin); print(sum(w["state"]=="ready" for w in s["workers"]) + 10*len(s.get("gateways",[])))' 2>/dev/null || echo 0)
    [ "$n" = $((2 + 10 * ($1 > 0 ? $1 : 1))) ] && break
    sleep 0.2
  done
  [ "$n" = $((2 + 10 * ($1 > 0 ? $1 : 1))) ] || { echo "the workers or gateways never registered (see $out/*.log)" >&2; exit 1; }
}

echo "== baton scheduler (embedded gateway) + 2 emulated workers" >&2
baton_up 0
knee1=$(search 5000 "$raw")
stop_all
echo "== dispatcher + 2 baton gateway processes + 2 emulated workers" >&2
baton_up 2
knee2=$(search 5000 "$raw")
if [ "$knee2" -lt "$knee1" ]; then
  stop_all
  baton_up 0
  knee=$knee1 mode=1
else
  knee=$knee2 mode=2
fi

echo "== goodput at 1x, 3x, 10x the knee ($knee req/s, $mode gateway(s))" >&2
at1=$(load "$knee" 3)
at3=$(load $((3 * knee)) 3)
at10=$(load $((10 * knee)) 3)
sleep 1
"$bin/baton" status --nats "$url" --json >"$out/status-after.json"
stop_all

python3 - "$knee" "$raw" "$at1" "$at3" "$at10" "$out/status-after.json" "$knee1" "$knee2" "$mode" <<'EOF'
import json, sys
knee, raw = int(sys.argv[1]), int(sys.argv[2])
runs = [json.loads(a) for a in sys.argv[3:6]]
status = json.load(open(sys.argv[6]))
knee1, knee2, mode = int(sys.argv[7]), int(sys.argv[8]), int(sys.argv[9])
for name, r in zip(["1x", "3x", "10x"], runs):
    print(f"   {name}: offered {r['sent']/max(r['duration_s'],1e-9):.0f} req/s achieved, ok {r['ok']}, "
          f"rejected {r['rejected_by_reason']}, timeouts {r['timeouts']}, goodput {r['goodput_rps']:.0f} req/s",
          file=sys.stderr)
print(json.dumps({
    "knee_rps": knee,
    "raw_rps": raw,
    "ratio": round(knee / raw, 3),
    "knee_1_gateway_rps": knee1,
    "knee_2_gateways_rps": knee2,
    "ratio_1_gateway": round(knee1 / raw, 3),
    "ratio_2_gateways": round(knee2 / raw, 3),
    "gateways_at_knee": mode,
    "goodput_at_1x_rps": round(runs[0]["goodput_rps"]),
    "goodput_at_3x_rps": round(runs[1]["goodput_rps"]),
    "goodput_at_10x_rps": round(runs[2]["goodput_rps"]),
    "offered_at_3x_rps": 3 * knee,
    "achieved_at_3x_rps": round(runs[1]["achieved_rps"]),
    "offered_at_10x_rps": 10 * knee,
    "achieved_at_10x_rps": round(runs[2]["achieved_rps"]),
    "timeouts": sum(r["timeouts"] for r in runs),
    "duplicates": sum(r.get("duplicates", 0) for r in runs),
    "inflight_after": status.get("inflight_requests"),
    "slow_consumer_events": status.get("intake", {}).get("slow_consumer_events"),
    "held_after": status["held_requests"],
}))
EOF
