"""What the probe costs with many stores on one backend: 200 StateStores on one Redis, and on one
PostgreSQL, probed at the default interval. Measured: the operator's CPU and memory, the
backend's open connections, and the new connections (fresh logins) it accepts per interval.

Bounds checked: every store stays Ready; the backend never holds more than the kept connection
plus one probe connection per store; every store is probed in the window, none more than once
per interval, and each probe logs in afresh. The figures are printed (``-s``) for
docs/operator.md.

Host process, not a pod: its CPU and memory are read from its pid, with no container
accounting in between.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from operator_harness import Operators, backend_spec, condition, create_secret, stores_path

from lockyard.config.resource import API_GROUP, API_VERSION, DEFAULT_PROBE_INTERVAL_S
from lockyard.kube.api import KubeApi
from lockyard_dev.servers.postgres import PostgresServer
from lockyard_dev.servers.redis import RedisServer

pytestmark = [pytest.mark.k8s, pytest.mark.e2e, pytest.mark.slow]

STORES = 200
INTERVAL_S = DEFAULT_PROBE_INTERVAL_S
#: Intervals measured once every store is Ready.
MEASURED_INTERVALS = 3
#: Connections a store may hold on the backend: the kept one, plus one while it is probed.
CONNECTIONS_PER_STORE = 2
#: The harness's own admin connection and the backend's background processes. (Runs that
#: counted 415 and 438 for 200 stores were a Redis handle keeping a second, idle connection
#: from loading its scripts: fixed, a handle now holds one.)
OTHER_CONNECTIONS = 10


@dataclass(frozen=True)
class Sample:
    at: float
    connections: int
    logins: int
    cpu_s: float
    rss_mb: float


def process_usage(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) and resident memory (MiB) of ``pid``, from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/status") as status:
        rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return cpu, rss_kb / 1024


#: ``() -> (open connections, connections accepted so far)`` of the backend.
BackendCounts = Callable[[], Awaitable[tuple[int, int]]]


@pytest.fixture(params=["redis", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Iterator[tuple[str, Any]]:
    kind = request.param
    server: Any = (
        RedisServer(password="cost-redis-5e1b")
        if kind == "redis"
        else PostgresServer(password="cost-pg-5e1b", settings={"max_connections": "600"})
    )
    with server:
        yield kind, server


def counter(kind: str, server: Any) -> BackendCounts:
    if kind == "redis":

        async def redis_counts() -> tuple[int, int]:
            def read() -> tuple[int, int]:
                with server.admin() as admin:
                    clients, stats = admin.info("clients"), admin.info("stats")
                # Minus this admin connection itself.
                return clients["connected_clients"] - 1, stats["total_connections_received"]

            return await asyncio.to_thread(read)

        return redis_counts

    async def postgres_counts() -> tuple[int, int]:
        connection = await asyncpg.connect(server.dsn())
        try:
            row = await connection.fetchrow(
                "SELECT (SELECT count(*) FROM pg_stat_activity"
                "        WHERE backend_type = 'client backend') - 1 AS open,"
                "       (SELECT sum(sessions) FROM pg_stat_database) AS accepted"
            )
        finally:
            await connection.close()
        assert row is not None
        return int(row["open"]), int(row["accepted"])

    return postgres_counts


def probes_by_store(metrics: str) -> Counter[str]:
    """Probes the operator counted per store (``lockyard_operator_probes_total``, every result)."""
    counts: Counter[str] = Counter()
    for line in metrics.splitlines():
        if line.startswith("lockyard_operator_probes_total{"):
            labels, value = line.rsplit(" ", 1)
            name = re.search(r'name="([^"]*)"', labels)
            assert name is not None, f"a probe count without a store name: {line}"
            counts[name.group(1)] += int(float(value))
    return counts


async def all_ready(kube: KubeApi, namespace: str) -> int:
    found = await kube.get(stores_path(namespace))
    return sum(
        1 for item in found.get("items") or [] if condition(item, "Ready").get("status") == "True"
    )


@pytest.mark.timeout(1200)  # above the test's own 600 s wait for readiness, so its message wins
async def test_probe_cost_with_200_stores_on_one_backend(
    kube: KubeApi, namespace: str, operators: Operators, backend: tuple[str, Any]
) -> None:
    kind, server = backend
    spec, secret = backend_spec(kind, server)
    operators.secrets |= set(secret.values())
    # The Secret first: created after the operator started, its event could reach the Secret
    # watch only once the stores exist, and reconcile all of them inside the measurement.
    await create_secret(kube, namespace, "auth", secret)
    operator = await operators.start()
    counts = counter(kind, server)

    started = time.monotonic()
    body = {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "StateStore"}
    for batch in range(0, STORES, 20):
        await asyncio.gather(
            *(
                kube.create(
                    stores_path(namespace),
                    {
                        **body,
                        "metadata": {"name": f"s{i:03d}"},
                        "spec": {**spec, "probeIntervalSeconds": INTERVAL_S},
                    },
                )
                for i in range(batch, min(batch + 20, STORES))
            )
        )
    deadline = time.monotonic() + 600
    while (ready := await all_ready(kube, namespace)) < STORES:
        assert time.monotonic() < deadline, f"only {ready} of {STORES} stores became Ready"
        await asyncio.sleep(1)
    print(f"\n{kind}: {STORES} stores Ready after {time.monotonic() - started:.1f}s")

    probes_before = probes_by_store(await asyncio.to_thread(operator.metrics))
    samples: list[Sample] = []
    end = time.monotonic() + MEASURED_INTERVALS * INTERVAL_S
    while time.monotonic() < end:
        connections, logins = await counts()
        cpu, rss = process_usage(operator.pid)
        samples.append(Sample(time.monotonic(), connections, logins, cpu, rss))
        await asyncio.sleep(0.5)

    probed = probes_by_store(await asyncio.to_thread(operator.metrics))
    probed.subtract(probes_before)
    probes = probed.total()
    first, last = samples[0], samples[-1]
    span = last.at - first.at
    cpu_share = (last.cpu_s - first.cpu_s) / span
    # Each sample opened one connection of its own: not the operator's.
    own = len(samples) - 1
    logins_per_interval = (last.logins - first.logins - own) / span * INTERVAL_S
    probes_per_interval = probes / span * INTERVAL_S
    peak = max(s.connections for s in samples)
    print(
        f"{kind}: {STORES} stores, probe every {INTERVAL_S}s, measured {span:.0f}s: "
        f"operator CPU {cpu_share * 100:.1f}% of a core, RSS {last.rss_mb:.0f} MiB; backend "
        f"connections open {min(s.connections for s in samples)}..{peak}, "
        f"{probes_per_interval:.0f} probes and {logins_per_interval:.0f} new connections per "
        f"interval (load {os.getloadavg()[0]:.1f})"
    )
    assert await all_ready(kube, namespace) == STORES, "the probe did not keep every store Ready"
    assert peak <= STORES * CONNECTIONS_PER_STORE + OTHER_CONNECTIONS
    # Every store is probed in the window, and none more than once per interval. A probe's
    # next wait starts when the probe ends, so a loaded machine stretches each store's cycle
    # past the interval (a quiet box shows ~190 probes per interval, one twice as slow ~100):
    # the rate is printed, and a store left unprobed for three intervals is the failure.
    # Stores created together may still probe in step: the window then holds one wave more
    # than it has intervals.
    unprobed = sorted(f"s{i:03d}" for i in range(STORES) if probed[f"s{i:03d}"] < 1)
    assert not unprobed, f"{len(unprobed)} stores were not probed in {span:.0f}s: {unprobed[:10]}"
    most = STORES * (MEASURED_INTERVALS + 1) / MEASURED_INTERVALS
    assert probes_per_interval <= most
    assert 0.7 * probes_per_interval <= logins_per_interval <= 1.1 * probes_per_interval + 5
