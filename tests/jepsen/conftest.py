"""Real servers for the Jepsen tests and the wire fuzzer, and toxiproxy, one each per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lockyard_dev.cluster.controlplane import ControlPlane
from lockyard_dev.jepsen.toxiproxy import Toxiproxy, ToxiproxyServer


@pytest.fixture(scope="session")
def toxiproxy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToxiproxyServer]:
    """toxiproxy-server (built from tools/toxiproxy on first use) on a free loopback port."""
    folder: Path = tmp_path_factory.mktemp("toxiproxy")
    with ToxiproxyServer(folder) as server:
        yield server


@pytest.fixture
def toxiproxy(toxiproxy_server: ToxiproxyServer) -> Iterator[Toxiproxy]:
    """The API, with every proxy enabled and every toxic gone again after the test."""
    yield toxiproxy_server.api
    toxiproxy_server.api.reset()


@pytest.fixture(scope="session")
def jepsen_control_plane() -> Iterator[ControlPlane]:
    """A control plane of this folder's own (tests/k8s's fixtures are not visible here)."""
    with ControlPlane() as plane:
        yield plane
