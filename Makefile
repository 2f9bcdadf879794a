# The documented interface: `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
MODEL ?= vgae
DATASET ?= cora
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run test test-fast smoke clean

help:  ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# torch is installed first from its pinned build, so that no dependency range pulls another one.
$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed  ## create .venv (torch first, then the toolkit with its test extras)

run: install  ## train MODEL (vgae) on DATASET (cora; sbm needs no files), extra Hydra overrides in ARGS
	$(BIN)/python -m vgae_toolkit model=$(MODEL) dataset=$(DATASET) $(ARGS)

test: install  ## the whole test suite (real-data tests run when VGAE_TOOLKIT_DATA is set)
	$(BIN)/python -m pytest -q

test-fast: install  ## the suite without the slow subprocess tests
	$(BIN)/python -m pytest -q -m "not slow"

smoke: install  ## a 20-epoch run on the synthetic graph
	$(BIN)/python -m vgae_toolkit dataset=sbm trainer.epochs=20

clean:  ## remove caches (keeps .venv and outputs/)
	rm -rf .pytest_cache build *.egg-info
	find . -name __pycache__ -prune -exec rm -rf {} +
