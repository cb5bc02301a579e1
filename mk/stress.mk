# `make stress`: every backend under 64 concurrent tasks (every store operation and lock cycles),
# with invariants checked as it runs: counters, CAS chains, dedup winners, read-your-writes,
# scans, indexes and fenced lock holders. Starts its own servers; exit status 1 on any
# violation. Never part of `make test`: tests/stress smoke-tests it on memory:// for 2 s.

STRESS_BACKENDS ?= memory,redis,sentinel,redis-cluster,postgresql,dynamodb
STRESS_DURATION ?= 60
STRESS_TASKS    ?= 64
STRESS_JSON     ?=
STRESS_ARGS     ?=

.PHONY: stress stress-smoke

stress: $(VENV)/.installed  ## Stress every backend, checking invariants (STRESS_DURATION=s per backend, STRESS_BACKENDS=..., STRESS_JSON=file)
	$(PY) -m lockyard_dev.stress --backends $(STRESS_BACKENDS) --duration $(STRESS_DURATION) \
		--tasks $(STRESS_TASKS) $(if $(STRESS_JSON),--json $(STRESS_JSON),) $(STRESS_ARGS)

stress-smoke: $(VENV)/.installed  ## Run the stress and chaos smoke tests and the checker tests
	$(PY) -m pytest tests/stress -q
