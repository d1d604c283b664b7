# scimledger - run `make help` for the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help

help: ## show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the service with its dev tools

run: $(STAMP) ## start the service on the embedded PostgreSQL (./var), port 8080
	$(BIN)/scimledger serve

test: $(STAMP) ## run the whole test suite against a real PostgreSQL
	$(BIN)/pytest -q

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP) ## benchmarks (slow; outside the default suite), figures in docs/benchmarks.md
	$(BIN)/pytest -q -m bench -s tests/bench

clean: ## remove the virtualenv and caches (keeps ./var, the embedded database)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

.PHONY: help install run test lint bench clean
