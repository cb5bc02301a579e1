"""deploy/ is a working kustomize base (the ``installed`` fixture applied it with
``kubectl apply -k deploy/``), shaped as the style guide asks, and the samples pass admission.

No operator pod runs here (no kubelet): tests/node applies the same base and runs its pods.
"""

from __future__ import annotations

import re

import pytest
import yaml
from operator_harness import OPERATOR_ACCOUNT, OPERATOR_NAMESPACE, REPO

from lockyard_dev.cluster.controlplane import ControlPlane

pytestmark = pytest.mark.k8s

DEPLOY = REPO / "deploy"


def test_the_base_is_applied_and_idempotent(installed: ControlPlane) -> None:
    again = installed.kubectl("apply", "-k", str(DEPLOY)).stdout
    assert "deployment.apps/lockyard-operator" in again
    for kind, name in (
        ("serviceaccount", OPERATOR_ACCOUNT),
        ("deployment", "lockyard-operator"),
    ):
        installed.kubectl("get", kind, name, "-n", OPERATOR_NAMESPACE)
    installed.kubectl("get", "clusterrole", "lockyard-operator")
    installed.kubectl("get", "clusterrolebinding", "lockyard-operator")
    installed.kubectl("get", "crd", "statestores.lockyard.dev")


def test_every_clusterrole_rule_says_why() -> None:
    lines = (DEPLOY / "clusterrole.yaml").read_text().splitlines()
    rules = [i for i, line in enumerate(lines) if line.strip().startswith("- apiGroups:")]
    assert rules
    for index in rules:
        assert lines[index - 1].strip().startswith("# "), f"rule at line {index + 1} lacks a why"


def test_deployment_is_locked_down(installed: ControlPlane) -> None:
    rendered = installed.kubectl("kustomize", str(DEPLOY)).stdout
    (deployment,) = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"]["memory"]
    assert "--leader-elect" in container["args"]
    assert pod["serviceAccountName"] == OPERATOR_ACCOUNT


def test_dockerfile_runs_the_console_script_as_non_root() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^USER 65532", text, re.MULTILINE)
    assert 'ENTRYPOINT ["lockyard-operator"]' in text


def test_samples_pass_admission(installed: ControlPlane, namespace: str) -> None:
    result = installed.kubectl(
        "apply", "-k", str(DEPLOY / "samples"), "-n", namespace, "--dry-run=server"
    )
    listed = yaml.safe_load((DEPLOY / "samples" / "kustomization.yaml").read_text())
    stores = [
        doc
        for name in listed["resources"]
        for doc in yaml.safe_load_all((DEPLOY / "samples" / name).read_text())
        if doc and doc["kind"] == "StateStore"
    ]
    # One sample per backend, and every one the kustomization lists is admitted.
    assert len(stores) == 6
    assert result.stdout.count("statestore.lockyard.dev/") == len(stores)
