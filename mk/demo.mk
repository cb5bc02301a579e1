# `make demo`: Lockyard end to end on a local control plane: Redis, the operator, a StateStore
# with lease mirroring, a workload taking locks, and what kubectl and `lockyard locks` show.
# Ctrl-C stops everything it started; DEMO_SECONDS=N stops it after N seconds of workload.

DEMO_SECONDS ?=
DEMO_ARGS    ?=

.PHONY: demo

demo: install controlplane  ## Run the demo (control plane, Redis, operator, workload; DEMO_SECONDS=N to bound it)
	$(PY) -m lockyard_dev.demo $(if $(DEMO_SECONDS),--seconds $(DEMO_SECONDS),) $(DEMO_ARGS)
