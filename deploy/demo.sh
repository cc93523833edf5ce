#!/usr/bin/env bash
# `make demo`: one laptop, one command. Installs nats-server (and libtorch, for
# the default torch backend) if missing, builds, starts nats-server, the
# scheduler and two workers, sends 20 s of load as camera streams, prints the
# loadgen's summary and the scheduler's status, and stops everything (also on
# Ctrl-C).
#
#   deploy/demo.sh                      # real inference: resnet18 on libtorch, CPU
#   deploy/demo.sh --backend emulated   # emulated workers (sleep L(b) from a profile)
set -euo pipefail
cd "$(dirname "$0")/.."

backend=torch
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) backend=${2:-}; shift 2 ;;
    --backend=*) backend=${1#--backend=}; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "demo.sh: unknown argument \`$1\`; usage: deploy/demo.sh [--backend torch|emulated]" >&2; exit 2 ;;
  esac
done
case "$backend" in torch|emulated) ;; *) echo "demo.sh: --backend must be torch or emulated, not \`$backend\`" >&2; exit 2 ;; esac

nats_bin=$(deploy/setup/nats-server.sh)
if [ "$backend" = torch ]; then
  echo "setting up libtorch (once; torch==2.13.0 from PyPI into ~/.cache/baton/torch-venv)..."
  deploy/setup/libtorch.sh >/dev/null
  venv="${BATON_CACHE:-$HOME/.cache/baton}/torch-venv"
  cargo build --release -q -p baton-scheduler
  LIBTORCH_USE_PYTORCH=1 VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" \
    cargo build --release -q -p baton-worker --features torch
else
  cargo build --release -q -p baton-scheduler -p baton-worker
fi
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
if [ "$backend" = torch ]; then
  # resnet18 with seeded random weights on each worker, one libtorch thread each (two
  # workers on this laptop's cores stand for two devices). Each measures its profile L(b)
  # at start-up and announces it; the scheduler corrects it online from what batches take.
  model=resnet18 shape=3,64,64 dtype=f32 streams=8 fps=8 slo=250
  for w in cpu-0 cpu-1; do
    "$bin/baton-worker" run --backend torch --nats "$url" --id "$w" --model "$model=$model" --threads 1 \
      --max-batch 8 --input-shape "$shape" --input-dtype "$dtype" >"$logs/$w.log" 2>&1 &
    pids+=($!)
  done
  workers=(cpu-0 cpu-1)
else
  # A ResNet-50-like model on each worker: l(b) = 1.082·b + 5.204 ms.
  model=resnet50 shape=3,64,64 dtype=u8 streams=8 fps=30 slo=100
  for w in gpu-0 gpu-1; do
    "$bin/baton-worker" run --nats "$url" --id "$w" --models "$model" --profile 'sleep#1082,5204,0,0' \
      --input-shape "$shape" --input-dtype "$dtype" >"$logs/$w.log" 2>&1 &
    pids+=($!)
  done
  workers=(gpu-0 gpu-1)
fi

# Up once both workers have registered (torch workers load and profile first: a few seconds).
for _ in $(seq 1200); do
  up=0
  for w in "${workers[@]}"; do
    "$bin/baton" status --nats "$url" --json 2>/dev/null | grep -q "\"$w\"" && up=$((up + 1))
  done
  [ "$up" = "${#workers[@]}" ] && break
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "a process exited during start-up; its log is in $logs/" >&2; tail -n 5 "$logs"/*.log >&2; exit 1; }
  done
  sleep 0.1
done
echo "nats-server on $url, scheduler metrics on http://127.0.0.1:$metrics_port/metrics, logs in $logs/"
"$bin/baton" status --nats "$url"
echo
echo "$streams camera streams × $fps fps for 20 s of $model ($backend backend), $slo ms SLO, $dtype frames of $shape:"
"$bin/baton" loadgen --nats "$url" --model "$model" --streams "$streams" --fps "$fps" --duration 20 \
  --shape "$shape" --dtype "$dtype" --slo-ms "$slo"
echo
"$bin/baton" status --nats "$url"
