# `make jepsen`: concurrent operations from several client processes, each through its own
# toxiproxy in front of Redis, Sentinel, PostgreSQL, moto (DynamoDB) and kube-apiserver, under
# network faults (latency past the operation timeout, bandwidth, resets in mid-reply, half-open
# connections, sliced replies, one client cut off, a Sentinel failover). Every invocation and
# completion is recorded and the history checked for linearizability by tools/porcupine; a
# violation comes with a minimal failing sub-history (text, and porcupine's HTML drawing in the
# run's folder under bench/results/). Exit status 1 on any problem on a backend that promises
# linearizability. tests/jepsen runs a short smoke of it and the wire fuzzer in the test suite.

JEPSEN_BACKENDS  ?= redis,sentinel,postgresql,dynamodb,kube
JEPSEN_SCENARIOS ?= none,latency,bandwidth,reset-peer,half-open,slicer,partition-one,failover
JEPSEN_DURATION  ?= 20
JEPSEN_JSON      ?=
JEPSEN_ARGS      ?=

jepsen_comma := ,
JEPSEN_NEEDS_CLUSTER := $(filter kube,$(subst $(jepsen_comma), ,$(JEPSEN_BACKENDS)))

.PHONY: jepsen jepsen-tools jepsen-smoke

jepsen-tools:  ## Build toxiproxy and the porcupine checker (tools/) into ~/.cache/lockyard/tools
	@LOCKYARD_CACHE=$(CACHE) bash scripts/build-go-tools.sh toxiproxy porcupine

jepsen: $(VENV)/.installed jepsen-tools $(if $(JEPSEN_NEEDS_CLUSTER),controlplane,)  ## Network faults through toxiproxy, histories checked for linearizability (JEPSEN_BACKENDS=..., JEPSEN_SCENARIOS=..., JEPSEN_DURATION=s, JEPSEN_JSON=file)
	$(PY) -m lockyard_dev.jepsen --backends $(JEPSEN_BACKENDS) --scenarios $(JEPSEN_SCENARIOS) \
		--duration $(JEPSEN_DURATION) $(if $(JEPSEN_JSON),--json $(JEPSEN_JSON),) $(JEPSEN_ARGS)

jepsen-smoke: $(VENV)/.installed jepsen-tools  ## The Jepsen smoke (Redis, latency) and the wire fuzzer, as in make test
	$(PY) -m pytest tests/jepsen -q $(PYTEST_ARGS)
