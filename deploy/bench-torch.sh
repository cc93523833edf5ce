#!/usr/bin/env bash
# `make bench-torch`: serving efficiency of a libtorch worker through Baton.
#
# In one run on this machine: (1) profile the model with `baton-worker profile`, (2) a direct tch
# loop at batch size B (`baton-worker bench`: one pre-stacked batch, no NATS), (3) the same model
# served through Baton — loadgen → NATS → gateway → dispatcher → worker → reply — with open-loop
# load above the direct loop's throughput, so the worker always has a full batch waiting, (4) the
# direct loop again. Efficiency = images/s answered ok through Baton ÷ the direct loop's images/s.
#
#   deploy/bench-torch.sh [MODEL] [BATCH] [SHAPE] [THREADS]    (default: resnet18 8 3,64,64 2)
set -euo pipefail
cd "$(dirname "$0")/.."

model=${1:-resnet18}
batch=${2:-8}
shape=${3:-3,64,64}
threads=${4:-2}
seconds=${BENCH_SECONDS:-30}

nats_bin=$(deploy/setup/nats-server.sh)
deploy/setup/libtorch.sh >/dev/null
venv="${BATON_CACHE:-$HOME/.cache/baton}/torch-venv"
cargo build --release -q -p baton-scheduler
LIBTORCH_USE_PYTORCH=1 VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" \
  cargo build --release -q -p baton-worker --features torch
bin=${CARGO_TARGET_DIR:-target}/release
out=${CARGO_TARGET_DIR:-target}/bench-torch
mkdir -p "$out"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
url="nats://127.0.0.1:$(free_port)"
pids=()
cleanup() {
  trap - EXIT INT TERM
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill -TERM "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== profile: $model, input $shape f32, $threads threads, b = 1..$batch"
"$bin/baton-worker" profile --model "$model" --max-batch "$batch" --threads "$threads" \
  --input-shape "$shape" --repeats 10 --warmup 2 --out "$out/$model.toml" 2>/dev/null

direct() {
  "$bin/baton-worker" bench --model "$model" --batch "$batch" --threads "$threads" --input-shape "$shape" \
    --seconds "$seconds" --json
}
echo "== direct tch loop, batch $batch, ${seconds} s"
direct | tee "$out/direct-before.json"

"$nats_bin" -a 127.0.0.1 -p "${url##*:}" >"$out/nats.log" 2>&1 &
pids+=($!)
BATON_METRICS__LISTEN=127.0.0.1:0 RUST_LOG=warn "$bin/baton" scheduler --nats "$url" >"$out/scheduler.log" 2>&1 &
pids+=($!)
RUST_LOG=warn "$bin/baton-worker" run --backend torch --nats "$url" --id bench-0 --model "$model=$model" \
  --threads "$threads" --profile "$model=$out/$model.toml" --input-shape "$shape" --input-dtype f32 \
  >"$out/worker.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do
  "$bin/baton" status --nats "$url" --json 2>/dev/null | grep -q '"bench-0"' && break
  sleep 0.1
done

rate=$(python3 -c "import json; print(round(json.load(open('$out/direct-before.json'))['images_per_s'] * 1.15, 1))")
# Budget: several full batches, so a request that waits behind the running batch still fits.
slo=$(python3 -c "import json; print(max(250, round(json.load(open('$out/direct-before.json'))['batch_ms'] * 4)))")
echo "== through Baton: open-loop $rate req/s (1.15 × direct), SLO $slo ms, ${seconds} s"
"$bin/baton" loadgen --nats "$url" --model "$model" --rate "$rate" --duration "$seconds" \
  --shape "$shape" --dtype f32 --slo-ms "$slo" --json | tee "$out/baton.json"

# The worker leaves the cores to the direct loop again.
kill -TERM "${pids[2]}"; wait "${pids[2]}" 2>/dev/null || true; unset 'pids[2]'
echo "== direct tch loop again"
direct | tee "$out/direct-after.json"

python3 - "$out" "$batch" <<'EOF'
import json, sys
out, batch = sys.argv[1], int(sys.argv[2])
before = json.load(open(f"{out}/direct-before.json"))
after = json.load(open(f"{out}/direct-after.json"))
baton = json.loads(open(f"{out}/baton.json").read().strip().splitlines()[-1])
direct = (before["images_per_s"] + after["images_per_s"]) / 2
served = baton["ok"] / baton["duration_s"]
print(f"direct tch loop: {before['images_per_s']:.1f} and {after['images_per_s']:.1f} images/s (batch {batch})")
print(f"through Baton:   {served:.1f} images/s ok ({baton['ok']} of {baton['sent']} sent; "
      f"good {baton['good']}, rejected {baton['rejected']}, timeouts {baton['timeouts']}; p50 {baton['p50_ms']:.0f} ms)")
print(f"serving efficiency: {served / direct:.1%}")
EOF
