# Baton's two commands: `make demo` and `make test`. Both do all set-up they
# need on a fresh machine (see scripts under .ci/ and deploy/).

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: demo test setup build fmt lint unit bench-core

## Run the demo: NATS, the scheduler, two torch workers (resnet18 on the CPU) and 20 s of camera-stream
## load. `make demo BACKEND=emulated` uses emulated workers instead.
demo: setup
	deploy/demo.sh $(if $(BACKEND),--backend $(BACKEND))

## Run every check CI runs: formatting, lints, the container images the tests run, all tests
## (the container tests in integration-tests/ among them).
test: setup fmt lint test-images unit test-torch

setup:
	@command -v $(CARGO) >/dev/null || { echo "cargo not found: install Rust with rustup (https://rustup.rs)"; exit 1; }
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy
	@deploy/setup/nats-server.sh >/dev/null

build: setup
	$(CARGO) build --release --workspace

## Container images built locally, FROM scratch (deploy/images/build.sh): baton/nats, baton/scheduler,
## baton/worker, and baton/worker-torch when libtorch is set up. Each is skipped when current.
.PHONY: images test-images
images: setup
	deploy/images/build.sh

## The images the container tests run (not the torch worker's). BATON_SKIP_DOCKER_TESTS=1 skips
## them where there is no Docker engine (the tests then say they were skipped).
test-images: setup
	@if [ "$${BATON_SKIP_DOCKER_TESTS:-}" = 1 ]; then \
	  echo "images: skipped (BATON_SKIP_DOCKER_TESTS=1)"; \
	else \
	  deploy/images/build.sh nats scheduler worker; \
	fi

fmt:
	$(CARGO) fmt --all -- --check

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace

## The core benchmark recorded in docs/benchmarks.md.
bench-core: build
	$(CARGO) run --release -q -p baton-scheduler --bin baton -- bench core --gpus 1000 --models 100
	$(CARGO) run --release -q -p baton-scheduler --bin baton -- bench core --gpus 10000 --models 1000 --duration 0.5

SIM_WORKLOADS = resnet-8gpu-poisson resnet-8gpu-gamma multi-model-64gpu symphony-example
SIM_POLICIES = --policy symphony --policy symphony-eager --policy eager --policy triton --policy nexus --policy shepherd
BATON = ./target/release/baton

## The simulator comparisons recorded in docs/benchmarks.md (JSON lines in target/bench-sim/).
bench-sim: build
	mkdir -p target/bench-sim docs/plots
	for w in $(SIM_WORKLOADS); do \
	  for j in "" "--jitter"; do \
	    $(BATON) sim --workload workloads/$$w.yaml $(SIM_POLICIES) $$j --max-goodput --json > target/bench-sim/$$w$$j.max-goodput.jsonl; \
	    $(BATON) sim --workload workloads/$$w.yaml $(SIM_POLICIES) $$j --min-gpus --json > target/bench-sim/$$w$$j.min-gpus.jsonl; \
	  done; \
	  $(BATON) sim --workload workloads/$$w.yaml $(SIM_POLICIES) --jitter-cv 0.05 --max-goodput --json > target/bench-sim/$$w--cv.max-goodput.jsonl; \
	  $(BATON) sim --workload workloads/$$w.yaml $(SIM_POLICIES) --plot docs/plots/$$w.svg; \
	done
	$(BATON) sim --workload workloads/scale-1000gpu.yaml --policy symphony --json > target/bench-sim/scale-1000gpu.jsonl

## libtorch (issue 6): install libtorch 2.13.0 from PyPI into ~/.cache/baton/torch-venv once, then
## build the worker with the `torch` feature against it. The default build never needs libtorch.
TORCH_VENV ?= $(or $(BATON_CACHE),$(HOME)/.cache/baton)/torch-venv
TORCH_ENV = LIBTORCH_USE_PYTORCH=1 VIRTUAL_ENV=$(TORCH_VENV) PATH=$(TORCH_VENV)/bin:$$PATH

.PHONY: torch test-torch torch-setup

torch-setup: setup
	deploy/setup/libtorch.sh >/dev/null

torch: torch-setup
	$(TORCH_ENV) $(CARGO) build --release -p baton-worker --features torch

test-torch: torch-setup
	$(TORCH_ENV) $(CARGO) test -p baton-worker --features torch

## Serving efficiency of a torch worker through Baton vs a direct tch loop (docs/benchmarks.md).
.PHONY: bench-torch
bench-torch: setup
	deploy/bench-torch.sh

## The scheduler with 1,000 and 10,000 emulated workers: registration, idle heartbeat CPU, time to
## declare one dead, re-registration after a scheduler restart (docs/benchmarks.md).
.PHONY: bench-fleet
bench-fleet: setup
	deploy/bench-fleet.sh

## End to end over NATS (docs/benchmarks.md, "Overload without collapse"): the knee, the raw NATS
## ceiling (`baton echo`) and goodput at 3x and 10x the knee; the last line is one JSON object.
.PHONY: bench-e2e
bench-e2e: setup
	deploy/bench-e2e.sh

## The dispatcher alone over NATS (docs/benchmarks.md): `baton scheduler` without its gateway, driven by
## 1,000 emulated workers × 100 models and two emulated gateways; searches the highest rate with timer
## lag p99 ≤ 2 ms, full-batch delay p99 ≤ 10 ms and every request shipped or rejected. JSON lines in
## target/bench-dispatcher.jsonl, the best run last.
.PHONY: bench-dispatcher
bench-dispatcher: setup
	mkdir -p target
	$(CARGO) run --release -q -p baton-scheduler --bin baton -- bench dispatcher --workers 1000 --models 100 --json > target/bench-dispatcher.jsonl
	tail -n 1 target/bench-dispatcher.jsonl
