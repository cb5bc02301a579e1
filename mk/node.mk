# A real Kubernetes node on this machine: the control plane plus containerd, runc, kubelet and
# kube-scheduler, with the operator and workload images built offline (lockyard_dev.node).
# Needs root and cgroups; loopback only (every pod is hostNetwork). See docs/node.md.

HELM_VERSION := $(shell sed -n 's/^VERSION=//p' tools/helm/build.env)
HELM         := $(CACHE)/tools/helm-$(HELM_VERSION)/bin/helm
NODE_STATE   ?= $(CACHE)/node/state

.PHONY: node node-images helm node-up node-down test-node

node: system-deps controlplane helm node-images  ## Build everything a node needs: kubelet, helm, images (cached; ~5 min cold)

node-images: $(VENV)/.installed  ## Build/reuse the pause, python base, operator and workload images (offline buildah)
	@$(PY) -m lockyard_dev.node images

helm:  ## Build the pinned helm (tools/helm) into ~/.cache/lockyard/tools
	@bash scripts/build-go-tools.sh helm

node-up: node  ## Start two nodes (127.0.0.1, 127.0.0.2) in the background; prints the KUBECONFIG to export
	@$(PY) -m lockyard_dev.node up --state-dir $(NODE_STATE)

node-down:  ## Stop the node started by node-up (ordered teardown: pods, kubelet, containerd, control plane)
	@$(PY) -m lockyard_dev.node down --state-dir $(NODE_STATE)

test-node: node  ## The operator, the Helm chart and workloads as pods on a real node
	$(PY) -m pytest tests/node $(PYTEST_ARGS)
