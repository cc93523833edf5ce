#!/usr/bin/env bash
# Installs libtorch 2.13.0 (PyPI `torch==2.13.0`, the only libtorch source here; see
# DESIGN.md §7) into a venv at ~/.cache/baton/torch-venv unless that venv already
# has exactly that version, and prints the venv's python path. The worker's torch
# build (`make torch`) links against this venv's torch/lib with an rpath, so
# `baton-worker` runs without LD_LIBRARY_PATH. Idempotent; ~4.7 GB on first run.
set -euo pipefail
want="2.13.0"
cache="${BATON_CACHE:-$HOME/.cache/baton}"
venv="$cache/torch-venv"
py="$venv/bin/python"
installed() { "$py" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null || true; }
if [ -x "$py" ] && [ "$(installed)" = "$want" ]; then echo "$py"; exit 0; fi
mkdir -p "$cache"
[ -x "$py" ] || python3 -m venv "$venv" >&2
have="$(installed)"
if [ -n "$have" ]; then echo "libtorch.sh: $venv has torch $have, want $want; reinstalling" >&2; fi
"$venv/bin/pip" install --disable-pip-version-check --progress-bar off \
  "torch==$want" >&2 || { echo "libtorch.sh: pip install torch==$want failed (see above)" >&2; exit 1; }
have="$(installed)"
if [ "$have" != "$want" ]; then echo "libtorch.sh: after install $venv has torch '$have', want $want" >&2; exit 1; fi
echo "$py"
