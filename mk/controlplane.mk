# A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
# kubectl) built from Go modules: the k8s tests and the demo run against it.
# Versions live in tools/controlplane/versions.env only.

include tools/controlplane/versions.env
CONTROLPLANE_BIN := $(CACHE)/controlplane/$(KUBERNETES_VERSION)-$(ETCD_VERSION)/bin
CLUSTER_STATE    ?= $(CACHE)/cluster

.PHONY: controlplane cluster-up cluster-down

controlplane:  ## Build kube-apiserver, kube-controller-manager, kubectl and etcd into ~/.cache/lockyard (10-30 min cold)
	@LOCKYARD_CACHE=$(CACHE) bash scripts/build-controlplane.sh

cluster-up: controlplane $(VENV)/.installed  ## Start a local control plane in the background; prints the KUBECONFIG to export
	@$(PY) -m lockyard_dev.cluster.controlplane up --state-dir $(CLUSTER_STATE)

cluster-down:  ## Stop the control plane started by cluster-up
	@$(PY) -m lockyard_dev.cluster.controlplane down --state-dir $(CLUSTER_STATE)
