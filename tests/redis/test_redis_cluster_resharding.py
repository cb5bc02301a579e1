"""Live resharding under load: slots move between masters (``redis-cli --cluster reshard``) while
two handles write, scan, and contend for locks, and one lock is held (renewed) throughout.

Nothing may surface to callers (``MOVED`` and ``ASK`` are followed, ``TRYAGAIN`` waited out), no
acknowledged write may be lost, no lock may be broken or held twice, and fencing tokens keep
rising. Run with ``-s`` to see the measurements (docs/backends/redis-cluster.md records them).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from failover_workload import Op, Run, lock_worker, store_worker, summarize

import lockyard
from lockyard.backends.redis.cluster_backend import RedisClusterBackend
from lockyard.backends.redis.slots import key_slot
from lockyard.testing.fixtures import unique_prefix
from lockyard_dev.servers.redis_cluster import RedisClusterSetup

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(600)]

#: Slots moved by each of the two reshards (a third of a master's slots).
MOVED_SLOTS = 1800
LOCK_NAMES = [f"rs-{i}" for i in range(12)]
COUNTERS = 24
RECORDS = 2000


def _backend(ly: lockyard.Connection) -> RedisClusterBackend:
    backend = ly._backend
    assert isinstance(backend, RedisClusterBackend)
    return backend


async def _scan_worker(run: Run, ly: lockyard.Connection, written: set[str]) -> None:
    """Scan the records again and again: every record written before a scan is in it."""
    while not run.stop.is_set():
        start = run.now()
        try:
            found = {key for key, _ in await ly.store.scan_keys_by_kind("state")}
            missing = written - found
            error = AssertionError(f"scan missed {len(missing)} records") if missing else None
            run.ops.append(Op("scan", "state", start, run.now(), error))
        except Exception as exc:
            run.ops.append(Op("scan", "state", start, run.now(), exc))
        await asyncio.sleep(0.05)


async def test_live_resharding_surfaces_nothing_and_loses_nothing(
    own_redis_cluster: RedisClusterSetup,
) -> None:
    cluster = own_redis_cluster
    url = cluster.url(unique_prefix())
    handles = [await lockyard.connect(url), await lockyard.connect(url)]
    ly = handles[0]
    try:
        records = [f"ns:rs:state:{i}" for i in range(RECORDS)]
        for start in range(0, RECORDS, 500):
            batch = records[start : start + 500]
            await asyncio.gather(*(ly.store.set(k, "v", ttl=3600) for k in batch))
        owners_before = cluster.slot_owners()
        run = Run()
        long_hold_lost = asyncio.Event()
        long_tokens: list[int] = []

        async def hold_throughout() -> None:
            # 3 s: renewals every second, so a loaded machine's scheduling delays (resharding
            # runs redis-cli beside the suite) never reach the local deadline; the lease must
            # survive the slot moves, not the load.
            async with ly.locks.hold("rs-long", ttl=3.0) as guard:
                long_tokens.append(guard.fencing_token)
                while not run.stop.is_set():
                    await asyncio.sleep(0.05)
                    if not await guard.is_held():
                        long_hold_lost.set()
                        return

        workers = [
            asyncio.create_task(hold_throughout()),
            *(
                asyncio.create_task(store_worker(run, handles[i % 2], f"ns:rs:counter:{i}"))
                for i in range(COUNTERS)
            ),
            *(
                asyncio.create_task(lock_worker(run, h, name, ttl=5.0, timeout=10.0))
                for h in handles
                for name in LOCK_NAMES
            ),
            asyncio.create_task(_scan_worker(run, handles[1], set(records))),
        ]
        try:
            await asyncio.sleep(1.0)
            masters = cluster.masters()
            reshard_at = run.now()
            await asyncio.to_thread(cluster.reshard, masters[0], masters[1], MOVED_SLOTS)
            await asyncio.to_thread(cluster.reshard, masters[1], masters[2], MOVED_SLOTS)
            resharded_at = run.now()
            await asyncio.sleep(1.0)
        finally:
            run.stop.set()
            done, pending = await asyncio.wait(workers, timeout=30)
        assert not pending, "a workload task hung"
        for task in done:
            task.result()

        owners_after = cluster.slot_owners()
        moved = sum(1 for slot, port in owners_before.items() if owners_after[slot] != port)
        assert moved >= MOVED_SLOTS
        followed: Counter[str] = Counter()
        for handle in handles:
            router = _backend(handle).cluster.auto_pipeline
            assert router is not None
            followed.update(router.followed)
        touched = {key_slot(k) for k in records} & {
            slot for slot, port in owners_before.items() if owners_after[slot] != port
        }

        # Nothing surfaced: every call succeeded.
        errors = run.errors()
        assert not errors, sorted({f"{o.kind}: {o.error!r}" for o in errors})[:10]
        assert not long_hold_lost.is_set(), "the lock held throughout was lost"
        summary = await summarize(run, ly)
        assert summary.overlaps == 0
        assert summary.inversions == 0
        assert summary.lost_holds == 0
        # No acknowledged write lost, and none applied twice.
        for key, count in run.acked.items():
            assert await ly.store.get(key) == str(count), key
        assert {k for k, _ in await ly.store.scan_keys_by_kind("state")} == set(records)
        longest = max(o.end - o.start for o in run.ops)
        print(
            f"\nresharding {moved} slots ({len(touched)} of them holding records) in "
            f"{resharded_at - reshard_at:.1f}s under load: {len(run.ops)} calls, 0 errors; "
            f"redirects followed: {dict(followed)}; longest call {longest * 1000:.0f} ms; "
            f"{len(run.holds)} lock holds, 0 overlapping, 0 fencing inversions; "
            f"{summary.acked_increments} acknowledged increments, all present"
        )
    finally:
        for handle in handles:
            await handle.store.purge()
            await handle.close()


async def test_a_scan_mid_migration_finds_the_records_whose_keys_have_not_moved_yet(
    own_redis_cluster: RedisClusterSetup,
) -> None:
    """A slot moves key by key: here a kind's index has reached the new master while a record's
    data key is still on the old one. The scan runs on the new master (``ASK``), where that
    record is not; it must find it where it is, and must not drop it from the index, or every
    later scan would miss it (as one did in a resharding under load)."""
    cluster = own_redis_cluster
    async with lockyard.connect(cluster.url(unique_prefix())) as ly:
        key = "ns:mig:state:staying"
        await ly.store.set(key, "v1", ttl=3600)
        data, index, expiries = _backend(ly).layout.for_key(key)
        slot = key_slot(data)
        assert key_slot(index) == key_slot(expiries) == slot  # one bucket, one slot
        owners, ids = cluster.slot_owners(), cluster.node_ids()
        source = cluster.server_on(owners[slot])
        target = next(m for m in cluster.masters() if m.port != source.port)
        auth = ("AUTH", cluster.password) if cluster.password else ()
        with source.admin() as old, target.admin() as new:

            def migrate(*keys: str) -> None:
                for moving in keys:
                    old.execute_command("MIGRATE", "127.0.0.1", target.port, moving, 0, 5000, *auth)

            new.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source.port])
            old.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target.port])
            migrate(index, expiries)
            assert old.exists(data) == 1  # the record itself has not moved yet

            assert await ly.store.scan_keys("ns", "mig", "state") == [(key, "v1")]
            assert (key, "v1") in await ly.store.scan_keys_by_kind("state")

            # The rest of the slot moves and the move completes: the index still has the key.
            migrate(*old.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 1000))
            for master in cluster.masters():
                with master.admin() as each:
                    each.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target.port])
        cluster.wait_healthy()
        assert await ly.store.scan_keys("ns", "mig", "state") == [(key, "v1")]
