"""A Lease appears within one second (p99) of its lock's acquisition, seen by a watcher."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time

from lease_support import STORE, Cluster

import lockyard
from lockyard.kube.paths import leases_path
from lockyard.mirror import LeaseMirror
from lockyard.mirror.lease_names import LOCK_ANNOTATION, MANAGED_BY_LABEL, store_selector

ACQUISITIONS = 50
P99_LIMIT_S = 1.0


def nearest_rank(values: list[float], percent: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(percent / 100 * len(ordered)) - 1))]


async def test_leases_appear_within_a_second_p99(
    memory: lockyard.Connection, mirrored: LeaseMirror, cluster: Cluster
) -> None:
    loop = asyncio.get_running_loop()
    arrived: dict[str, float] = {}
    signals: dict[str, asyncio.Event] = {}
    stop = threading.Event()
    listed = await asyncio.to_thread(
        cluster.kube.get, leases_path(cluster.namespace), {"labelSelector": store_selector(STORE)}
    )

    def record(lock: str, at: float) -> None:
        arrived.setdefault(lock, at)
        signals.setdefault(lock, asyncio.Event()).set()

    def watch() -> None:
        for event in cluster.kube.watch(
            leases_path(cluster.namespace),
            params={"labelSelector": f"{MANAGED_BY_LABEL}=lockyard"},
            resource_version=listed["metadata"]["resourceVersion"],
            timeout_seconds=300,
        ):
            if stop.is_set():
                return
            if event.get("type") == "ADDED":
                seen = time.time()
                lock = event["object"]["metadata"]["annotations"].get(LOCK_ANNOTATION, "")
                loop.call_soon_threadsafe(record, lock, seen)

    watcher = threading.Thread(target=watch, name="lease-watcher", daemon=True)
    watcher.start()
    latencies: list[float] = []
    try:
        for index in range(ACQUISITIONS):
            lock = f"job-{index}"
            signal = signals.setdefault(lock, asyncio.Event())
            guard = await memory.locks.acquire(lock, ttl=30, timeout=1)
            async with asyncio.timeout(10):
                await signal.wait()
            latencies.append(arrived[lock] - guard.renewed_at)
            await guard.release()
    finally:
        stop.set()
        # One more event wakes the watcher so it can see the stop flag.
        sentinel = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "stop-watch", "labels": {MANAGED_BY_LABEL: "lockyard"}},
            "spec": {},
        }
        await asyncio.to_thread(cluster.kube.create, leases_path(cluster.namespace), sentinel)
        await asyncio.to_thread(watcher.join, 30)
    p50, p99 = statistics.median(latencies), nearest_rank(latencies, 99)
    print(f"\nLease appearance over {ACQUISITIONS} acquisitions: p50 {p50 * 1000:.0f} ms, "
          f"p99 {p99 * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")  # fmt: skip
    assert not watcher.is_alive()
    assert p99 <= P99_LIMIT_S, sorted(latencies)
