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

.PHONY: setup run test repro viz bench clean-data

$(BIN)/.installed: pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	@touch $@

setup: $(BIN)/.installed

run: setup
	$(BIN)/kedro run --pipelines=sapo_full

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

repro: setup
	$(BIN)/dvc repro

viz: setup
	$(BIN)/kedro viz run --autoreload

bench: setup
	$(BIN)/python bench/ingest/run.py

clean-data:
	find data -mindepth 2 ! -name .gitkeep -delete
