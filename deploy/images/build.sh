#!/usr/bin/env bash
# Builds Baton's container images without a registry: every image is `FROM scratch` (or the base
# given by BATON_IMAGE_BASE, e.g. debian:bookworm-slim, elsewhere) plus a binary and exactly the
# shared libraries `ldd` lists for it, with the dynamic loader.
#
#   baton/nats:local          static nats-server (deploy/setup/nats-server.sh); 4222, 8222 monitoring
#   baton/scheduler:local     /baton: `scheduler` by default, also `loadgen`, `status`, `plan`, …
#   baton/worker:local        /baton-worker with the emulated backend
#   baton/worker-torch:local  /baton-worker with libtorch, only when ~/.cache/baton/torch-venv exists
#                             (deploy/setup/libtorch.sh; force with BATON_IMAGES_TORCH=1, skip with 0)
#
# Environment: BATON_IMAGE_BASE (default scratch), BATON_IMAGE_TAG (default local),
# BATON_IMAGES_TORCH, BATON_IMAGE_STRIP=0 (keep line tables in the binaries), CARGO_TARGET_DIR.
#
# Idempotent: builds the release binaries (cargo is a no-op when they are current), stages each
# image's context under $CARGO_TARGET_DIR/images/, and labels the image with a hash of that context
# (`baton.context`). An image whose label matches is kept; any change to a binary, a library, a
# Dockerfile or the base rebuilds it, so tests never run a stale image.
#
# Usage: deploy/images/build.sh [nats] [scheduler] [worker] [worker-torch]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
cache="${BATON_CACHE:-$HOME/.cache/baton}"
torch_venv="${BATON_TORCH_VENV:-$cache/torch-venv}"
base="${BATON_IMAGE_BASE:-scratch}"
tag="${BATON_IMAGE_TAG:-local}"
stage_root="$CARGO_TARGET_DIR/images"

log() { echo "images: $*" >&2; }
die() { log "error: $*"; exit 1; }

command -v docker >/dev/null || die "the docker CLI is not installed"
docker info >/dev/null 2>&1 || die "no Docker engine reachable (docker info failed): start Docker, or check DOCKER_HOST"
command -v ldd >/dev/null || die "ldd not found (Debian package libc-bin)"

# BuildKit needs the buildx plugin with a current CLI; without it use the classic builder.
if [ -z "${DOCKER_BUILDKIT:-}" ] && ! docker buildx version >/dev/null 2>&1; then
  export DOCKER_BUILDKIT=0
fi

wanted=("$@")
if [ ${#wanted[@]} -eq 0 ]; then
  wanted=(nats scheduler worker)
  case "${BATON_IMAGES_TORCH:-auto}" in
    1) wanted+=(worker-torch) ;;
    0) ;;
    *) if [ -d "$torch_venv" ]; then wanted+=(worker-torch); fi ;;
  esac
fi
for w in "${wanted[@]}"; do
  case "$w" in
    nats|scheduler|worker|worker-torch) ;;
    *) die "unknown image \`$w\`; usage: deploy/images/build.sh [nats] [scheduler] [worker] [worker-torch]" ;;
  esac
done
want() { local w; for w in "${wanted[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1; }

# Copies `src` to `dst`, as a hard link when possible (libtorch is gigabytes) and keeping its mtime.
place() {
  local src dst
  src=$(readlink -f "$1") dst=$2
  mkdir -p "$(dirname "$dst")"
  ln -f "$src" "$dst" 2>/dev/null || cp -p "$src" "$dst"
}

# Drops the release profile's line tables from the staged copy of a Rust binary (55 MB → 13 MB
# for `baton`; backtraces keep function names). BATON_IMAGE_STRIP=0 keeps them.
strip_debug() {
  if [ "${BATON_IMAGE_STRIP:-1}" = 1 ] && command -v strip >/dev/null; then
    strip --strip-debug "$1"
  fi
}

# stage_binary BIN CTX NAME: puts BIN at CTX/rootfs/NAME and every library `ldd BIN` resolves under
# CTX/rootfs: system libraries and the loader at their own paths, others (libtorch and the CUDA
# libraries of its wheel, found through rpaths into a venv) under /usr/local/lib/baton by soname,
# which the image puts on LD_LIBRARY_PATH. Fails on a library ldd cannot find.
stage_binary() {
  local bin=$1 ctx=$2 name=$3 out line lib soname
  mkdir -p "$ctx/rootfs"
  cp -p "$(readlink -f "$bin")" "$ctx/rootfs/$name"
  if ! out=$(ldd "$bin" 2>&1); then
    case "$out" in
      *"not a dynamic executable"*|*"statically linked"*) return 0 ;;
      *) die "ldd $bin failed: $out" ;;
    esac
  fi
  if grep -q "not found" <<<"$out"; then die "$bin needs libraries ldd cannot find:"$'\n'"$out"; fi
  while IFS= read -r line; do
    case "$line" in
      *"=> /"*) lib=${line#*=> }; lib=${lib%% (*} ;;   # libfoo.so.1 => /path/libfoo.so.1 (0x…)
      *"/"*) lib=${line#"${line%%/*}"}; lib=${lib%% (*} ;; # /lib64/ld-linux-x86-64.so.2 (0x…)
      *) continue ;;                                        # linux-vdso.so.1 (0x…)
    esac
    case "$lib" in
      /lib/*|/lib64/*|/usr/lib/*) place "$lib" "$ctx/rootfs$lib" ;;
      *)
        soname=$(sed -E 's/^[[:space:]]*([^[:space:]]+) =>.*/\1/' <<<"$line")
        place "$lib" "$ctx/rootfs/usr/local/lib/baton/$soname"
        ;;
    esac
  done <<<"$out"
}

