# Entry points for people and CI alike. Area-specific targets live in mk/*.mk.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(VENV)/bin/pip
CACHE   ?= $(HOME)/.cache/lockyard

.PHONY: help install system-deps lint typecheck test check

help:  ## List the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

system-deps:  ## Install the Debian packages the tests and demo start (redis, sentinel, PostgreSQL 15)
	@bash scripts/system-deps.sh

# constraints.txt pins the versions CI was green with (aioboto3 pins botocore exactly; without
# the pins pip backtracks through years of boto3/moto releases).
$(VENV)/.installed: pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[all,dev]'
	touch $@

install: system-deps $(VENV)/.installed  ## Create .venv with the package, every extra and the dev tools

lint: $(VENV)/.installed  ## ruff (lint + format check) and import-linter
	$(VENV)/bin/ruff check library operator tests
	$(VENV)/bin/ruff format --check library operator tests
	$(VENV)/bin/lint-imports

typecheck: $(VENV)/.installed  ## mypy --strict on both packages
	$(VENV)/bin/mypy

test: install controlplane  ## Set up everything, then lint, typecheck and run every test against real servers
	$(MAKE) lint typecheck verify-crds
	$(PY) -m pytest $(PYTEST_ARGS)

check: test

-include mk/*.mk
