# Entry points for people and CI alike. Area-specific targets live in mk/*.mk.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(VENV)/bin/pip
CACHE   ?= $(HOME)/.cache/lockyard

.PHONY: help install system-deps lint typecheck test unit check

help:  ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

system-deps:  ## Install the Debian packages the tests and demo start (redis, sentinel, PostgreSQL 15)
	@bash scripts/system-deps.sh

# constraints.txt pins the versions CI was green with (aioboto3 pins botocore exactly; without
# the pins pip backtracks through years of boto3/moto releases).
# The tooling (devtools/, distribution lockyard-dev) is installed next to the product, never in it.
$(VENV)/.installed: pyproject.toml devtools/pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[all,dev]' -e ./devtools
	touch $@

install: system-deps $(VENV)/.installed  ## Create .venv with the package, every extra and the dev tools

lint: $(VENV)/.installed  ## ruff (lint + format check) and import-linter
	$(VENV)/bin/ruff check library operator devtools tests
	$(VENV)/bin/ruff format --check library operator devtools tests
	$(VENV)/bin/lint-imports

typecheck: $(VENV)/.installed  ## mypy --strict on both packages and the tooling
	$(VENV)/bin/mypy

# Workers for make test. The suite mostly waits on servers, so it runs on more workers than
# cores; each worker starts its own servers and control plane on free loopback ports, and the
# node tests share one worker (one kubelet per host). TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 4

test: install controlplane  ## Set up everything, then lint, typecheck and run every test against real servers
	$(MAKE) lint typecheck verify-crds
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The fast tier: every test that needs no server (pure tests, the memory backend's conformance
# runs). tests/conftest.py marks tests by the server fixtures they use; with LOCKYARD_NO_SERVERS
# set, a test that starts a server without its marker fails instead of slowing the tier down.
UNIT_MARKERS := not (redis or sentinel or postgres or dynamodb or k8s or e2e)

unit: $(VENV)/.installed  ## Tests that need no server, in under a minute (no lint, no control plane)
	# The memory conformance runs here on virtual time (tests/library/virtual_time); the same
	# suite on the real clock (20 s of sleeps) is left to make test, as is the permit property
	# run of the memory backend against itself (a real 2.3 s expiry in most of its 60 examples).
	LOCKYARD_NO_SERVERS=1 $(PY) -m pytest -n $(TEST_WORKERS) -m '$(UNIT_MARKERS)' -q \
		--deselect tests/library/test_conformance_memory.py \
		--deselect 'tests/properties/test_permits_against_memory.py::test_permit_sequences_match_the_memory_backend[memory]' \
		$(PYTEST_ARGS)

check: test

-include mk/*.mk
