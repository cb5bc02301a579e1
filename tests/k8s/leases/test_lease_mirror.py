"""The Lease mirror against the real API server: what a Lease says, and when it changes."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from kubernetes import client
from lease_support import STORE, Cluster

import lockyard
from lockyard.kube.paths import leases_path
from lockyard.mirror import (
    Holder,
    LeaseMirror,
    enable_lease_mirroring,
    lease_name,
    maybe_mirror,
    mirror_of,
)
from lockyard.mirror.lease_names import (
    BACKEND_ANNOTATION,
    FENCING_ANNOTATION,
    LEASE_MS_ANNOTATION,
    LOCK_ANNOTATION,
    MANAGED_BY_LABEL,
    OWNER_ANNOTATION,
    STORE_ANNOTATION,
    STORE_LABEL,
)
from lockyard.mirror.leases import MirroredLease, parse_time
from lockyard_dev.servers.redis import RedisServer


def only(leases: list[Any]) -> dict[str, Any]:
    assert len(leases) == 1, [lease["metadata"]["name"] for lease in leases]
    lease: dict[str, Any] = leases[0]
    return lease


async def test_a_held_lock_is_mirrored_with_every_field(
    memory: lockyard.Connection, mirrored: LeaseMirror, cluster: Cluster
) -> None:
    before = time.time()
    guard = await memory.locks.acquire("invoice/17", ttl=7.5, timeout=1)
    await mirrored.flush()
    lease = only(await cluster.leases())
    metadata, spec = lease["metadata"], lease["spec"]

    assert metadata["name"] == lease_name(STORE, "invoice/17")
    assert metadata["labels"] == {MANAGED_BY_LABEL: "lockyard", STORE_LABEL: STORE}
    annotations = metadata["annotations"]
    assert annotations[LOCK_ANNOTATION] == "invoice/17"
    assert annotations[STORE_ANNOTATION] == STORE
    assert annotations[FENCING_ANNOTATION] == str(guard.fencing_token)
    assert annotations[BACKEND_ANNOTATION] == "memory"
    assert annotations[OWNER_ANNOTATION] == guard.owner[:8]
    assert annotations[LEASE_MS_ANNOTATION] == "7500"
    assert "ownerReferences" not in metadata  # the holder is not a pod

    assert spec["holderIdentity"] == f"test-holder_{guard.owner[:8]}"
    assert spec["leaseDurationSeconds"] == 8  # 7.5 s rounded up
    assert spec["leaseTransitions"] == 0
    acquired = parse_time(spec["acquireTime"])
    assert acquired is not None
    assert before - 0.01 <= acquired <= time.time()
    assert spec["renewTime"] == spec["acquireTime"]

    # extend: renewTime and the duration move, acquireTime and transitions stay.
    await asyncio.sleep(0.05)
    await guard.extend(20)
    await mirrored.flush()
    renewed = only(await cluster.leases())
    assert renewed["spec"]["acquireTime"] == spec["acquireTime"]
    renew_time = parse_time(renewed["spec"]["renewTime"])
    assert renew_time is not None
    assert renew_time > acquired
    assert renewed["spec"]["leaseDurationSeconds"] == 20
    assert renewed["metadata"]["annotations"][LEASE_MS_ANNOTATION] == "20000"
    assert renewed["spec"]["leaseTransitions"] == 0
    assert renewed["metadata"]["uid"] == metadata["uid"]

    await guard.release()
    await mirrored.flush()
    assert await cluster.leases() == []
    assert mirrored.metrics.written == 3
    assert mirrored.metrics.failed == 0


async def test_hold_renewals_are_mirrored(
    memory: lockyard.Connection, mirrored: LeaseMirror, cluster: Cluster
) -> None:
    async with memory.locks.hold("renewed", ttl=0.6) as guard:
        await mirrored.flush()
        first = MirroredLease.from_object(only(await cluster.leases()))
        await asyncio.sleep(0.9)  # at least two renewals (every ttl/3)
        await mirrored.flush()
        later = MirroredLease.from_object(only(await cluster.leases()))
        assert later.fencing_token == guard.fencing_token
        assert later.acquire_time == first.acquire_time
        assert later.renew_time is not None
        assert first.renew_time is not None
        assert later.renew_time > first.renew_time
        assert not later.expired(time.time())
    await mirrored.flush()
    assert await cluster.leases() == []


async def test_hand_over_in_one_process_counts_a_transition(
    memory: lockyard.Connection, mirrored: LeaseMirror, cluster: Cluster
) -> None:
    first = await memory.locks.acquire("shared", ttl=30, timeout=1)
    await mirrored.flush()
    created = only(await cluster.leases())
    # Release and re-acquire before the mirror writes: it sees one hand-over, not a gap.
    await first.release()
    second = await memory.locks.acquire("shared", ttl=30, timeout=1)
    await mirrored.flush()
    lease = only(await cluster.leases())
    assert lease["metadata"]["uid"] == created["metadata"]["uid"]
    assert lease["spec"]["leaseTransitions"] == 1
    assert lease["metadata"]["annotations"][FENCING_ANNOTATION] == str(second.fencing_token)
    assert lease["spec"]["holderIdentity"].endswith(second.owner[:8])
    assert parse_time(lease["spec"]["acquireTime"]) == pytest.approx(second.renewed_at, abs=1e-3)
    await second.release()
    await mirrored.flush()
    assert await cluster.leases() == []


async def test_hand_over_between_processes_takes_over_the_lease(
    redis_server: RedisServer, k8s_api: client.ApiClient, cluster: Cluster
) -> None:
    # Two handles on one Redis store stand for two processes, each with its own mirror.
    url = redis_server.url("handover")
    async with lockyard.connect(url) as one, lockyard.connect(url) as two:
        mirror_one = enable_lease_mirroring(one, STORE, cluster.namespace, k8s_api,
                                            holder=Holder("pod-one"))  # fmt: skip
        mirror_two = enable_lease_mirroring(two, STORE, cluster.namespace, k8s_api,
                                            holder=Holder("pod-two"))  # fmt: skip
        first = await one.locks.acquire("job", ttl=30, timeout=1)
        await mirror_one.flush()
        # The holder dies without a release: its lock is broken, its Lease stays behind.
        assert await two.locks.break_lock("job")
        second = await two.locks.acquire("job", ttl=30, timeout=1)
        await mirror_two.flush()
        lease = MirroredLease.from_object(only(await cluster.leases()))
        assert lease.fencing_token == second.fencing_token > first.fencing_token
        assert lease.holder.startswith("pod-two_")
        assert lease.transitions == 1

        # The old holder's late renewal or release never clobbers the newer holder's Lease.
        with pytest.raises(lockyard.LockExpiredError):
            await first.release()
        await mirror_one.flush()
        assert MirroredLease.from_object(only(await cluster.leases())).holder == lease.holder

        await second.release()
        await mirror_two.flush()
        assert await cluster.leases() == []


async def test_a_lease_past_its_lock_ttl_is_removed_by_its_holder(
    memory: lockyard.Connection, mirrored: LeaseMirror, cluster: Cluster
) -> None:
    guard = await memory.locks.acquire("forgotten", ttl=0.5, timeout=1)
    await mirrored.flush()
    assert len(await cluster.leases()) == 1
    # Never released nor renewed: the mirror deletes the Lease when the lease runs out.
    await cluster.eventually(lambda: _none_left(cluster), "the expired Lease to go", timeout=5)
    assert not await guard.is_held()


async def _none_left(cluster: Cluster) -> bool:
    return not await cluster.leases()


async def test_a_name_collision_moves_the_lock_to_another_name(
    memory: lockyard.Connection, mirrored: LeaseMirror, cluster: Cluster
) -> None:
    # Another lock's Lease already sits at the name this lock hashes to (a 48-bit collision,
    # made here by hand): the mirror must not take it over.
    taken = lease_name(STORE, "victim")
    foreign = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": taken,
            "labels": {MANAGED_BY_LABEL: "lockyard", STORE_LABEL: STORE},
            "annotations": {
                LOCK_ANNOTATION: "someone-else",
                STORE_ANNOTATION: STORE,
                FENCING_ANNOTATION: "99",
            },
        },
        "spec": {"holderIdentity": "other_00000000", "leaseDurationSeconds": 30},
    }
    await asyncio.to_thread(cluster.kube.create, leases_path(cluster.namespace), foreign)
    guard = await memory.locks.acquire("victim", ttl=30, timeout=1)
    await mirrored.flush()
    by_name = {lease["metadata"]["name"]: lease for lease in await cluster.leases()}
    assert by_name[taken]["metadata"]["annotations"][LOCK_ANNOTATION] == "someone-else"
    moved = by_name[lease_name(STORE, "victim", 1)]
    assert moved["metadata"]["annotations"][LOCK_ANNOTATION] == "victim"
    assert mirrored.metrics.collisions == 1
    await guard.release()
    await mirrored.flush()
    assert [lease["metadata"]["name"] for lease in await cluster.leases()] == [taken]


async def test_short_locks_coalesce_into_no_writes(
    memory: lockyard.Connection, mirrored: LeaseMirror, cluster: Cluster
) -> None:
    # The memory backend never yields: the mirror only sees the final state of each lock.
    for _ in range(500):
        guard = await memory.locks.acquire("flicker", ttl=30, timeout=1)
        await guard.release()
    await mirrored.flush()
    assert await cluster.leases() == []
    assert mirrored.metrics.written == 0
    assert mirrored.metrics.coalesced == 999


async def test_closing_the_connection_stops_the_mirror_and_keeps_held_leases(
    k8s_api: client.ApiClient, cluster: Cluster
) -> None:
    connection = await lockyard.connect("memory://?prefix=close")
    mirror = enable_lease_mirroring(connection, STORE, cluster.namespace, k8s_api)
    assert mirror_of(connection) is mirror
    assert enable_lease_mirroring(connection, STORE, cluster.namespace, k8s_api) is mirror
    await connection.locks.acquire("kept", ttl=30, timeout=1)
    await connection.close()  # flushes, then stops the worker (no task is left running)
    assert mirror.closed
    assert mirror_of(connection) is None
    lease = MirroredLease.from_object(only(await cluster.leases()))
    assert lease.lock == "kept"  # still held on the backend until its TTL: left to expire


async def test_maybe_mirror_follows_the_binding(
    memory: lockyard.Connection, k8s_api: client.ApiClient, namespace: str
) -> None:
    off = {"type": "lockyard", "lease-mirroring": "false"}
    assert maybe_mirror(memory, off, store_name=STORE, namespace=namespace,
                        api_client=k8s_api) is None  # fmt: skip
    on = {"type": "lockyard", "lease-mirroring": "true"}
    mirror = maybe_mirror(memory, on, store_name=STORE, namespace=namespace, api_client=k8s_api)
    assert mirror is not None
    assert mirror.store == STORE
    assert mirror.namespace == namespace
    await mirror.close()


async def test_beyond_max_locks_new_locks_are_dropped_not_queued(
    memory: lockyard.Connection, k8s_api: client.ApiClient, cluster: Cluster
) -> None:
    mirror = enable_lease_mirroring(memory, STORE, cluster.namespace, k8s_api, max_locks=2)
    guards = [await memory.locks.acquire(f"many-{i}", ttl=30, timeout=1) for i in range(3)]
    await mirror.flush()
    assert len(await cluster.leases()) == 2
    assert mirror.metrics.dropped == 1
    for guard in guards:
        await guard.release()  # the dropped lock's release is a no-op for the mirror
    await mirror.flush()
    assert await cluster.leases() == []
    await mirror.close()
