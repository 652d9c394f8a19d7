# The two commands a newcomer needs:  make demo  (the main job)   make test  (everything CI runs)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test install system-deps dev-up dev-down lint typecheck unit integration bench clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(STAMP)  ## create .venv and install the package with its dev tools

system-deps:  ## install the PostgreSQL server, Maven, promtool and docker-compose from Debian's packages when missing
	@bash .ci/system-deps

dev-up: install system-deps  ## start the local Kafka (with its SASL_SSL listener) + PostgreSQL (idempotent)
	$(BIN)/stream-logger dev up --reuse --secure

dev-down:  ## stop the local Kafka + PostgreSQL, keeping their data
	$(BIN)/stream-logger dev down

lint: install  ## ruff (lint and format) and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

unit: install  ## the tests that need no services
	$(BIN)/pytest -q tests/unit

integration: dev-up  ## the tests against the real Kafka and PostgreSQL
	$(BIN)/pytest -q tests/integration

test: dev-up lint  ## everything: set-up, lint, type check, unit and integration tests
	$(BIN)/pytest -q

demo: dev-up  ## the main job: sample traffic through Kafka into the datamart
	$(BIN)/stream-logger demo

bench: dev-up  ## the benchmarks (figures go to benchmarks/RESULTS.md by hand)
	$(BIN)/python -m benchmarks.validate
	$(BIN)/python -m benchmarks.rows
	$(BIN)/python -m benchmarks.emitter
	$(BIN)/python -m benchmarks.ingest
	$(BIN)/python -m benchmarks.replay

clean:  ## remove the virtualenv (the dev stack's data stays in .stream-logger/)
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
