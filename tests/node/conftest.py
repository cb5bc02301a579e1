"""Fixtures for tests on a real node: the control plane plus containerd, runc, kubelet and
kube-scheduler (`lockyard_dev.node`), with the operator and workloads running as pods.

One cluster of two nodes (127.0.0.1 and 127.0.0.2, each its own containerd, kubelet and cgroup
root) serves the session, so the operator's two replicas both run, one per node, each binding its
node's address; its teardown fails the session if it left a process, a mount or a host path
behind. Nothing is skipped: a machine that cannot run a node fails here with the
reason (`check_host`). Every test here is marked ``k8s`` and ``node`` (so ``make unit`` leaves
them out). Redis runs as a host process on loopback: every pod is hostNetwork and reaches it
at 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from lockyard_dev.cluster.controlplane import cache_dir
from lockyard_dev.node import Node, NodeImages, build_images
from lockyard_dev.node.deploy import install_operator, uninstall_operator, wait_for
from lockyard_dev.node.node import leftover_check
from lockyard_dev.node.progress import progress
from lockyard_dev.repository import repository_root
from lockyard_dev.servers.redis import RedisServer

SOURCE = repository_root()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker("k8s")
            # One kubelet per host: tests/conftest.py keeps these on one pytest-xdist worker.
            item.add_marker("node")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@pytest.fixture(scope="session", autouse=True)
def sigterm_tears_down() -> Iterator[None]:
    """pytest tears fixtures down on Ctrl-C, not on SIGTERM (a CI timeout, say): make SIGTERM a
    KeyboardInterrupt so nodes and image builds are still stopped in order."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def node_images() -> NodeImages:
    """The images, built once per session (the checkout may change while it runs)."""
    return build_images(SOURCE, cache_dir(), progress("images"))


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory, node_images: NodeImages) -> Iterator[Node]:
    """Two started nodes; after the session, proof that their teardown left nothing behind."""
    workdir = tmp_path_factory.mktemp("node")
    running = Node(workdir, source=SOURCE, images=node_images, nodes=2, say=progress())
    check = leftover_check(workdir)
    running.start()
    yield running
    running.stop()
    left = check()
    assert not left, "the node's teardown left: " + "; ".join(left)


@pytest.fixture(scope="session")
def operator(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """The operator installed with ``kubectl apply -k crds/ && kubectl apply -k deploy/``: both
    replicas Ready, one leading."""
    overlay = tmp_path_factory.mktemp("overlay")
    install_operator(node, SOURCE, overlay)
    yield node
    uninstall_operator(node, overlay)


@pytest.fixture(scope="session")
def redis_host() -> Iterator[RedisServer]:
    """A redis-server on the host's loopback; pods reach it at 127.0.0.1 (hostNetwork)."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def namespace(request: pytest.FixtureRequest, node: Node) -> Iterator[str]:
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:30].strip("-")
    name = f"n-{stem}-{secrets.token_hex(3)}"
    node.kubectl("create", "namespace", name)
    yield name
    node.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def redis_store(operator: Node, redis_host: RedisServer, namespace: str) -> str:
    """A Ready StateStore ``orders`` on the host Redis, lease mirroring on, in ``namespace``."""
    prefix = f"t{secrets.token_hex(4)}"
    operator.kubectl(
        "apply", "-n", namespace, "-f", "-",
        input=f"""\
apiVersion: lockyard.dev/v1alpha1
kind: StateStore
metadata: {{name: orders}}
spec:
  redis: {{host: 127.0.0.1, port: {redis_host.port}}}
  prefix: {prefix}
  locks: {{defaultTtlSeconds: 30, leaseMirroring: true}}
  deletionPolicy: Retain
""",
    )  # fmt: skip
    wait_for(
        lambda: operator.kubectl(
            "get", "statestore", "orders", "-n", namespace,
            "-o", "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False,
        ).stdout == "True",
        120,
        "StateStore orders to be Ready",
    )  # fmt: skip
    return "orders"


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary built by scripts/build-go-tools.sh from tools/helm (pinned)."""
    env = dict(
        line.split("=", 1)
        for line in (SOURCE / "tools/helm/build.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    subprocess.run(["bash", str(SOURCE / "scripts/build-go-tools.sh"), "helm"], check=True)
    binary = cache_dir() / "tools" / f"helm-{env['VERSION']}" / "bin" / "helm"
    assert os.access(binary, os.X_OK), f"{binary} was not built"
    return binary


def elapsed_since(started: float) -> float:
    return time.monotonic() - started