# A short hash of a context: contents of every file (size and mtime for files over 64 MiB, which
# are libtorch's and only change when the venv is reinstalled), its Dockerfile and the base.
context_hash() {
  local ctx=$1 f size
  (
    cd "$ctx"
    find . -type f -print0 | sort -z | while IFS= read -r -d '' f; do
      size=$(stat -c %s "$f")
      if [ "$size" -gt 67108864 ]; then
        echo "$f $size $(stat -c %Y "$f")"
      else
        echo "$f $(sha256sum <"$f" | cut -c1-64)"
      fi
    done
    echo "base=$base"
  ) | sha256sum | cut -c1-16
}

# build_image NAME CTX: builds baton/NAME:TAG from CTX (which holds its Dockerfile) unless an image
# with the same context hash is present.
build_image() {
  local name=$1 ctx=$2 image="baton/$1:$tag" hash have out old
  hash=$(context_hash "$ctx")
  have=$(docker image inspect -f '{{ index .Config.Labels "baton.context" }}' "$image" 2>/dev/null || true)
  old=$(docker image inspect -f '{{ .Id }}' "$image" 2>/dev/null || true)
  if [ "$have" = "$hash" ]; then
    log "$image is current ($hash)"
  else
    log "building $image (context $hash, base $base; was ${have:-absent})"
    # Quiet unless it fails (the classic builder also prints a deprecation notice).
    if ! out=$(docker build -q --build-arg "BASE=$base" --label "baton.context=$hash" \
      --label "org.opencontainers.image.revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
      -t "$image" "$ctx" 2>&1); then
      echo "$out" >&2
      die "docker build of $image failed"
    fi
    # The previous build is now untagged: remove it (the torch worker's is gigabytes), unless a
    # container still uses it.
    if [ -n "$old" ] && [ "$(docker image inspect -f '{{ .Id }}' "$image")" != "$old" ]; then
      docker rmi "$old" >/dev/null 2>&1 || true
    fi
  fi
  built+=("$image")
}

fresh_context() {
  local ctx="$stage_root/$1"
  rm -rf "$ctx"
  mkdir -p "$ctx/rootfs"
  cp "deploy/images/$1.Dockerfile" "$ctx/Dockerfile"
  echo "$ctx"
}

# TLS roots for NATS over TLS (see docs/settings.md); the only file besides binaries and libraries.
stage_certs() {
  local certs=/etc/ssl/certs/ca-certificates.crt
  if [ -f "$certs" ]; then mkdir -p "$1/rootfs/etc/ssl/certs"; cp "$certs" "$1/rootfs/etc/ssl/certs/"; fi
}

built=()
release="$CARGO_TARGET_DIR/release"

# The torch worker first: both builds write target/release/baton-worker, and the emulated build
# below must be the one left there.
if want worker-torch; then
  [ -d "$torch_venv" ] || die "worker-torch needs libtorch: run deploy/setup/libtorch.sh (make torch-setup)"
  log "building the torch worker (cargo build --release --features torch)"
  LIBTORCH_USE_PYTORCH=1 VIRTUAL_ENV="$torch_venv" PATH="$torch_venv/bin:$PATH" \
    cargo build --release -q -p baton-worker --features torch
  ctx=$(fresh_context worker-torch)
  stage_binary "$release/baton-worker" "$ctx" baton-worker
  strip_debug "$ctx/rootfs/baton-worker"
  ldd "$ctx/rootfs/baton-worker" | grep -q libtorch || die "$release/baton-worker has no libtorch (built concurrently without --features torch?); run again"
  stage_certs "$ctx"
  build_image worker-torch "$ctx"
fi

if want scheduler || want worker; then
  # Another cargo build (with --features torch) may replace target/release/baton-worker between
  # our build and our copy; check what was staged and retry once.
  for attempt in 1 2; do
    log "building the release binaries (cargo build --release -p baton-scheduler -p baton-worker)"
    cargo build --release -q -p baton-scheduler -p baton-worker
    ctx=$(fresh_context worker)
    stage_binary "$release/baton-worker" "$ctx" baton-worker
    strip_debug "$ctx/rootfs/baton-worker"
    if ! ldd "$ctx/rootfs/baton-worker" | grep -q libtorch; then break; fi
    [ "$attempt" = 2 ] && die "$release/baton-worker keeps coming out with libtorch (a concurrent torch build?)"
  done
  stage_certs "$ctx"
  want worker && build_image worker "$ctx"
  if want scheduler; then
    ctx=$(fresh_context scheduler)
    stage_binary "$release/baton" "$ctx" baton
    strip_debug "$ctx/rootfs/baton"
    stage_certs "$ctx"
    build_image scheduler "$ctx"
  fi
fi

if want nats; then
  nats_bin=$(deploy/setup/nats-server.sh)
  ctx=$(fresh_context nats)
  stage_binary "$nats_bin" "$ctx" nats-server
  build_image nats "$ctx"
fi

for image in "${built[@]}"; do
  docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' "$image"
done
