# The operator: CRDs generated from the pydantic models, running it, its end-to-end tests.

CRDS_DIR ?= crds

.PHONY: crds verify-crds run-operator e2e

crds: $(VENV)/.installed  ## Regenerate crds/ (StateStore + kopf peering CRDs) from the pydantic models
	$(PY) -m lockyard_operator.crd --out $(CRDS_DIR)

verify-crds: $(VENV)/.installed  ## Fail if crds/ differs from what the models generate
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PY) -m lockyard_operator.crd --out "$$tmp" >/dev/null && \
	if diff -ru "$$tmp" $(CRDS_DIR); then echo "crds/ is up to date"; \
	else echo "crds/ has drifted from the models: run 'make crds'" >&2; exit 1; fi

run-operator: $(VENV)/.installed  ## Run the operator against $KUBECONFIG, all namespaces (OPERATOR_ARGS to change)
	@test -n "$$KUBECONFIG" || { echo "set KUBECONFIG (make cluster-up prints it)" >&2; exit 1; }
	$(PY) -m lockyard_operator $(or $(OPERATOR_ARGS),--all-namespaces)

e2e: install controlplane  ## End-to-end tests: the operator as its own process against the local control plane
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)
