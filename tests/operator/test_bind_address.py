"""``--bind-address``: two replicas on one host network (hostNetwork, one per node) serve their
metrics and health endpoints on the same ports, each on its own node's address."""

from __future__ import annotations

import functools

import aiohttp
import pytest

from lockyard_dev.servers.process import free_port
from lockyard_operator.__main__ import parse_options, url_host
from lockyard_operator.health import HealthServer
from lockyard_operator.metrics import Metrics, MetricsServer


def test_bind_address_defaults_to_every_interface() -> None:
    assert parse_options(["-A"]).bind_address == "0.0.0.0"
    assert parse_options(["-A", "--bind-address", "127.0.0.2"]).bind_address == "127.0.0.2"
    assert url_host("127.0.0.2") == "127.0.0.2"
    assert url_host("::1") == "[::1]"


def test_identity_names_the_pod_not_the_shared_hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_ID", "lockyard-operator-5d9c-x2x7q")
    election = parse_options(["-A", "--leader-elect"]).election
    assert election is not None
    pod, _, unique = election.identity.rpartition("_")
    assert pod == "lockyard-operator-5d9c-x2x7q"
    assert len(unique) == 36


async def test_two_replicas_share_ports_on_their_own_addresses() -> None:
    metrics_port, health_port = free_port(), free_port()
    servers: list[MetricsServer | HealthServer] = []
    for address in ("127.0.0.1", "127.0.0.2"):
        metrics = Metrics()
        metrics.backend_up.set("ns", address, value=1)
        servers.append(MetricsServer(metrics, metrics_port, address))
        servers.append(HealthServer(functools.partial(dict, address=address), health_port, address))
    try:
        for server in servers:
            await server.start()
        async with aiohttp.ClientSession() as session:
            for address in ("127.0.0.1", "127.0.0.2"):
                async with session.get(f"http://{address}:{health_port}/healthz") as response:
                    assert response.status == 200
                    assert await response.json() == {"address": address}
                async with session.get(f"http://{address}:{metrics_port}/metrics") as response:
                    assert f'name="{address}"' in await response.text()
    finally:
        for server in servers:
            await server.stop()
