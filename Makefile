# yc-fm-functions: every target creates .venv with pinned dependencies when it is missing or stale.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)
CHECKOV_VENV := .checkov-venv
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(shell sha1sum requirements-checkov.txt | cut -c1-12)
# The agent clients /v1/responses is tested with that are npm packages (tests/integration/test_node_clients.py)
NODE_CLIENTS := @openai/codex@0.169.0 ai@6.0.333 @ai-sdk/openai@3.0.141 zod@4.6.7
NODE_STAMP := .node-clients/.installed-$(shell echo $(NODE_CLIENTS) | sha1sum | cut -c1-12)
TF := terraform -chdir=terraform
FN ?= completion
EVENT ?= events/http-v01-completion.json
MUTATE ?=

.DEFAULT_GOAL := help
.PHONY: help venv run test test-unit test-integration test-terraform mutate invoke bench fuzz lint fmt clean package openapi validate plan deploy jobs-table destroy api-key keys

help: ## List targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP) ## Create .venv and install pinned dependencies

$(CHECKOV_STAMP): requirements-checkov.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	@$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	@rm -f $(CHECKOV_VENV)/.installed-* && touch $@

$(NODE_STAMP):
	@command -v npm >/dev/null || { echo "npm is needed for the Codex CLI and AI SDK tests (tests/integration/test_node_clients.py)"; exit 1; }
	@rm -rf .node-clients && npm install --silent --no-audit --no-fund --prefix .node-clients $(NODE_CLIENTS)
	@touch $@

run: $(STAMP) ## Start the local stack (FM emulator, moto, queue triggers, poller, gateway) on 127.0.0.1:8080
	$(PY) -m local.stack

test: $(STAMP) $(CHECKOV_STAMP) $(NODE_STAMP) ## Lint, then run the whole test suite (Terraform checks, checkov, a bounded fuzz run, Codex CLI and the AI SDK)
	$(PY) -m ruff check .
	$(PY) -m pytest -n auto --dist loadgroup

test-terraform: $(STAMP) $(CHECKOV_STAMP) ## Terraform checks only: fmt, schema, wiring, spec drift, packages, checkov
	$(PY) -m pytest tests/terraform

test-unit: $(STAMP) ## Unit tests only (no sockets)
	$(PY) -m pytest tests/unit

test-integration: $(STAMP) ## Integration tests (real HTTP on loopback)
	$(PY) -m pytest tests/integration

mutate: $(STAMP) ## Mutation testing (mutmut), one module at a time against its own tests; slow, not in `make test`. MUTATE=shared/client.py for one
	nice -n 15 $(PY) -m tests.mutation $(MUTATE)

invoke: $(STAMP) ## Invoke a handler with an event file: make invoke FN=completion EVENT=events/...json
	$(PY) -m local.invoke $(FN) $(EVENT)

fuzz: $(STAMP) ## schemathesis against the local stack with the generated spec, every check: make fuzz [EXAMPLES=100] [SEED=]
	$(PY) -m local.fuzz --max-examples $(or $(EXAMPLES),100) $(if $(SEED),--seed $(SEED))

bench: $(STAMP) ## Cold-import and per-request overhead benchmarks (installs the SDK into .bench-venv)
	$(PY) -m bench.run

package: ## Build one reproducible zip per function into dist/ (standard library only: any python3 >= 3.9, no .venv)
	$(PYTHON) -m deploy.package

openapi: $(STAMP) ## Regenerate terraform/openapi.yaml.tftpl from the route table and models
	$(PY) -m deploy.openapi

validate: ## terraform init -backend=false && terraform validate (needs network for the provider)
	$(TF) init -backend=false -input=false && $(TF) validate

plan: package ## terraform plan (needs terraform/terraform.tfvars and YC_TOKEN or a key file)
	$(TF) init -input=false && $(TF) plan

deploy: package ## Package, then terraform init + apply (apply also creates the jobs table, see jobs-table)
	$(TF) init -input=false && $(TF) apply

jobs-table: ## (Re)create the deployed jobs document table and its TTL (idempotent; apply does it once)
	DOCAPI_ENDPOINT="$$($(TF) output -raw jobs_document_api_endpoint)" JOBS_TABLE="$$($(TF) output -raw jobs_table)" \
	  $(PYTHON) -m deploy.jobs_table

destroy: ## terraform destroy: remove everything the bundle created
	$(TF) destroy

api-key: ## Make a caller key: with FM_URL and FM_ADMIN_KEY set, stored through the admin API; else the key and its tfvars line (a configured key)
	@if [ -n "$$FM_URL" ] && [ -n "$$FM_ADMIN_KEY" ]; then $(PYTHON) -m deploy.keys create $(or $(NAME),caller); \
	else $(PYTHON) -m deploy.api_key $(or $(NAME),caller); fi

keys: ## Stored caller keys through the admin API: make keys ARGS="list" (create, show, update, rotate, revoke; FM_URL, FM_ADMIN_KEY)
	@$(PYTHON) -m deploy.keys $(ARGS)

lint: $(STAMP) ## ruff check
	$(PY) -m ruff check .

fmt: $(STAMP) ## ruff format + autofix
	$(PY) -m ruff check --fix . && $(PY) -m ruff format .

clean: ## Remove the virtualenvs and caches
	rm -rf $(VENV) $(CHECKOV_VENV) .node-clients .bench-venv .pytest_cache .ruff_cache .mutmut dist
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
