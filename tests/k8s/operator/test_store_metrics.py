"""The operator's per-store lock gauges at ``/metrics``: locks held, and how far the Lease mirror
trails the backend, from a workload holding locks through the library with mirroring on; the
series go when the store is deleted.

Host process, not a pod: the test reads the operator's metrics port on loopback directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time

import pytest
from kubernetes import client
from operator_harness import (
    Operators,
    backend_spec,
    create_secret,
    create_store,
    eventually,
    read_secret,
    stores_path,
    wait_condition,
    wait_gone,
)

import lockyard
from lockyard.kube.api import KubeApi
from lockyard.mirror import Holder, enable_lease_mirroring
from lockyard_dev.cluster.operator_process import OperatorProcess
from lockyard_dev.servers.redis import RedisServer
from lockyard_operator.reaper import REAP_INTERVAL_S

pytestmark = [pytest.mark.k8s, pytest.mark.e2e]

STORE = "metered"
#: Long enough that a renewal (every TTL/3 = 5 s) is slower than the reaper's passes (5 s), so a
#: stalled mirror shows a lag before the reaper corrects its Leases (1 s after they expire).
TTL_S = 15.0
HELD = "lockyard_operator_locks_held"
LAG = "lockyard_operator_lease_mirror_lag_seconds"
UNMIRRORED = "lockyard_operator_locks_unmirrored"
SAMPLE = re.compile(r"^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\} (?P<value>\S+)$")


def gauges(text: str, namespace: str, store: str) -> dict[str, float]:
    """The samples of one store's series in a scrape, by metric name."""
    labels = f'namespace="{namespace}",name="{store}"'
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = SAMPLE.match(line)
        if match and match["labels"] == labels:
            found[match["name"]] = float(match["value"])
    return found


async def scrape(operator: OperatorProcess, namespace: str) -> dict[str, float]:
    return gauges(await asyncio.to_thread(operator.metrics), namespace, STORE)


async def test_held_locks_and_mirror_lag_per_store(
    kube: KubeApi,
    namespace: str,
    operators: Operators,
    redis_server: RedisServer,
    k8s_api: client.ApiClient,
) -> None:
    spec, secret = backend_spec("redis", redis_server)
    operators.secrets |= set(secret.values())
    operator = await operators.start()
    await create_secret(kube, namespace, "auth", secret)
    await create_store(kube, namespace, STORE, {**spec, "locks": {"leaseMirroring": True}})
    store = await wait_condition(kube, namespace, STORE, "Ready", "True")
    url = (await read_secret(kube, namespace, store["status"]["binding"]["name"]))["url"]
    # A few reaper passes, on a loaded machine.
    settle = REAP_INTERVAL_S * 4

    async with lockyard.connect(url) as ly, contextlib.AsyncExitStack() as holds:
        mirror = enable_lease_mirroring(ly, STORE, namespace, k8s_api, holder=Holder("worker"))
        for lock in ("invoice-1", "invoice-2"):
            await holds.enter_async_context(ly.locks.hold(lock, ttl=TTL_S, timeout=5))

        async def both_held_and_mirrored() -> dict[str, float] | None:
            seen = await scrape(operator, namespace)
            ok = seen.get(HELD) == 2 and seen.get(UNMIRRORED) == 0 and LAG in seen
            return seen if ok else None

        seen = await eventually(both_held_and_mirrored, "2 held, mirrored locks", settle, 0.5)
        print(f"healthy mirror: {seen}")
        # A working mirror writes each renewal within its rewrite spacing (1 s): at worst a
        # pass lands between a renewal and its write, one renewal period (TTL/3) behind.
        assert math.isfinite(seen[LAG]), seen
        assert 0 <= seen[LAG] <= TTL_S / 3 + 1, seen

        # The mirror stops (its holder keeps renewing on the backend): the Leases stay at their
        # last renewal and the lag grows by one renewal period at each renewal.
        await mirror.close()
        stalled_at = time.monotonic()

        async def lagging() -> dict[str, float] | None:
            seen = await scrape(operator, namespace)
            return seen if seen.get(LAG, 0.0) >= 1.0 else None

        seen = await eventually(lagging, "the lag of a stopped mirror", settle, 0.5)
        stalled_for = time.monotonic() - stalled_at
        print(f"stopped mirror, {stalled_for:.1f}s later: {seen}")
        assert seen[HELD] == 2, seen
        # Whole renewals (TTL/3 apart) the Leases missed: at least one, and no more than have
        # happened since the last renewal the mirror wrote (at most a renewal before it stopped).
        assert seen[LAG] >= TTL_S / 3 - 1, seen
        assert seen[LAG] <= stalled_for + TTL_S / 3 + 1, seen

    await kube.delete(stores_path(namespace, STORE))
    await wait_gone(kube, stores_path(namespace, STORE), timeout=60)

    async def series_gone() -> bool:
        text = await asyncio.to_thread(operator.metrics)
        return f'namespace="{namespace}",name="{STORE}"' not in text

    await eventually(series_gone, "the store's series to go", 10, 0.2)
