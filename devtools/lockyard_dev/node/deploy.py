"""Put the operator and workloads on a running `Node` the way users do, for tests and the demo.

- `install_operator`: ``kubectl apply -k crds/`` then ``kubectl apply -k`` of an overlay of
  ``deploy/`` whose only change is the image (the locally built one); the node's admission
  policies do the rest (hostNetwork, imagePullPolicy, the API server's address).
- `uninstall_operator`: StateStores first (kopf's finalizer needs the running operator), then
  the overlay.
- `workload_pod_manifest`: ``deploy/samples/workload/pod.yaml`` with the local image, optionally
  without the binding mount (``connect_store`` then reads the binding through the API) or with
  ``restartPolicy: Never``.
- `container_pid`: the host pid of a pod's container (to kill it from outside: SIGKILL sent from
  inside a container to its own PID 1 is ignored by the kernel).
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import time
from pathlib import Path
from typing import Any

import yaml

from lockyard_dev.node.images import OPERATOR_REF, WORKLOAD_REF
from lockyard_dev.node.node import Node, NodeError

OPERATOR_NAMESPACE = "lockyard-system"
OPERATOR_SELECTOR = "app.kubernetes.io/name=lockyard-operator"
RELEASED_OPERATOR_IMAGE = "ghcr.io/lockyard-dev/lockyard-operator"
RELEASED_WORKLOAD_IMAGE = "ghcr.io/lockyard-dev/lockyard-workload:0.1.0"
WORKLOAD_SAMPLE = Path("deploy/samples/workload/pod.yaml")


def write_overlay(source: Path, into: Path) -> Path:
    """A kustomization over ``deploy/`` that only swaps the image for the local build."""
    into.mkdir(parents=True, exist_ok=True)
    name, _, tag = OPERATOR_REF.rpartition(":")
    # kustomize refuses absolute paths to a base: make it relative to the overlay.
    base = os.path.relpath(source.resolve() / "deploy", into.resolve())
    overlay = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [base],
        "images": [{"name": RELEASED_OPERATOR_IMAGE, "newName": name, "newTag": tag}],
    }
    (into / "kustomization.yaml").write_text(yaml.safe_dump(overlay, sort_keys=False))
    return into


def install_operator(node: Node, source: Path, overlay_dir: Path, timeout: float = 120.0) -> float:
    """Apply CRDs and the operator; wait until one operator pod is Ready. Seconds it took."""
    started = time.monotonic()
    node.kubectl("apply", "-k", str(source / "crds"))
    node.kubectl("apply", "-k", str(write_overlay(source, overlay_dir)))
    wait_for(
        lambda: len(ready_pods(node, OPERATOR_NAMESPACE, OPERATOR_SELECTOR)) >= 1,
        timeout,
        "an operator pod to be Ready",
    )
    return time.monotonic() - started


def uninstall_operator(node: Node, overlay_dir: Path) -> None:
    node.kubectl(
        "delete", "statestores.lockyard.dev", "--all", "--all-namespaces", "--wait=true",
        "--timeout=60s", check=False,
    )  # fmt: skip
    node.kubectl(
        "delete", "-k", str(overlay_dir), "--wait=true", "--timeout=120s", "--ignore-not-found",
        check=False,
    )  # fmt: skip


def pods(node: Node, namespace: str, selector: str) -> list[dict[str, Any]]:
    listed = node.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json")
    items: list[dict[str, Any]] = json.loads(listed.stdout)["items"]
    return items


def is_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def ready_pods(node: Node, namespace: str, selector: str) -> list[dict[str, Any]]:
    return [p for p in pods(node, namespace, selector) if is_ready(p)]


def get_pod(node: Node, namespace: str, name: str) -> dict[str, Any]:
    pod: dict[str, Any] = json.loads(
        node.kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout
    )
    return pod


def wait_for(check: Any, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise NodeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def workload_pod_manifest(
    source: Path,
    *,
    name: str = "orders-worker",
    store: str = "orders",
    hold: tuple[str, ...] = ("invoice-1", "invoice-2"),
    mount_binding: bool = True,
    restart: str = "Always",
    ttl: float | None = None,
) -> str:
    """The sample's ServiceAccount, RoleBinding and Pod, with the local image, as YAML."""
    documents = list(yaml.safe_load_all((source / WORKLOAD_SAMPLE).read_text()))
    pod = next(d for d in documents if d["kind"] == "Pod")
    spec = pod["spec"]
    pod["metadata"]["name"] = name
    pod["metadata"]["labels"]["app.kubernetes.io/name"] = name
    spec["restartPolicy"] = restart
    container = spec["containers"][0]
    if container["image"] != RELEASED_WORKLOAD_IMAGE:
        raise NodeError(f"{WORKLOAD_SAMPLE} no longer names {RELEASED_WORKLOAD_IMAGE}")
    container["image"] = WORKLOAD_REF
    args = ["--store", store]
    for lock in hold:
        args += ["--hold", lock]
    if ttl is not None:
        args += ["--ttl", str(ttl)]
    container["args"] = args
    binding_volume = f"{store}-binding"
    for volume in spec["volumes"]:
        if volume.get("secret"):
            volume["name"] = binding_volume
            volume["secret"]["secretName"] = f"lockyard-store-{store}"
    for mount in container["volumeMounts"]:
        if mount["mountPath"].startswith("/bindings/"):
            mount["name"] = binding_volume
            mount["mountPath"] = f"/bindings/{store}"
    for document in documents:
        if document["kind"] == "RoleBinding":
            document["roleRef"]["name"] = f"lockyard-store-{store}"
    if not mount_binding:
        container["env"] = [e for e in container["env"] if e["name"] != "SERVICE_BINDING_ROOT"]
        container["volumeMounts"] = [
            m for m in container["volumeMounts"] if m["name"] != binding_volume
        ]
        spec["volumes"] = [v for v in spec["volumes"] if v["name"] != binding_volume]
    return yaml.safe_dump_all(documents, sort_keys=False)


