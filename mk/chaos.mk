# `make chaos`: the stress workload while a server is broken and brought back: Redis killed
# (SIGKILL, appendonly + appendfsync always) and restarted, a Sentinel failover, a Redis Cluster
# master killed (its replica takes over) and slots resharded under load, PostgreSQL
# restarted and crashed, the moto DynamoDB endpoint restarted; and on a local Kubernetes control
# plane, kube-apiserver stopped and restarted under the operator and lease-mirrored workloads,
# and the operator killed with SIGKILL mid-reconcile. Reports operations attempted and failed,
# time to recover, the slowest failure against the operation timeout, lock overlaps, lost
# writes, stale Leases and half-written objects; exit status 1 on any violation or a scenario
# that did not recover. lockyard_dev.chaos runs both kinds; the control plane is built only when
# a Kubernetes scenario is asked for. `operator-pod-kill` (the operator as pods on a real node,
# its leader's pod deleted and its container killed) needs root and `make node`; it is left out
# of the default list and builds the node when asked for: CHAOS_SCENARIOS=operator-pod-kill.

CHAOS_SCENARIOS ?= redis-kill,sentinel-failover,cluster-master-kill,cluster-reshard,postgres-restart,postgres-kill,dynamodb-restart,apiserver-restart,operator-kill
CHAOS_TASKS     ?= 16
CHAOS_JSON      ?=
CHAOS_ARGS      ?=

CHAOS_KUBE_SCENARIOS := apiserver-restart operator-kill
chaos_comma := ,
CHAOS_NEEDS_CLUSTER := $(filter $(CHAOS_KUBE_SCENARIOS),$(subst $(chaos_comma), ,$(CHAOS_SCENARIOS)))
CHAOS_NEEDS_NODE := $(filter operator-pod-kill,$(subst $(chaos_comma), ,$(CHAOS_SCENARIOS)))

.PHONY: chaos

chaos: $(VENV)/.installed $(if $(CHAOS_NEEDS_CLUSTER),controlplane,) $(if $(CHAOS_NEEDS_NODE),node,)  ## Break each backend, kube-apiserver and the operator under load (CHAOS_SCENARIOS=..., CHAOS_JSON=file)
	$(PY) -m lockyard_dev.chaos --scenarios $(CHAOS_SCENARIOS) --tasks $(CHAOS_TASKS) \
		$(if $(CHAOS_JSON),--json $(CHAOS_JSON),) $(CHAOS_ARGS)
