"""Fixtures of the Lease election tests: API clients (one per candidate, as in separate
processes) and toxiproxy in front of the API server for a slow or stopped network."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import pytest_asyncio
from election_support import Connect

from lockyard.kube.api import KubeApi
from lockyard_dev.cluster.controlplane import ControlPlane
from lockyard_dev.jepsen.toxiproxy import Toxiproxy, ToxiproxyServer


@pytest_asyncio.fixture
async def connect(control_plane: ControlPlane) -> AsyncIterator[Connect]:
    """``await connect()``: an admin client of its own (closed after the test);
    ``connect(kubeconfig)`` for another kubeconfig (a proxied one)."""
    async with AsyncExitStack() as stack:

        async def make(kubeconfig: Path | None = None) -> KubeApi:
            api = await KubeApi.connect(str(kubeconfig or control_plane.kubeconfig))
            stack.push_async_callback(api.close)
            return api

        yield make


@pytest.fixture(scope="session")
def toxiproxy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToxiproxyServer]:
    with ToxiproxyServer(tmp_path_factory.mktemp("toxiproxy")) as server:
        yield server


@pytest.fixture
def toxiproxy(toxiproxy_server: ToxiproxyServer) -> Iterator[Toxiproxy]:
    """The API; every proxy enabled and every toxic removed after the test."""
    yield toxiproxy_server.api
    toxiproxy_server.api.reset()
