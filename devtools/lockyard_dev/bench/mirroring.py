"""The ``mirroring-on`` benchmark scenario: the same connection, with its locks mirrored.

``lockyard_dev.bench`` runs a scenario's lock cycles next to the default's, so the report compares
cycles with mirroring on and off (the issue's goal: at least 0.95x). This scenario attaches a
:class:`~lockyard.mirror.LeaseMirror` writing to the cluster of ``$KUBECONFIG`` in namespace
``$LOCKYARD_BENCH_NAMESPACE`` (default ``default``), as store ``bench``. ``make bench`` runs the
benchmark under a throwaway control plane (``python -m lockyard_dev.cluster.controlplane run``)
so the variable is set; by hand, ``make cluster-up`` prints it.

``lease_visibility`` is the scenario's probe: how long after an acquisition its Lease can be read
from the API server (the issue's goal: p99 within 1 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator

from lockyard.connection import Connection
from lockyard.errors import ConfigError
from lockyard_dev.bench.stats import VISIBLE_P50_MS, VISIBLE_P99_MS, percentile

STORE = "bench"
#: Acquisitions timed per pass by the probe.
VISIBILITY_SAMPLES = 20
#: Pause between two reads of a Lease that is not there yet.
POLL_S = 0.005
#: Give up on one Lease after this long (the sample then counts as this long).
VISIBILITY_LIMIT_S = 10.0


def _namespace() -> str:
    return os.environ.get("LOCKYARD_BENCH_NAMESPACE", "default")


@contextlib.asynccontextmanager
async def mirroring_on(connection: Connection) -> AsyncIterator[None]:
    """Mirror ``connection``'s locks for the duration of the block."""
    if not os.environ.get("KUBECONFIG"):
        raise ConfigError(
            "the mirroring-on scenario needs a cluster: run it through `make bench` (which "
            "starts one), or `make cluster-up` and export the KUBECONFIG it prints"
        )
    from lockyard.mirror import enable_lease_mirroring

    mirror = enable_lease_mirroring(connection, STORE, _namespace())
    try:
        yield
    finally:
        await mirror.close()


async def lease_visibility(connection: Connection) -> dict[str, float]:
    """Seconds from ``acquire`` returning to its Lease being readable, over a few acquisitions.

    Each sample takes a fresh lock name (so no write is coalesced with the previous release),
    reads the Lease every 5 ms until the API server has it, then releases.
    """
    from lockyard.kube.api import KubeApi
    from lockyard.kube.paths import leases_path
    from lockyard.mirror.lease_names import lease_name

    kube = await KubeApi.connect()
    namespace, tag = _namespace(), uuid.uuid4().hex[:6]
    latencies: list[float] = []
    try:
        for index in range(VISIBILITY_SAMPLES):
            lock = f"bench-visible-{tag}-{index}"
            guard = await connection.locks.acquire(lock, 30, timeout=5)
            started = time.perf_counter()
            name = lease_name(STORE, lock)
            try:
                while time.perf_counter() - started < VISIBILITY_LIMIT_S:
                    if await kube.get_or_none(leases_path(namespace, name)) is not None:
                        break
                    await asyncio.sleep(POLL_S)
                latencies.append(time.perf_counter() - started)
            finally:
                await guard.release()
    finally:
        await kube.close()
    ordered = sorted(seconds * 1000 for seconds in latencies)
    return {
        VISIBLE_P50_MS: percentile(ordered, 50),
        VISIBLE_P99_MS: percentile(ordered, 99),
        "samples": float(len(ordered)),
    }
