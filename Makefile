# Two entry points for a fresh machine (see README):
#   make serve  -- set up .venv, build the embedded tiny model, run the app from serve_config.yaml
#   make test   -- set up .venv (and Debian's chromium if missing), run ruff, mypy and the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The chat page's browser tests drive Debian's chromium (Playwright's own browser download is not used).
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
# The CPU wheel of torch that lies on this project's dev/CI machines; an unpinned torch pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
export RAY_USAGE_STATS_ENABLED := 0
export HF_HUB_OFFLINE := 1

.PHONY: setup browser serve test lint typecheck unit bench-cpu bench-rag bench-serving bench-path-cpu bench-sealing bench-structured bench-experiments bench-gpu bench-gpu-engine load-test tiny-model clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[server,dev]"
	touch $(STAMP)

# Installed once, only where it is missing (make test needs it; apt-get runs as root, or through sudo).
browser: $(CHROMIUM)

$(CHROMIUM):
	$(SUDO) apt-get update -q
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

tiny-model: setup
	$(BIN)/securechat build-tiny-model

# Ray starts in Serve's throughput mode (gRPC between its processes, no thread hops): deployments/serve_env.py.
serve: tiny-model
	env $$($(BIN)/python -m deployments.serve_env) $(BIN)/serve run serve_config.yaml

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -q -m "not ray"

test: lint typecheck browser
	$(BIN)/pytest -q

load-test: tiny-model
	$(BIN)/python -m benchmarks.load_test --clients 200 --duration-s 60 --out benchmarks/results/load-test.json

bench-experiments: tiny-model
	$(BIN)/python -m benchmarks.experiments all --profile cpu

bench-gpu: setup
	$(BIN)/python -m benchmarks.experiments all --profile gpu --random-weights

# One CUDA GPU, ~8 min on an H200: the batched engine's greedy tokens vs transformers, then its speed at 1/8/64
# streams beside the hf engine. Runs with the host's own python (torch + CUDA, transformers, triton; no venv, no
# install, no download); results in $OUT when set, else benchmarks/results/gpu-engine. Dry run: add --smoke.
bench-gpu-engine:
	$(PYTHON) -m benchmarks.gpu_engine --out-dir "$${OUT:-benchmarks/results/gpu-engine}"

bench-cpu: tiny-model
	$(BIN)/python -m benchmarks.bench_engines_cpu --out benchmarks/results/cpu-engines.json

bench-rag: tiny-model
	$(BIN)/python -m benchmarks.bench_rag --out benchmarks/results/rag/cpu.json

bench-serving: tiny-model
	$(BIN)/python -m benchmarks.bench_serving --out benchmarks/results/serving/latest.json

# CPU per request of each process on the serving path at 16 streams, with py-spy's top frames (issue #25).
bench-path-cpu: tiny-model
	$(BIN)/python -m benchmarks.bench_path_cpu --profile-s 10 --out benchmarks/results/serving/path-cpu.json

bench-sealing: tiny-model
	$(BIN)/python -m benchmarks.bench_sealing --out benchmarks/results/sealing/cpu.json

bench-structured: tiny-model
	$(BIN)/python -m benchmarks.bench_structured --rounds 7 --out benchmarks/results/structured/cpu.json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
