# labelloop: `make help` lists every target. `make run` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
CONFIG ?= configs/local.yaml
ROUNDS ?= 1
STRATEGY ?=
VERTEX_CONFIG ?= configs/vertex.yaml
PYTEST_ARGS ?=

.PHONY: help install run test lint format compile check-compiled benchmark submit schedule upload run-template clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "; printf "Usage: make <target> [VAR=value]\n\nTargets:\n"} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@printf "\nVariables: CONFIG=$(CONFIG) ROUNDS=$(ROUNDS) STRATEGY=<random|least_confidence|...> VERTEX_CONFIG=$(VERTEX_CONFIG)\n"

$(STAMP): pyproject.toml
	@echo "Installing labelloop and its dependencies into $(VENV) (about 2 minutes, once)..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar on --upgrade pip
	$(BIN)/python -m pip install --progress-bar on -e '.[dev]'
	@touch $(STAMP)
	@echo "Installed. Commands: make run, make test, or .venv/bin/labelloop --help"

install: $(STAMP) ## Create .venv and install labelloop (editable) with the dev extras

run: $(STAMP) ## Run the pipeline locally with kfp.local on the sample data (ROUNDS=N, STRATEGY=name)
	$(BIN)/python -m pipelines run-local --config $(CONFIG) --rounds $(ROUNDS) $(if $(STRATEGY),--strategy $(STRATEGY),)

test: $(STAMP) ## Run lint, type checks and the whole test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP) ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

compile: $(STAMP) ## Compile the pipelines to compiled/*.json
	$(BIN)/python -m pipelines compile --out-dir compiled

benchmark: $(STAMP) ## Run every benchmark in benchmarks/ (prints ratios against an in-run baseline)
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

submit: $(STAMP) ## Submit a one-off run to Vertex AI Pipelines (VERTEX_CONFIG=...)
	$(BIN)/python -m pipelines submit --config $(VERTEX_CONFIG)

schedule: $(STAMP) ## Create or update the schedule named in VERTEX_CONFIG
	$(BIN)/python -m pipelines schedule --config $(VERTEX_CONFIG)

upload: $(STAMP) ## Upload the compiled template to the Artifact Registry KFP repository
	$(BIN)/python -m pipelines upload --config $(VERTEX_CONFIG)

run-template: $(STAMP) ## Launch a run from the registry template (TEMPLATE=https://...-kfp.pkg.dev/...)
	$(BIN)/python -m pipelines run-template --config $(VERTEX_CONFIG) $(if $(TEMPLATE),--template $(TEMPLATE),)

clean: ## Remove local run outputs and caches (keeps .venv)
	rm -rf runs local_outputs .pytest_cache .mypy_cache .ruff_cache
