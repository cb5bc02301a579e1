"""Fixtures for the operator's tests against the real control plane and real backends.

- ``installed``: ``kubectl apply -k deploy/`` once per session (CRDs, namespace, ServiceAccount,
  ClusterRole and binding, Deployment; no pod runs, there is no kubelet).
- ``operator_kubeconfig``: a kubeconfig holding a token of the ``lockyard-operator``
  ServiceAccount (TokenRequest API), so every end-to-end test proves the ClusterRole suffices.
- ``operators``: starts ``python -m lockyard_operator`` processes under that identity and stops
  them after the test; at the end it checks that no secret value of the test reached the
  operator's log.
- ``kube``: an async admin client (plain JSON).
- Backends: real redis-server / PostgreSQL / moto processes from ``lockyard_dev.servers``.

Helpers shared by the tests live in ``operator_harness``.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from operator_harness import (
    OPERATOR_ACCOUNT,
    OPERATOR_NAMESPACE,
    REPO,
    Operators,
    stores_path,
)

from lockyard.kube.api import KubeApi, KubeApiError
from lockyard_dev.cluster.controlplane import ControlPlane
from lockyard_dev.cluster.identities import service_account_token, token_kubeconfig
from lockyard_dev.servers.moto import MotoServer
from lockyard_dev.servers.postgres import PostgresServer
from lockyard_dev.servers.redis import RedisSentinelSetup, RedisServer
from lockyard_dev.servers.redis_cluster import RedisClusterSetup


@pytest.fixture(scope="session")
def installed(control_plane: ControlPlane) -> ControlPlane:
    """The operator's kustomize base, applied as a user would: ``kubectl apply -k deploy/``."""
    control_plane.kubectl("apply", "-k", str(REPO / "deploy"))
    control_plane.kubectl(
        "wait",
        "--for=condition=Established",
        "crd/statestores.lockyard.dev",
        "crd/kopfpeerings.kopf.dev",
        "crd/clusterkopfpeerings.kopf.dev",
        "--timeout=60s",
    )
    return control_plane


@pytest.fixture(scope="session")
def operator_kubeconfig(installed: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A kubeconfig of the operator's ServiceAccount (a TokenRequest token)."""
    token = service_account_token(installed, OPERATOR_NAMESPACE, OPERATOR_ACCOUNT)
    folder = tmp_path_factory.mktemp("operator")
    return token_kubeconfig(folder / "kubeconfig", installed, OPERATOR_ACCOUNT, token)


@pytest.fixture
def operators(operator_kubeconfig: Path, namespace: str, tmp_path: Path) -> Iterator[Operators]:
    """Operator processes of this test (stopped after it); their logs must hold no secret."""
    running = Operators(operator_kubeconfig, tmp_path, namespace)
    try:
        yield running
    finally:
        running.stop_all()
    assert not running.leaked(), "a secret value reached the operator's log"
    assert not running.troubles(), "the operator lacked a permission or crashed"


@pytest_asyncio.fixture
async def kube(installed: ControlPlane, namespace: str) -> AsyncIterator[KubeApi]:
    """An admin API client; StateStores left in the test namespace lose their finalizer."""
    api = await KubeApi.connect(str(installed.kubeconfig))
    try:
        yield api
    finally:
        # The operators are stopped by now: let the namespace deletion finish without them.
        try:
            stores = await api.get(stores_path(namespace))
            for item in stores.get("items", []):
                path = stores_path(namespace, item["metadata"]["name"])
                await api.merge_patch(path, {"metadata": {"finalizers": None}})
        except KubeApiError:
            pass
        await api.close()


# -- backends (real servers on free loopback ports) ----------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer(password=f"redis-{secrets.token_hex(8)}") as server:
        yield server


@pytest.fixture(scope="session")
def sentinel_setup() -> Iterator[RedisSentinelSetup]:
    with RedisSentinelSetup(password=f"sentinel-{secrets.token_hex(8)}") as setup:
        yield setup


@pytest.fixture(scope="session")
def redis_cluster_setup() -> Iterator[RedisClusterSetup]:
    with RedisClusterSetup(password=f"cluster-{secrets.token_hex(8)}") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with PostgresServer(password=f"pg-{secrets.token_hex(8)}") as server:
        yield server


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server
