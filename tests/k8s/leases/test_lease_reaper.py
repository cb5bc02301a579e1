"""The reaper removes Leases whose lock the backend no longer holds, against the real API."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from kubernetes import client
from lease_support import STORE, Cluster

import lockyard
from lockyard.kube import KubeApi
from lockyard.mirror import Holder, MirroredLease, enable_lease_mirroring
from lockyard_dev.servers.redis import RedisServer
from lockyard_operator.reaper import REAP_INTERVAL_S, reap_leases


async def locks_of(cluster: Cluster) -> set[str]:
    return {MirroredLease.from_object(obj).lock for obj in await cluster.leases()}


async def test_reaper_removes_stale_leases_and_keeps_live_ones(
    memory: lockyard.Connection, k8s_api: client.ApiClient, kube_api: KubeApi, cluster: Cluster
) -> None:
    mirror = enable_lease_mirroring(memory, STORE, cluster.namespace, k8s_api,
                                    holder=Holder("gone"))  # fmt: skip
    live = await memory.locks.acquire("live", ttl=60, timeout=1)
    await memory.locks.acquire("broken", ttl=60, timeout=1)
    await memory.locks.acquire("expired", ttl=0.5, timeout=1)
    await mirror.flush()
    # The holder's mirror stops (as when its process dies): its Leases stay behind.
    await mirror.close()
    assert await locks_of(cluster) == {"live", "broken", "expired"}
    assert await memory.locks.break_lock("broken")
    await asyncio.sleep(0.6)  # "expired" runs out
    await memory.locks.acquire("unmirrored", ttl=60, timeout=1)

    result = await reap_leases(kube_api, cluster.namespace, STORE, memory.locks)
    assert result.held == 2  # live, unmirrored: what status.locks.held reports
    assert result.leases == 3
    assert result.deleted == 2
    assert result.corrected == 0
    assert result.unmirrored == 1
    assert await locks_of(cluster) == {"live"}

    again = await reap_leases(kube_api, cluster.namespace, STORE, memory.locks)
    assert (again.deleted, again.leases, again.held) == (0, 1, 2)
    await live.release()
    await reap_leases(kube_api, cluster.namespace, STORE, memory.locks)
    assert await locks_of(cluster) == set()


async def test_reaper_corrects_a_live_lock_whose_lease_looks_expired(
    memory: lockyard.Connection, k8s_api: client.ApiClient, kube_api: KubeApi, cluster: Cluster
) -> None:
    mirror = enable_lease_mirroring(memory, STORE, cluster.namespace, k8s_api)
    guard = await memory.locks.acquire("renewed-offline", ttl=1, timeout=1)
    await mirror.flush()
    await mirror.close()  # renewals from now on never reach the API
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        await guard.extend(1)
        await asyncio.sleep(0.3)
    (stale,) = [MirroredLease.from_object(obj) for obj in await cluster.leases()]
    assert stale.expired(time.time())

    result = await reap_leases(kube_api, cluster.namespace, STORE, memory.locks)
    assert (result.corrected, result.deleted, result.held) == (1, 0, 1)
    (fixed,) = [MirroredLease.from_object(obj) for obj in await cluster.leases()]
    assert fixed.fencing_token == guard.fencing_token
    assert not fixed.expired(time.time())
    await guard.release()


async def test_reaper_on_a_client_connected_from_a_kubeconfig(
    kubeconfig: Path, memory: lockyard.Connection, k8s_api: client.ApiClient, cluster: Cluster
) -> None:
    """As the operator runs it: ``KubeApi.connect`` on a kubeconfig, its own credentials."""
    mirror = enable_lease_mirroring(memory, STORE, cluster.namespace, k8s_api)
    await memory.locks.acquire("broken", ttl=60, timeout=1)
    await mirror.flush()
    await mirror.close()
    await memory.locks.break_lock("broken")
    async with await KubeApi.connect(str(kubeconfig)) as api:
        result = await reap_leases(api, cluster.namespace, STORE, memory.locks)
    assert (result.deleted, result.held) == (1, 0)
    assert await cluster.leases() == []


HOLDER = textwrap.dedent(
    """
    import asyncio, sys
    import lockyard
    from lockyard.kube import load_api_client
    from lockyard.mirror import enable_lease_mirroring

    async def main(url, kubeconfig, namespace, ttl):
        async with lockyard.connect(url) as ly:
            mirror = enable_lease_mirroring(ly, "orders", namespace, load_api_client(kubeconfig))
            async with ly.locks.hold("payroll", ttl=float(ttl)) as guard:
                await mirror.flush()
                print("holding", guard.fencing_token, flush=True)
                await asyncio.sleep(3600)

    asyncio.run(main(*sys.argv[1:]))
    """
)


@pytest.mark.e2e
async def test_a_sigkilled_holders_lease_is_reaped_within_ttl_plus_10s(
    redis_server: RedisServer, kubeconfig: Path, kube_api: KubeApi, cluster: Cluster
) -> None:
    ttl = 3.0
    url = redis_server.url("reaper")
    # A plain Popen, its line read in a thread: asyncio's subprocess transport could outlive
    # this test's loop (see lease_support.run_process).
    holder = subprocess.Popen(  # noqa: ASYNC220 (a fork and exec: it does not wait)
        [sys.executable, "-c", HOLDER, url, str(kubeconfig), cluster.namespace, str(ttl)],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        line = (await asyncio.wait_for(asyncio.to_thread(holder.stdout.readline), 60)).decode()
        assert line.startswith("holding"), line
        (lease,) = [MirroredLease.from_object(obj) for obj in await cluster.leases()]
        assert lease.lock == "payroll"
        assert lease.fencing_token == int(line.split()[1])
        os.kill(holder.pid, signal.SIGKILL)
        killed = time.monotonic()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()

    async with lockyard.connect(url) as operator_side:
        # What the operator's timer does: one pass every REAP_INTERVAL_S seconds.
        while True:
            result = await reap_leases(kube_api, cluster.namespace, STORE, operator_side.locks)
            if result.deleted:
                break
            assert result.leases == 1
            assert time.monotonic() - killed < ttl + 10, "the reaper did not act in time"
            await asyncio.sleep(REAP_INTERVAL_S)
    reaped_after = time.monotonic() - killed
    print(f"\nLease of a SIGKILLed holder reaped {reaped_after:.1f}s after the kill (TTL {ttl:g}s)")
    assert reaped_after <= ttl + 10
    assert await cluster.leases() == []
