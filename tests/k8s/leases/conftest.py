"""Fixtures for the Lease mirroring, reaper and CLI tests (tests/k8s/conftest.py has the cluster).

A Redis server of our own serves the tests whose lock holders are separate processes (the
memory backend lives in one process); everything else uses memory handles.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from kubernetes import client
from lease_support import STORE, Cluster

import lockyard
from lockyard.kube import KubeApi, KubeClient
from lockyard.mirror import Holder, LeaseMirror, enable_lease_mirroring


@pytest.fixture
def kube(k8s_api: client.ApiClient) -> KubeClient:
    """The admin API as the mirror's JSON client (shares the session's ApiClient)."""
    return KubeClient(k8s_api)


@pytest_asyncio.fixture
async def kube_api(kube: KubeClient) -> AsyncIterator[KubeApi]:
    """The admin API for asyncio code (the same client, in worker threads)."""
    async with KubeApi(kube) as api:
        yield api


@pytest_asyncio.fixture
async def memory() -> AsyncIterator[lockyard.Connection]:
    async with lockyard.connect("memory://?prefix=leases") as connection:
        yield connection


@pytest_asyncio.fixture
async def mirrored(
    memory: lockyard.Connection, k8s_api: client.ApiClient, namespace: str
) -> AsyncIterator[LeaseMirror]:
    """A memory handle mirrored into the test's namespace as store ``orders``."""
    mirror = enable_lease_mirroring(memory, STORE, namespace, k8s_api, holder=Holder("test-holder"))
    yield mirror
    await mirror.close()


@pytest.fixture
def cluster(kube: KubeClient, namespace: str) -> Cluster:
    return Cluster(kube, namespace)
