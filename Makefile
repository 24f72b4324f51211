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
# LOCKED=1 installs the image's exact dependencies (requirements/image.lock, hashes checked)
# before the project and its dev tools: what CI does.
LOCKED ?=
LOCK := requirements/image.lock

.PHONY: help install run test lint format compile check-compiled benchmark lock image submit schedule upload run-template clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "; printf "Usage: make <target> [VAR=value]\n\nTargets:\n"} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@printf "\nVariables: CONFIG=$(CONFIG) ROUNDS=$(ROUNDS) STRATEGY=<random|least_confidence|...> VERTEX_CONFIG=$(VERTEX_CONFIG)\n"

$(STAMP): pyproject.toml
	@echo "Installing labelloop and its dependencies into $(VENV) (about 2 minutes, once)..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(if $(LOCKED),$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements/build.lock,)
	$(if $(LOCKED),$(BIN)/python -m pip install --quiet --require-hashes --no-deps --no-build-isolation -r $(LOCK),)
	$(BIN)/python -m pip install --progress-bar on -e '.[dev]'
	$(if $(LOCKED),$(BIN)/python -m pip check,)
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

lock: $(STAMP) ## Sync requirements/image.lock (pinned, hashed) with pyproject.toml (UPGRADE=1: newest in range)
	$(BIN)/uv pip compile requirements/build.in --universal --python-version 3.11 \
	  --generate-hashes --no-header --quiet $(if $(UPGRADE),--upgrade,) -o requirements/build.lock
	$(BIN)/uv pip compile pyproject.toml requirements/build.in -c requirements/build.lock \
	  --universal --python-version 3.11 --generate-hashes --no-header --quiet \
	  $(if $(UPGRADE),--upgrade,) -o $(LOCK)
	$(BIN)/python -m pipelines compile --out-dir compiled

image: $(STAMP) ## Build and push the component image with Cloud Build; record its digest (VERTEX_CONFIG=...)
	$(BIN)/python -m pipelines image --config $(VERTEX_CONFIG)

benchmark: $(STAMP) ## Run every benchmark in benchmarks/ (prints ratios against an in-run baseline)
	@for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

submit: $(STAMP) ## Submit a one-off run with the image `make image` pushed (VERTEX_CONFIG=...)
	$(BIN)/python -m pipelines submit --config $(VERTEX_CONFIG)

schedule: $(STAMP) ## Create or update the schedule named in VERTEX_CONFIG
	$(BIN)/python -m pipelines schedule --config $(VERTEX_CONFIG)

upload: $(STAMP) ## Upload compiled/ to the Artifact Registry KFP repository, tagged v<version>-g<commit>
	$(BIN)/python -m pipelines upload --config $(VERTEX_CONFIG)

run-template: $(STAMP) ## Launch a registry template version (VERSION=v<version>-g<commit>; default: last upload)
	$(BIN)/python -m pipelines run-template --config $(VERTEX_CONFIG) $(if $(VERSION),--version $(VERSION),)

clean: ## Remove local run outputs and caches (keeps .venv)
	rm -rf runs local_outputs .pytest_cache .mypy_cache .ruff_cache
