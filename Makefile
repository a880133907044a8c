# FlexGrid: every target installs what it needs. `make demo` and `make test` are the two
# commands a fresh clone needs (Python 3.11+ and Node 20+ on PATH).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
NPX := npx --no-install
export PATH := $(CURDIR)/node_modules/.bin:$(CURDIR)/$(BIN):$(PATH)
FUZZ_RUNS ?= 10000

.PHONY: all install venv node contracts artifacts demo test test-contracts test-python lint fuzz gas bench brownie clean

all: test

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

node: node_modules/.installed
node_modules/.installed: package-lock.json package.json
	npm ci --no-audit --no-fund
	touch $@

install: venv node

# Compile the contracts with forge through the project's solc shim (tools/solc).
contracts: node
	forge build --build-info

# Refresh the ABIs and bytecode the Python package ships (flexgrid/chain/artifacts).
artifacts: contracts venv
	$(PY) scripts/export_artifacts.py

demo: install
	$(BIN)/flexgrid demo

test: install contracts
	FOUNDRY_PROFILE=ci forge test
	scripts/brownie_check.sh
	$(PY) -m pytest -n 2 --dist loadgroup

test-contracts: node
	FOUNDRY_PROFILE=ci forge test

test-python: venv
	$(PY) -m pytest -n 2 --dist loadgroup

fuzz: node
	FOUNDRY_PROFILE=fuzz forge test

gas: node
	FOUNDRY_PROFILE=gas forge snapshot --snap contracts/.gas-snapshot

# mypy: the packages pyproject's [tool.mypy] names, and the tests (files on the command line replace
# its `packages`, so both are named here).
lint: install contracts
	$(BIN)/ruff check flexgrid frontend_api tests scripts benchmarks
	$(BIN)/mypy flexgrid frontend_api tests
	$(BIN)/slither . --ignore-compile --config-file slither.config.json

bench: install
	$(PY) benchmarks/clearing.py
	$(PY) benchmarks/monitoring.py
	$(PY) benchmarks/chain.py

# eth-brownie in its own throw-away venv (build/brownie-venv): compile and a deploy-and-offer test.
brownie: node
	scripts/brownie_check.sh

clean:
	rm -rf contracts/out contracts/cache .pytest_cache .mypy_cache .ruff_cache

# The HTTP API (frontend_api/): its own anvil and a demo market unless FLEXGRID_RPC_URL is set.
.PHONY: serve load
serve: install
	$(BIN)/flexgrid serve

# Load test of the HTTP API on loopback (bounded): batched offers vs one tx per offer, reads.
load: install
	$(PY) scripts/load_api.py

# schemathesis against the API's OpenAPI as nobody, provider, DSO and operator: 30 generated
# requests per operation and identity (over 4,000 in all); `make test` runs 4 each.
.PHONY: fuzz-api
fuzz-api: install
	FLEXGRID_API_FUZZ_EXAMPLES=30 $(PY) -m pytest tests/api/test_schema_fuzz.py -n 0 -s -q
