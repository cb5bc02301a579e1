"""Put the operator and workloads on a running `Node` the way users do, for tests and the demo.

- `install_operator`: ``kubectl apply -k crds/`` then ``kubectl apply -k`` of an overlay of
  ``deploy/`` whose only change is the image (the locally built one); the node's admission
  policies do the rest (hostNetwork, imagePullPolicy, the API server's address). It moves the
  operator's ports only when the shipped ones are taken on this host (the hostNetwork pods of
  every cluster on one machine share its ports).
- `leader_pod`: the operator pod that holds the election Lease (its holder is
  ``<pod name>_<uuid>``) and says so on its ``/healthz``.
- `uninstall_operator`: StateStores first (kopf's finalizer needs the running operator), then
  the overlay.
- `workload_pod_manifest`: ``deploy/samples/workload/pod.yaml`` with the local image, optionally
  without the binding mount (``connect_store`` then reads the binding through the API) or with
  ``restartPolicy: Never``.
- `container_pid`: the host pid of a pod's container, from the containerd of the pod's node (to
  kill it from outside: SIGKILL sent from inside a container to its own PID 1 is ignored by
  the kernel).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from lockyard_dev.node.images import OPERATOR_REF, WORKLOAD_REF
from lockyard_dev.node.node import Node, NodeError
from lockyard_dev.servers.process import free_port

OPERATOR_NAMESPACE = "lockyard-system"
OPERATOR_SELECTOR = "app.kubernetes.io/name=lockyard-operator"
ELECTION_LEASE = "lockyard-operator"
#: deploy/deployment.yaml's metrics and health ports.
SHIPPED_PORTS = (8080, 8081)
RELEASED_OPERATOR_IMAGE = "ghcr.io/lockyard-dev/lockyard-operator"
RELEASED_WORKLOAD_IMAGE = "ghcr.io/lockyard-dev/lockyard-workload:0.1.0"
WORKLOAD_SAMPLE = Path("deploy/samples/workload/pod.yaml")


def ports_in_use(addresses: list[str], ports: tuple[int, ...]) -> bool:
    """Whether something on this host already listens on one of ``ports`` at one of
    ``addresses`` (or on every interface): another node's operator, a parallel test run's."""
    for address in addresses:
        for port in ports:
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((address, port))
                except OSError:
                    return True
    return False


def _port_patches(source: Path, metrics: int, health: int) -> list[dict[str, Any]]:
    """JSON patches that move the Deployment's metrics and health ports (args, ports, the
    scrape annotation), found by name in ``deploy/deployment.yaml``."""
    deployment = yaml.safe_load((source / "deploy" / "deployment.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    base = "/spec/template/spec/containers/0"
    wanted = {"metrics": metrics, "health": health}
    patches: list[dict[str, Any]] = [
        {"op": "replace", "path": "/spec/template/metadata/annotations/prometheus.io~1port",
         "value": str(metrics)},
    ]  # fmt: skip
    for index, arg in enumerate(container["args"]):
        flag = arg.partition("=")[0]
        for name, port in wanted.items():
            if flag == f"--{name}-port":
                patches.append(
                    {"op": "replace", "path": f"{base}/args/{index}", "value": f"{flag}={port}"}
                )
    for index, declared in enumerate(container["ports"]):
        patches.append(
            {"op": "replace", "path": f"{base}/ports/{index}/containerPort",
             "value": wanted[declared["name"]]}
        )  # fmt: skip
    return patches


def write_overlay(source: Path, into: Path, ports: tuple[int, int] | None = None) -> Path:
    """A kustomization over ``deploy/`` that only swaps the image for the local build, and, given
    ``ports`` (metrics, health), moves the operator's ports (only when the shipped ones are
    taken on this host: pods on hostNetwork share its ports with every other run)."""
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
    if ports is not None:
        overlay["patches"] = [
            {
                "target": {"kind": "Deployment", "name": "lockyard-operator"},
                "patch": json.dumps(_port_patches(source, *ports)),
            }
        ]
    (into / "kustomization.yaml").write_text(yaml.safe_dump(overlay, sort_keys=False))
    return into


def install_operator(
    node: Node, source: Path, overlay_dir: Path, timeout: float = 120.0, ready: int | None = None
) -> float:
    """Apply CRDs and the operator; wait until ``ready`` operator pods (default: one per node,
    at most the Deployment's two) are Ready and one of them leads. Seconds it took.

    The shipped ports (8080, 8081) unless something on this host holds them already (another
    cluster's operator, from a parallel test run say): then two free ones, said through
    ``node.say``."""
    started = time.monotonic()
    wanted = min(node.node_count, 2) if ready is None else ready
    ports = None
    if ports_in_use(node.names, SHIPPED_PORTS):
        ports = (free_port(), free_port())
        node.say(f"ports {SHIPPED_PORTS} are taken on this host: the operator uses {ports}")
    node.kubectl("apply", "-k", str(source / "crds"))
    node.kubectl("apply", "-k", str(write_overlay(source, overlay_dir, ports)))
    wait_for(
        lambda: len(ready_pods(node, OPERATOR_NAMESPACE, OPERATOR_SELECTOR)) >= wanted,
        timeout,
        f"{wanted} operator pod(s) to be Ready",
    )
    wait_for(lambda: leader_pod(node) is not None, timeout, "an operator pod to lead")
    return time.monotonic() - started


def election_holder(node: Node) -> str | None:
    """The election Lease's holderIdentity, or None (no Lease yet, or released)."""
    got = node.kubectl(
        "get", "lease", ELECTION_LEASE, "-n", OPERATOR_NAMESPACE,
        "-o", "jsonpath={.spec.holderIdentity}", check=False,
    )  # fmt: skip
    return (got.stdout.strip() or None) if got.returncode == 0 else None


def leader_pod(node: Node) -> dict[str, Any] | None:
    """The operator pod that leads: the Lease names its identity and its own health endpoint
    says so (a container restarted after a kill keeps the pod's name but is a new identity, a
    standby, until the old term expires), or None."""
    holder = election_holder(node)
    if holder is None:
        return None
    for pod in pods(node, OPERATOR_NAMESPACE, OPERATOR_SELECTOR):
        if pod["metadata"]["name"] == holder.rpartition("_")[0]:
            health = operator_health(pod)
            if health is not None and health.get("identity") == holder and health.get("leading"):
                return pod
    return None


def wait_for_leader(node: Node, timeout: float) -> dict[str, Any]:
    """The operator pod that leads, once one does (:func:`leader_pod`)."""
    wait_for(lambda: leader_pod(node) is not None, timeout, "an operator pod to lead")
    pod = leader_pod(node)
    assert pod is not None
    return pod


def both_replicas_ready(node: Node) -> bool:
    """Both operator replicas exist and are Ready."""
    current = pods(node, OPERATOR_NAMESPACE, OPERATOR_SELECTOR)
    return len(current) == 2 and all(is_ready(p) for p in current)


def operator_health(pod: dict[str, Any]) -> dict[str, Any] | None:
    """What an operator pod's ``/healthz`` answers (on its pod IP), or None if nothing does."""
    address = pod.get("status", {}).get("podIP")
    ports = pod["spec"]["containers"][0].get("ports", [])
    port = next((p["containerPort"] for p in ports if p.get("name") == "health"), None)
    if not address or port is None:
        return None
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{address}:{port}/healthz", timeout=5) as response:
            answer: dict[str, Any] = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return answer


def uninstall_operator(node: Node, overlay_dir: Path) -> None:
    """StateStores first (their finalizer needs a leading operator), then the overlay. A store
    still there after 60 s (no replica leads, say) has its finalizer removed, so deleting the
    CRD with the overlay cannot hang on it."""
    deleted = node.kubectl(
        "delete", "statestores.lockyard.dev", "--all", "--all-namespaces", "--wait=true",
        "--timeout=60s", check=False, timeout=90,
    )  # fmt: skip
    if deleted.returncode != 0 and "doesn't have a resource type" not in deleted.stderr:
        node.say(f"StateStores not finalized within 60 s ({deleted.stderr.strip()[:200]}): "
                 "removing their finalizers")  # fmt: skip
        node.strip_finalizers("statestores.lockyard.dev")
    node.kubectl(
        "delete", "-k", str(overlay_dir), "--wait=true", "--timeout=120s", "--ignore-not-found",
        check=False, timeout=150,
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


def kubelet_get(node: Node, path: str, on: str | None = None) -> str:
    """GET ``path`` from the kubelet of node ``on`` (default the first) on its HTTPS port, as the
    API server's kubelet client (``system:masters``). The API server's node proxy refuses
    loopback addresses, so tests ask the kubelet directly, e.g. ``/metrics/probes``."""
    member = next((m for m in node.members if m.ip == (on or node.name)), None)
    plane = node.plane
    if member is None or plane is None:
        raise NodeError(f"node {on or node.name} is not running")
    layout = member.layout
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
    on = get_pod(node, namespace, pod)["spec"]["nodeName"]
    for line in kubelet_get(node, "/metrics/probes", on).splitlines():
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
    """The host pid of the (first) container of ``pod_name``, from its node's task list."""
    pod = get_pod(node, namespace, pod_name)
    container_id = pod["status"]["containerStatuses"][0]["containerID"].partition("://")[2]
    for line in node.ctr("tasks", "ls", node=pod["spec"]["nodeName"]).stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == container_id:
            return int(fields[1])
    raise NodeError(f"no running task for {namespace}/{pod_name} ({container_id})")
