"""Fixtures for tests against a real Kubernetes API server.

One control plane (etcd, kube-apiserver, kube-controller-manager; see
`lockyard_dev.cluster.controlplane`) serves the whole session. Every test using it is
marked ``k8s`` automatically (by ``tests/conftest.py``). Nothing is skipped: without the
binaries the fixture fails with the message to run ``make controlplane``.

The official client is synchronous: async tests call it through `asyncio.to_thread`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from lockyard_dev.cluster.controlplane import ControlPlane


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """The session's control plane; the admin kubeconfig is in ``system:masters``."""
    with ControlPlane() as plane:
        yield plane


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> Path:
    return control_plane.kubeconfig


@pytest.fixture(scope="session")
def k8s_api(kubeconfig: Path) -> Iterator[client.ApiClient]:
    """An admin `kubernetes.client.ApiClient` (sync: call it via `asyncio.to_thread`)."""
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    api = client.ApiClient(configuration)
    yield api
    api.close()


@pytest.fixture
def namespace(request: pytest.FixtureRequest, k8s_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace named after the test, deleted (not awaited) after it."""
    stem = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{stem}-{secrets.token_hex(3)}"
    core = client.CoreV1Api(k8s_api)
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=name, labels={"lockyard.dev/test": "true"})
        )
    )
    yield name
    # Not waited for: the namespace controller empties it in the background, and a test that
    # left finalizers behind must not hang the next one.
    core.delete_namespace(name, propagation_policy="Background")
