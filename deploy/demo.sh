#!/usr/bin/env bash
# `make demo`: one laptop, one command. Installs nats-server if missing,
# builds, starts nats-server, the scheduler and two emulated workers, sends
# 20 s of load as eight 30 fps camera streams, prints the loadgen's summary
# and the scheduler's status, and stops everything (also on Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."

nats_bin=$(deploy/setup/nats-server.sh)
cargo build --release -q -p baton-scheduler -p baton-worker
bin=${CARGO_TARGET_DIR:-target}/release
logs=${CARGO_TARGET_DIR:-target}/demo
mkdir -p "$logs"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nats_port=$(free_port)
metrics_port=$(free_port)
url="nats://127.0.0.1:$nats_port"

pids=()
cleanup() {
  trap - EXIT INT TERM
  # Workers first (they drain and say goodbye), then the scheduler, then NATS.
  for pid in "${pids[@]:2}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]:2}"; do wait "$pid" 2>/dev/null || true; done
  for pid in "${pids[1]:-}" "${pids[0]:-}"; do
    [ -n "$pid" ] || continue
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'echo; echo "interrupted: stopping everything"; exit 130' INT TERM

"$nats_bin" -a 127.0.0.1 -p "$nats_port" >"$logs/nats.log" 2>&1 &
pids+=($!)
BATON_METRICS__LISTEN="127.0.0.1:$metrics_port" "$bin/baton" scheduler --nats "$url" >"$logs/scheduler.log" 2>&1 &
pids+=($!)
# A ResNet-50-like model on each worker: l(b) = 1.082·b + 5.204 ms.
for w in gpu-0 gpu-1; do
  "$bin/baton-worker" run --nats "$url" --id "$w" --models resnet50 --profile 'sleep#1082,5204,0,0' \
    --input-shape 3,64,64 --input-dtype u8 >"$logs/$w.log" 2>&1 &
  pids+=($!)
done

for _ in $(seq 100); do
  if "$bin/baton" status --nats "$url" --json 2>/dev/null | grep -q '"gpu-1"'; then break; fi
  sleep 0.1
done
echo "nats-server on $url, scheduler metrics on http://127.0.0.1:$metrics_port/metrics, logs in $logs/"
"$bin/baton" status --nats "$url"
echo
echo "8 camera streams × 30 fps for 20 s, 100 ms SLO, 12 KiB frames:"
"$bin/baton" loadgen --nats "$url" --model resnet50 --streams 8 --fps 30 --duration 20 \
  --shape 3,64,64 --dtype u8 --slo-ms 100
echo
"$bin/baton" status --nats "$url"
