"""Semaphore permits and read-write lock holders as Leases, on real backends: one Lease per
permit or holder (``lockyard.dev/kind``), listed by ``lockyard locks`` with its kind, checked by
``--verify``, reaped when stale, and broken by ``lockyard locks break`` (the holder's ``hold()``
loses, its fenced writes are refused, its Lease goes)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from lease_support import STORE, Cli, Cluster, publish_binding

import lockyard
from lockyard.errors import LockLostError
from lockyard.kube import KubeApi, KubeClient
from lockyard.mirror import Holder, LeaseMirror, enable_lease_mirroring
from lockyard.mirror.lease_names import (
    FENCING_ANNOTATION,
    KIND_LABEL,
    LIMIT_ANNOTATION,
    LOCK_ANNOTATION,
    is_dns_label,
    lease_name,
    permit_key,
)
from lockyard.mirror.leases import MirroredLease
from lockyard.mirror.registry import permit_tables
from lockyard.permits import PermitGuard
from lockyard_dev.servers.moto import MotoServer
from lockyard_dev.servers.postgres import PostgresServer
from lockyard_dev.servers.redis import RedisServer
from lockyard_operator.reaper import reap_leases

#: Lease TTL of the holds: renewed every TTL/3, so a broken holder learns within about that.
TTL_S = 3.0


@pytest.fixture(params=["redis", "postgresql", "dynamodb"])
def backend_url(request: pytest.FixtureRequest) -> str:
    """A fresh prefix on a real server of each backend that implements permits."""
    prefix = f"permits{secrets.token_hex(4)}"
    if request.param == "redis":
        redis: RedisServer = request.getfixturevalue("redis_server")
        return redis.url(prefix)
    if request.param == "postgresql":
        postgres: PostgresServer = request.getfixturevalue("postgres_server")
        return postgres.url(prefix=prefix)
    moto: MotoServer = request.getfixturevalue("moto_server")
    return moto.url("lease-permits", prefix)


def table(text: str) -> list[list[str]]:
    return [re.split(r"\s{3,}", line.strip()) for line in text.splitlines() if line.strip()]


class Holds:
    """Runs ``hold()`` blocks in their own tasks, as a workload would; records how each ended."""

    def __init__(self) -> None:
        self._ended: dict[int, asyncio.Future[BaseException | None]] = {}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, hold: Callable[[], Any]) -> PermitGuard:
        loop = asyncio.get_running_loop()
        entered: asyncio.Future[PermitGuard] = loop.create_future()
        ended: asyncio.Future[BaseException | None] = loop.create_future()

        async def run() -> None:
            try:
                async with hold() as guard:
                    entered.set_result(guard)
                    await self._stop.wait()
            except LockLostError as exc:
                ended.set_result(exc)
            except BaseException as exc:
                if not entered.done():  # the acquisition itself failed: the test sees why
                    entered.set_exception(exc)
                raise
            else:
                ended.set_result(None)

        self._tasks.append(asyncio.create_task(run()))
        guard = await entered
        self._ended[id(guard)] = ended
        return guard

    async def lost(self, guard: PermitGuard, within: float) -> BaseException | None:
        """How ``guard``'s block ended (its ``LockLostError``), waiting at most ``within``."""
        return await asyncio.wait_for(asyncio.shield(self._ended[id(guard)]), within)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def holds() -> AsyncIterator[Holds]:
    running = Holds()
    try:
        yield running
    finally:
        await running.stop()


