# yc-fm-functions: every target creates .venv with pinned dependencies when it is missing or stale.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)
FN ?= completion
EVENT ?= events/http-v01-completion.json

.DEFAULT_GOAL := help
.PHONY: help venv run test test-unit test-integration invoke bench lint fmt clean

help: ## List targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## Create .venv and install pinned dependencies

run: $(STAMP) ## Start the local stack (FM emulator + gateway) on 127.0.0.1:8080
	$(PY) -m local.stack

test: $(STAMP) ## Lint, then run the whole test suite
	$(PY) -m ruff check .
	$(PY) -m pytest

test-unit: $(STAMP) ## Unit tests only (no sockets)
	$(PY) -m pytest tests/unit

test-integration: $(STAMP) ## Integration tests (real HTTP on loopback)
	$(PY) -m pytest tests/integration

invoke: $(STAMP) ## Invoke a handler with an event file: make invoke FN=completion EVENT=events/...json
	$(PY) -m local.invoke $(FN) $(EVENT)

bench: $(STAMP) ## Cold-import and per-request overhead benchmarks (installs the SDK into .bench-venv)
	$(PY) -m bench.run

lint: $(STAMP) ## ruff check
	$(PY) -m ruff check .

fmt: $(STAMP) ## ruff format + autofix
	$(PY) -m ruff check --fix . && $(PY) -m ruff format .

clean: ## Remove the virtualenvs and caches
	rm -rf $(VENV) .bench-venv .pytest_cache .ruff_cache dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
