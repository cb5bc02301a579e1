# `make chaos`: the stress workload while a server is broken and brought back: Redis killed
# (SIGKILL, appendonly + appendfsync always) and restarted, a Sentinel failover, PostgreSQL
# restarted and crashed, the moto DynamoDB endpoint restarted. Reports operations attempted and
# failed, time to recover, the slowest failure against the operation timeout, lock overlaps and
# lost writes; exit status 1 on any violation or a scenario that did not recover.

CHAOS_SCENARIOS ?= redis-kill,sentinel-failover,postgres-restart,postgres-kill,dynamodb-restart
CHAOS_TASKS     ?= 16
CHAOS_JSON      ?=
CHAOS_ARGS      ?=

.PHONY: chaos

chaos: $(VENV)/.installed  ## Kill, fail over and restart each backend under load (CHAOS_SCENARIOS=..., CHAOS_JSON=file)
	$(PY) -m lockyard.chaos --scenarios $(CHAOS_SCENARIOS) --tasks $(CHAOS_TASKS) \
		$(if $(CHAOS_JSON),--json $(CHAOS_JSON),) $(CHAOS_ARGS)
