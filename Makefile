# Two commands a newcomer needs (see README): `make serve` and `make test`.
# Each creates .venv and installs the project into it first, so a fresh clone needs only Python 3.11+:
# `serve` only the runtime (pyproject's dependencies), `test` and the checks also the dev tools (the `dev` extra).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.installed-runtime
STAMP := $(VENV)/.installed-dev

.PHONY: serve test lint typecheck unit clean infra infra-lint infra-build infra-check browser constraints dynalite

# Infrastructure checks (infra/template.yaml), offline. The SAM CLI and checkov each live in their
# own virtual environment: installed into .venv they would downgrade boto3 and pydantic.
SAM_CLI_VERSION := 1.170.0
CHECKOV_VERSION := 3.3.30
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
SAM_STAMP := $(SAM_VENV)/.installed-$(SAM_CLI_VERSION)
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
# tests/infra reads the build from here (CALLVAULT_SAM_BUILD_DIR, relative to the repository root).
SAM_BUILD_DIR ?= infra/.aws-sam/build
# No credentials, no network: SAM wants a region, and must not phone home.
INFRA_ENV := AWS_DEFAULT_REGION=us-east-1 SAM_CLI_TELEMETRY=0 SAM_CLI_CONTACT_TELEMETRY=0

$(BIN)/python:
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "CallVault needs Python 3.11 or newer"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# uv installs the runtime in about 17 s from a cold cache where pip takes 60-70 s, and leaves bytecode to
# be compiled on first import (pip's adds ~150 MB); pip installs it if uv cannot (e.g. an index only pip knows).
# Every install takes its versions from constraints.txt, so a fresh clone tests what was tested here.
UV_VERSION := 0.13.9
CONSTRAINTS := constraints.txt
$(RUNTIME_STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet 'uv==$(UV_VERSION)' \
	  && $(BIN)/uv pip install --quiet --python $(BIN)/python -c $(CONSTRAINTS) -e . \
	  || $(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e .
	touch $(RUNTIME_STAMP)

# The dev tools include the runtime, so a venv made for tests also serves.
$(STAMP): pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	touch $(STAMP) $(RUNTIME_STAMP)

# Re-pin: resolve pyproject.toml's ranges afresh in a scratch venv and write what they gave; then `make test`.
constraints:
	rm -rf .venv-constraints
	$(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/python -m pip install --quiet --upgrade pip
	.venv-constraints/bin/python -m pip install --quiet -e '.[dev]'
	{ sed -n '1,2p' $(CONSTRAINTS); .venv-constraints/bin/python -m pip freeze --exclude-editable; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf .venv-constraints

serve: $(RUNTIME_STAMP)
	$(BIN)/callvault serve $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check services tests benchmarks
	$(BIN)/ruff format --check services tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

# The console's browser tests drive Debian's chromium-headless-shell through Playwright (Playwright's
# own browser download needs the internet). Installed here where we can (root and apt); otherwise
# stop with what to do: in CI a missing browser fails the run, it is never skipped.
browser:
	@if command -v chromium-headless-shell >/dev/null 2>&1 || [ -n "$$CALLVAULT_CHROMIUM" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get install -y -q chromium-headless-shell || { apt-get update -q && apt-get install -y -q chromium-headless-shell; }; \
	else \
	  echo "The console's browser tests need headless Chromium: run 'sudo apt-get install -y chromium-headless-shell'" >&2; \
	  echo "(Debian/Ubuntu), or set CALLVAULT_CHROMIUM to a Chromium binary, then run make test again." >&2; \
	  exit 1; \
	fi

# dynalite, a real DynamoDB implementation (LevelDB, in memory) the Dynamo adapters' contract suites
# also run against (moto is in-process): from the npm registry into .tools/, with the machine's Node.js.
DYNALITE_VERSION := 4.0.0
DYNALITE_STAMP := .tools/dynalite/.installed-$(DYNALITE_VERSION)
dynalite: $(DYNALITE_STAMP)
$(DYNALITE_STAMP):
	@command -v npm >/dev/null 2>&1 || { echo "The DynamoDB contract tests need Node.js and npm (for dynalite): install them, then run make test again." >&2; exit 1; }
	mkdir -p .tools/dynalite
	npm install --prefix .tools/dynalite --no-audit --no-fund --silent 'dynalite@$(DYNALITE_VERSION)'
	touch $(DYNALITE_STAMP)

# The fast loop while changing code: the unit tests only (no lint, SAM build or browser), in seconds.
unit: $(STAMP)
	$(BIN)/pytest tests/unit -q $(PYTEST_ARGS)

# `infra` builds the Lambda packages that tests/infra imports, so it runs before pytest.
test: lint typecheck infra browser dynalite
	CALLVAULT_SAM_BUILD_DIR=$(SAM_BUILD_DIR) $(BIN)/pytest $(PYTEST_ARGS)

$(SAM_STAMP):
	test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet 'aws-sam-cli==$(SAM_CLI_VERSION)'
	touch $(SAM_STAMP)

$(CHECKOV_STAMP):
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	touch $(CHECKOV_STAMP)

# cfn-lint (config: infra/.cfnlintrc.yaml), the SAM CLI's own validation, and checkov's security
# rules (config: infra/.checkov.yaml; every suppression is in the template with its reason).
infra-lint: $(STAMP) $(SAM_STAMP) $(CHECKOV_STAMP)
	cd infra && ../$(BIN)/cfn-lint
	cd infra && $(INFRA_ENV) ../$(SAM_VENV)/bin/sam validate --lint
	cd infra && ../$(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml

# `sam build` without Docker: the python3.11 on PATH installs the pinned layer requirements.
infra-build: $(SAM_STAMP)
	cd infra && $(INFRA_ENV) ../$(SAM_VENV)/bin/sam build --build-dir $(abspath $(SAM_BUILD_DIR))

infra: infra-lint infra-build

# The infrastructure alone: lint, build, then only the tests of tests/infra.
infra-check: infra $(STAMP)
	CALLVAULT_SAM_BUILD_DIR=$(SAM_BUILD_DIR) $(BIN)/pytest tests/infra $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) .tools infra/.aws-sam .mypy_cache .pytest_cache .ruff_cache