async def permit_leases(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    return [
        obj
        for obj in await cluster.leases()
        if obj["metadata"]["annotations"][LOCK_ANNOTATION] == name
    ]


def tokens_of(leases: list[dict[str, Any]]) -> set[int]:
    return {int(obj["metadata"]["annotations"][FENCING_ANNOTATION]) for obj in leases}


async def test_semaphore_permits_are_leases_listed_verified_reaped_and_broken(
    backend_url: str,
    kubeconfig: Path,
    k8s_api: client.ApiClient,
    kube: KubeClient,
    kube_api: KubeApi,
    cluster: Cluster,
) -> None:
    cli, ns = Cli(kubeconfig), cluster.namespace
    await publish_binding(kube, ns, STORE, backend_url)
    async with (
        lockyard.connect(backend_url) as app,
        lockyard.connect(backend_url) as dying,
        lockyard.connect(backend_url) as plain,
        holds() as running,
    ):
        mirror = enable_lease_mirroring(app, STORE, ns, k8s_api, holder=Holder("worker"))
        permits = [
            await running.start(lambda: app.semaphores.hold("jobs", limit=3, ttl=TTL_S))
            for _ in range(3)
        ]
        await mirror.flush()

        # One Lease per permit, labelled with its kind, each a valid name of its own.
        leases = await permit_leases(cluster, "jobs")
        assert len(leases) == 3
        assert {obj["metadata"]["labels"][KIND_LABEL] for obj in leases} == {"semaphore"}
        assert {obj["metadata"]["annotations"][LIMIT_ANNOTATION] for obj in leases} == {"3"}
        assert tokens_of(leases) == {p.fencing_token for p in permits}
        assert len({obj["metadata"]["name"] for obj in leases}) == 3
        assert all(is_dns_label(obj["metadata"]["name"]) for obj in leases)
        assert {obj["spec"]["holderIdentity"] for obj in leases} == {
            f"worker_{p.owner[:8]}" for p in permits
        }

        # A permit whose holder's mirror is gone, then released behind its back: its Lease
        # stays (stale); a permit held with no mirror at all has no Lease (missing).
        dying_mirror = enable_lease_mirroring(dying, STORE, ns, k8s_api, holder=Holder("gone"))
        abandoned = await dying.semaphores.acquire("reports", limit=2, ttl=60, timeout=5)
        await dying_mirror.flush()
        await dying_mirror.close()
        assert await plain.semaphores.break_permit("reports", abandoned.owner)
        unmirrored = await plain.semaphores.acquire("reports", limit=2, ttl=60, timeout=5)

        code, out, err = await cli("locks", "-A", "-o", "json", "--store", STORE)
        assert (code, err) == (0, "")
        items = [item for item in json.loads(out)["items"] if item["namespace"] == ns]
        jobs = [item for item in items if item["lock"] == "jobs"]
        assert {item["kind"] for item in jobs} == {"semaphore"}
        assert {item["fencingToken"] for item in jobs} == {p.fencing_token for p in permits}

        code, out, err = await cli("locks", "-A", "--store", STORE)
        assert (code, err) == (0, "")
        rows = [row for row in table(out) if row[0] in ("NAMESPACE", ns)]
        assert rows[0][:4] == ["NAMESPACE", "STORE", "KIND", "LOCK"]
        assert sorted(row[2:4] for row in rows[1:]) == [["semaphore", "jobs"]] * 3 + [
            ["semaphore", "reports"]
        ]

        code, out, err = await cli("locks", "-n", ns, "--verify", "-o", "json")
        assert (code, err) == (0, "")
        verdicts = sorted(
            (item["lock"], item["kind"], item["fencingToken"], item["verified"])
            for item in json.loads(out)["items"]
        )
        assert verdicts == sorted(
            [("jobs", "semaphore", p.fencing_token, "held") for p in permits]
            + [
                ("reports", "semaphore", abandoned.fencing_token, "stale"),
                ("reports", "semaphore", unmirrored.fencing_token, "missing"),
            ]
        )

        # The reaper: a pass without the permit tables cannot judge permit Leases and leaves
        # them; with them it deletes the stale one and keeps the live ones.
        blind = await reap_leases(kube_api, ns, STORE, plain.locks)
        assert blind.deleted == 0
        result = await reap_leases(kube_api, ns, STORE, plain.locks, permits=permit_tables(plain))
        assert (result.deleted, result.held, result.unmirrored) == (1, 4, 1)
        assert await permit_leases(cluster, "reports") == []
        assert len(await permit_leases(cluster, "jobs")) == 3

        # break: several holders need a choice; then the chosen one is broken.
        base = ("locks", "break", "jobs", "--store", STORE, "-n", ns, "--yes")
        code, out, err = await cli(*base)
        assert code == 2
        assert "has 3 holders" in err
        assert "--fencing TOKEN" in err
        victim, *others = permits
        code, out, err = await cli(*base, "--fencing", str(victim.fencing_token))
        assert (code, err) == (0, "")
        assert f"semaphore permit 'jobs' of StateStore {ns}/{STORE} broken" in out
        assert f"(fencing token {victim.fencing_token})" in out

        # The holder learns at its next renewal, at the latest at its local lease deadline.
        error = await running.lost(victim, within=TTL_S + 2)
        assert isinstance(error, LockLostError)
        assert victim.lost.is_set()
        with pytest.raises(LockLostError):
            await app.store.set("app:t1:report:1", "late", fence=victim)
        assert await app.store.get("app:t1:report:1") is None
        # A renewal the mirror had queued before the break may have re-created the Lease after
        # the CLI deleted it; the holder's loss then deletes it again.
        await mirror.flush()
        assert tokens_of(await permit_leases(cluster, "jobs")) == {p.fencing_token for p in others}
        assert all(not p.lost.is_set() for p in others)
        # The freed permit is handed out again, with a higher fencing token.
        again = await running.start(lambda: app.semaphores.hold("jobs", limit=3, ttl=TTL_S))
        assert again.fencing_token > max(p.fencing_token for p in permits)

        await running.stop()
        await mirror.flush()
        assert await permit_leases(cluster, "jobs") == []
        await unmirrored.release()


async def test_rwlock_readers_and_writer_are_leases_and_breakable(
    backend_url: str,
    kubeconfig: Path,
    k8s_api: client.ApiClient,
    kube: KubeClient,
    cluster: Cluster,
) -> None:
    cli, ns = Cli(kubeconfig), cluster.namespace
    await publish_binding(kube, ns, STORE, backend_url)
    async with lockyard.connect(backend_url) as app, holds() as running:
        mirror: LeaseMirror = enable_lease_mirroring(
            app, STORE, ns, k8s_api, holder=Holder("reader")
        )
        readers = [
            await running.start(lambda: app.rwlocks.hold_read("catalog", ttl=TTL_S))
            for _ in range(2)
        ]
        await mirror.flush()
        leases = await permit_leases(cluster, "catalog")
        assert {obj["metadata"]["labels"][KIND_LABEL] for obj in leases} == {"rwlock-read"}
        assert tokens_of(leases) == {r.fencing_token for r in readers}

        code, out, err = await cli("locks", "-n", ns, "--verify")
        assert (code, err) == (0, "")
        rows = table(out)
        assert rows[0][:3] == ["STORE", "KIND", "LOCK"]
        assert (
            sorted((row[1], row[2], row[-1]) for row in rows[1:])
            == [("rwlock-read", "catalog", "held")] * 2
        )

        # Break one reader; the other keeps reading.
        base = ("locks", "break", "catalog", "--store", STORE, "-n", ns, "--yes")
        broken, kept = readers
        code, out, err = await cli(
            *base, "--kind", "rwlock-read", "--fencing", str(broken.fencing_token)
        )
        assert (code, err) == (0, "")
        assert f"read lock 'catalog' of StateStore {ns}/{STORE} broken" in out
        assert isinstance(await running.lost(broken, within=TTL_S + 2), LockLostError)
        assert not kept.lost.is_set()
        await mirror.flush()
        assert tokens_of(await permit_leases(cluster, "catalog")) == {kept.fencing_token}

        # The remaining reader leaves; a writer comes in with a Lease of its own.
        await running.stop()
        running = Holds()
        try:
            writer = await running.start(lambda: app.rwlocks.hold_write("catalog", ttl=TTL_S))
            await mirror.flush()
            (lease,) = await permit_leases(cluster, "catalog")
            assert lease["metadata"]["labels"][KIND_LABEL] == "rwlock-write"
            assert tokens_of([lease]) == {writer.fencing_token}
            code, out, err = await cli("locks", "-n", ns, "-o", "yaml")
            assert code == 0
            assert "kind: rwlock-write" in out

            # One holder: no --fencing needed. The writer loses; its fenced write is refused.
            code, out, err = await cli(*base)
            assert (code, err) == (0, "")
            assert f"write lock 'catalog' of StateStore {ns}/{STORE} broken" in out
            assert isinstance(await running.lost(writer, within=TTL_S + 2), LockLostError)
            with pytest.raises(LockLostError):
                await app.store.set("app:t1:catalog:1", "stale", fence=writer)
            assert await app.store.get("app:t1:catalog:1") is None
            await mirror.flush()
            assert await permit_leases(cluster, "catalog") == []

            code, out, err = await cli(*base)
            assert code == 1
            assert err == f"error: lock 'catalog' of StateStore {ns}/{STORE} is not held\n"
        finally:
            await running.stop()


def test_a_permit_key_names_a_lease_no_lock_can_have() -> None:
    key = permit_key("semaphore", "jobs", 7)
    name = lease_name(STORE, key)
    assert is_dns_label(name)
    assert name.startswith(f"lockyard-{STORE}-semaphore-jobs-7-")
    # A lock whose name sanitizes the same way gets another Lease (the hash is of exact names).
    assert lease_name(STORE, "semaphore/jobs/7") != name
    lease = MirroredLease.from_object(
        {
            "metadata": {
                "name": name,
                "labels": {KIND_LABEL: "rwlock-write"},
                "annotations": {
                    LOCK_ANNOTATION: "jobs",
                    "lockyard.dev/store": STORE,
                    FENCING_ANNOTATION: "7",
                },
            }
        }
    )
    assert (lease.kind, lease.permit_space) == ("rwlock-write", "rwlock")
    assert lease.is_mirror_of(STORE, permit_key("rwlock", "jobs", 7))
    assert not lease.is_mirror_of(STORE, key)  # another space
    assert not lease.is_mirror_of(STORE, "jobs")  # the lock of that name
