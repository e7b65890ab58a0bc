# The two set-up commands of the README:
#   make run    creates .venv if needed and runs `kedro run --pipelines=sapo_full` (embedded default)
#   make test   creates .venv if needed and runs the whole test suite
# pip with constraints.txt pins torch==2.13.0, the CPU wheel (no multi-GB CUDA download).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

export KEDRO_DISABLE_TELEMETRY := 1
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup browser run test lint repro viz viz-shots bench clean-data

$(BIN)/.installed: pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	@touch $@

setup: $(BIN)/.installed

run: setup
	$(BIN)/kedro run --pipelines=sapo_full

# Debian's Chromium for the kedro-viz screenshot test (best effort: the test skips without it).
browser:
	@command -v chromium >/dev/null 2>&1 || \
	  ( [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null ) || \
	  echo "Chromium not installed: the kedro-viz screenshot test will skip"

test: setup browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tests bench

repro: setup
	$(BIN)/dvc repro

viz: setup
	$(BIN)/kedro viz run --autoreload

# Readable screenshots of the lineage (tour dismissed, names legible) into docs/viz/
viz-shots: setup browser
	$(BIN)/kedro viz build --include-hooks
	$(BIN)/python -m sapo_pipeline.viz_shots build --out docs/viz

bench: setup
	$(BIN)/python bench/ingest/run.py
	$(BIN)/python bench/sft/run.py
	$(BIN)/python bench/decoding/run.py
	$(BIN)/python bench/rl/run.py

clean-data:
	find data -mindepth 2 ! -name .gitkeep -delete
