"""The Helm chart deploy/helm/lockyard: ``helm lint``, what it renders for each value, and a
real install, upgrade and uninstall with the pinned helm (tools/helm) on the test node."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from lockyard_dev.node import OPERATOR_REF, Node
from lockyard_dev.node.deploy import is_ready, pods, wait_for
from lockyard_dev.repository import repository_root
from lockyard_dev.servers.process import free_port

SOURCE = repository_root()
CHART = SOURCE / "deploy" / "helm" / "lockyard"


def _helm(helm: Path, *args: str, node: Node | None = None) -> str:
    env_args = ["--kubeconfig", str(node.kubeconfig)] if node is not None else []
    result = subprocess.run(
        [str(helm), *args, *env_args], capture_output=True, text=True, check=False, timeout=300
    )
    assert result.returncode == 0, f"helm {' '.join(args)}: {result.stderr}"
    return result.stdout


def _render(helm: Path, *sets: str, namespace: str = "ops") -> list[dict[str, Any]]:
    args = ["template", "ly", str(CHART), "--namespace", namespace]
    for value in sets:
        args += ["--set", value]
    return [d for d in yaml.safe_load_all(_helm(helm, *args)) if d]


def _kinds(documents: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in documents)


def _container(documents: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_chart_lints(helm: Path) -> None:
    _helm(helm, "lint", "--strict", str(CHART))
    _helm(
        helm, "lint", "--strict", str(CHART), "--set", "watch.scope=namespaces",
        "--set", "watch.namespaces={a,b}", "--set", "metrics.serviceMonitor.enabled=true",
        "--set", "metrics.podMonitor.enabled=true",
    )  # fmt: skip


def test_default_render_matches_the_kustomize_deployment(helm: Path) -> None:
    documents = _render(helm)
    assert _kinds(documents) == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Role",
        "RoleBinding",
        "ServiceAccount",
    ]
    rendered = _container(documents)
    kustomize = yaml.safe_load((SOURCE / "deploy" / "deployment.yaml").read_text())
    shipped = kustomize["spec"]["template"]["spec"]["containers"][0]
    # Both install paths run the same operator the same way.
    for field in (
        "args",
        "env",
        "ports",
        "livenessProbe",
        "readinessProbe",
        "resources",
        "securityContext",
    ):
        assert rendered[field] == shipped[field], field
    assert rendered["image"] == "ghcr.io/lockyard-dev/lockyard-operator:0.1.0"
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == kustomize["spec"]["template"]["spec"]["securityContext"]
    # Scope "all": every rule of deploy/clusterrole.yaml, cluster-wide.
    role = next(d for d in documents if d["kind"] == "ClusterRole")
    shipped_role = yaml.safe_load((SOURCE / "deploy" / "clusterrole.yaml").read_text())
    grants = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"]
              for r in rule["resources"] for v in rule["verbs"]}  # fmt: skip
    shipped_grants = {(g, r, v) for rule in shipped_role["rules"] for g in rule["apiGroups"]
                      for r in rule["resources"] for v in rule["verbs"]}  # fmt: skip
    assert grants == shipped_grants
    # The election Lease: granted in the release's namespace only, as leader-election-role.yaml.
    election = next(d for d in documents if d["kind"] == "Role")
    shipped_election = next(
        d
        for d in yaml.safe_load_all((SOURCE / "deploy" / "leader-election-role.yaml").read_text())
        if d["kind"] == "Role"
    )
    assert election["rules"] == shipped_election["rules"]
    assert election["metadata"]["namespace"] == "ops"


def test_watch_scopes(helm: Path) -> None:
    listed = _render(helm, "watch.scope=namespaces", "watch.namespaces={team-a,team-b}")
    args = _container(listed)["args"]
    assert "--all-namespaces" not in args
    assert [a for a in args if a.startswith("--namespace=")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]
    granted = [d for d in listed if d["kind"] == "RoleBinding"]
    bindings = [b for b in granted if b["roleRef"]["name"].endswith("-namespaced")]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    # Cluster-wide only what kopf needs whatever it serves: no Secrets, no Leases.
    cluster_role = next(
        d for d in listed if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "ly-lockyard"
    )
    assert {r for rule in cluster_role["rules"] for r in rule["resources"]} == {
        "customresourcedefinitions",
        "namespaces",
    }
    own = _render(helm, "watch.scope=own", namespace="platform")
    assert [a for a in _container(own)["args"] if a.startswith("--namespace")] == [
        "--namespace=platform"
    ]
    failed = subprocess.run(
        [str(helm), "template", "ly", str(CHART), "--set", "watch.scope=everything"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert failed.returncode != 0
    assert "watch.scope must be all, namespaces or own" in failed.stderr


def test_values_for_image_resources_security_and_monitors(helm: Path) -> None:
    documents = _render(
        helm,
        "image.repository=registry.example/lockyard",
        "image.tag=1.2.3",
        "replicas=3",
        "resources.limits.memory=512Mi",
        "securityContext.runAsUser=1000",
        "metrics.serviceMonitor.enabled=true",
        "metrics.podMonitor.enabled=true",
    )
    container = _container(documents)
    assert container["image"] == "registry.example/lockyard:1.2.3"
    assert container["resources"]["limits"]["memory"] == "512Mi"
    assert container["securityContext"]["runAsUser"] == 1000
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert next(d for d in documents if d["kind"] == "Deployment")["spec"]["replicas"] == 3
    assert {"ServiceMonitor", "PodMonitor", "Service"} <= set(_kinds(documents))
    service = next(d for d in documents if d["kind"] == "Service")
    assert service["spec"]["clusterIP"] == "None"  # headless: endpoints only, no virtual IP


@pytest.mark.timeout(600)
def test_install_upgrade_uninstall_on_the_node(helm: Path, node: Node, namespace: str) -> None:
    repository, _, tag = OPERATOR_REF.rpartition(":")
    node.kubectl("apply", "-k", str(SOURCE / "crds"))
    selector = "app.kubernetes.io/instance=ly"
    # Its own ports: every pod here shares the host's network, and the kustomize-installed
    # operator of the other tests may hold 8080/8081.
    metrics_port, health_port = free_port(), free_port()
    started = time.monotonic()
    _helm(
        helm, "install", "ly", str(CHART), "--namespace", namespace, "--wait", "--timeout=180s",
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
        "--set", "replicas=1", "--set", "watch.scope=own",
        "--set", f"metrics.port={metrics_port}", "--set", f"health.port={health_port}",
        node=node,
    )  # fmt: skip
    installed = time.monotonic() - started
    (pod,) = pods(node, namespace, selector)
    assert is_ready(pod)
    assert "--namespace=" + namespace in pod["spec"]["containers"][0]["args"]
    releases = json.loads(_helm(helm, "list", "-n", namespace, "-o", "json", node=node))
    assert [(r["name"], r["status"], r["revision"]) for r in releases] == [("ly", "deployed", "1")]

    started = time.monotonic()
    # Recreate: on one host network the new pod cannot start before the old one frees its ports.
    _helm(
        helm, "upgrade", "ly", str(CHART), "--namespace", namespace, "--reuse-values", "--wait",
        "--timeout=180s", "--set", "resources.limits.memory=300Mi",
        "--set", "updateStrategy.type=Recreate", "--set", "updateStrategy.rollingUpdate=null",
        node=node,
    )  # fmt: skip
    upgraded = time.monotonic() - started

    def rolled_out() -> bool:
        current = pods(node, namespace, selector)
        return (
            len(current) == 1
            and is_ready(current[0])
            and (current[0]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "300Mi")
        )

    wait_for(rolled_out, 120, "the upgraded pod")
    releases = json.loads(_helm(helm, "list", "-n", namespace, "-o", "json", node=node))
    assert releases[0]["revision"] == "2"

    started = time.monotonic()
    _helm(helm, "uninstall", "ly", "--namespace", namespace, "--wait", node=node)
    wait_for(lambda: not pods(node, namespace, selector), 120, "the chart's pods to go")
    uninstalled = time.monotonic() - started
    left = node.kubectl("get", "clusterrole,clusterrolebinding", "-l", selector, "-o", "name")
    assert left.stdout.strip() == ""
    print(f"helm install {installed:.1f}s, upgrade {upgraded:.1f}s, uninstall {uninstalled:.1f}s")