def kubelet_get(node: Node, path: str) -> str:
    """GET ``path`` from the first node's kubelet (its HTTPS port) as the API server's kubelet
    client (``system:masters``). The API server's node proxy refuses loopback addresses, so
    tests ask the kubelet directly, e.g. ``/metrics/probes``."""
    layout = node.layout
    plane = node.plane
    if layout is None or plane is None:
        raise NodeError("the node is not started")
    pki = plane.workdir / "pki"
    context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    context.load_cert_chain(
        str(pki / "apiserver-kubelet-client.crt"), str(pki / "apiserver-kubelet-client.key")
    )
    connection = http.client.HTTPSConnection(
        layout.ip, layout.kubelet_port, context=context, timeout=10
    )
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read().decode()
    finally:
        connection.close()
    if response.status != 200:
        raise NodeError(f"kubelet GET {path}: HTTP {response.status}: {body[:300]}")
    return body


def probe_counts(node: Node, namespace: str, pod: str) -> dict[tuple[str, str], float]:
    """``prober_probe_total`` of ``pod`` from its kubelet: (probe type, result) -> count."""
    counts: dict[tuple[str, str], float] = {}
    for line in kubelet_get(node, "/metrics/probes").splitlines():
        if not line.startswith("prober_probe_total{"):
            continue
        labels_text, _, value = line[len("prober_probe_total{") :].rpartition("} ")
        labels = {
            key: raw.strip('"')
            for key, _, raw in (item.partition("=") for item in labels_text.split(","))
        }
        if labels.get("namespace") == namespace and labels.get("pod") == pod:
            key = (labels.get("probe_type", ""), labels.get("result", ""))
            counts[key] = counts.get(key, 0.0) + float(value)
    return counts


def container_pid(node: Node, namespace: str, pod_name: str) -> int:
    """The host pid of the (first) container of ``pod_name``, from containerd's task list."""
    pod = get_pod(node, namespace, pod_name)
    container_id = pod["status"]["containerStatuses"][0]["containerID"].partition("://")[2]
    for line in node.ctr("tasks", "ls").stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == container_id:
            return int(fields[1])
    raise NodeError(f"no running task for {namespace}/{pod_name} ({container_id})")
