"""Placement on Redis Cluster: each operation is one command to one master, keys of one kind
spread over every master by construction, and one tenant's locks are not pinned to one shard
unless their names ask for it (docs/backends/redis-cluster.md, *Placement*)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

import lockyard
from lockyard.backends.redis.cluster_backend import KIND_BUCKETS, RedisClusterBackend
from lockyard.backends.redis.cluster_routing import ClusterRouter
from lockyard.backends.redis.keys import KeyLayout
from lockyard.backends.redis.slots import SLOTS, key_slot, spread_tags, tag_for_slot
from lockyard.testing.fixtures import unique_prefix
from lockyard_dev.servers.redis_cluster import RedisClusterSetup

pytestmark = pytest.mark.redis

#: Keys written in the spread test (the issue's figure).
KEYS = 10_000


def cluster_backend(ly: lockyard.Connection) -> RedisClusterBackend:
    backend = ly._backend
    assert isinstance(backend, RedisClusterBackend)
    return backend


def router(ly: lockyard.Connection) -> ClusterRouter:
    pipeline = cluster_backend(ly).cluster.auto_pipeline
    assert pipeline is not None
    return pipeline


@pytest_asyncio.fixture
async def ly(redis_cluster: RedisClusterSetup) -> AsyncIterator[lockyard.Connection]:
    connection = await lockyard.connect(redis_cluster.url(unique_prefix()))
    try:
        yield connection
    finally:
        await connection.store.purge()
        await connection.close()


def test_a_tag_can_be_made_for_every_slot() -> None:
    for slot in range(SLOTS):
        tag = tag_for_slot("a.prefix|state|", slot)
        assert tag.startswith("a.prefix|state|")
        assert key_slot("{" + tag + "}:d:x") == slot
        assert not set(tag[-4:]) & set("{}*?[]\\:")


def test_the_buckets_of_a_kind_are_evenly_spaced_over_the_slots() -> None:
    for body in ("p|state|", "orders.shop|dedup|", "x|"):
        slots = [key_slot("{" + tag + "}") for tag in spread_tags(body, KIND_BUCKETS)]
        assert len(set(slots)) == KIND_BUCKETS
        gaps = {(b - a) % SLOTS for a, b in zip(slots, slots[1:] + slots[:1], strict=True)}
        assert gaps == {SLOTS // KIND_BUCKETS}


def test_one_bucket_is_the_layout_of_one_server() -> None:
    """A one-bucket layout names exactly the keys the single-server backend always used."""
    layout = KeyLayout("p")
    assert layout.for_key("ns:t:state:1") == (
        "lockyard:{p|state}:d:ns:t:state:1",
        "lockyard:{p|state}:i",
        "lockyard:{p|state}:x",
    )
    assert layout.time_indexes("timeout") == ("lockyard:{p|}:timeout",)
    assert layout.time_index("chain", "ns:t:chain:1") == "lockyard:{p|}:chain"


def test_a_record_and_its_index_entries_share_a_slot() -> None:
    layout = KeyLayout("p", KIND_BUCKETS)
    for i in range(200):
        key = f"ns:t:state:{i}"
        data, index, expiries = layout.for_key(key)
        assert key_slot(data) == key_slot(index) == key_slot(expiries)
        assert data.startswith(layout.tag)
        assert layout.is_data_key(data)
    assert len({key_slot(layout.for_key(f"ns:t:state:{i}")[0]) for i in range(2000)}) == 64


async def test_each_operation_is_one_command_to_one_master(ly: lockyard.Connection) -> None:
    routes = router(ly)
    key = "ns:acme:state:one"
    operations: dict[str, Callable[[], Awaitable[object]]] = {
        "check_and_set": lambda: ly.store.check_and_set(key, "v", ttl=60),
        "get": lambda: ly.store.get(key),
        "get_versioned": lambda: ly.store.get_versioned(key),
        "set": lambda: ly.store.set(key, "w", ttl=60),
        "compare_and_swap": lambda: ly.store.compare_and_swap(key, 2, "x"),
        "increment": lambda: ly.store.increment("ns:acme:counter:c", 3),
        "index_timeout": lambda: ly.store.index_timeout(key, 1_000),
        "remove_timeout_index": lambda: ly.store.remove_timeout_index(key),
        "delete": lambda: ly.store.delete(key),
        "try_acquire": lambda: ly.locks.try_acquire("acme:job", 30),
        "holder": lambda: ly.locks.holder("acme:job"),
    }
    for name, operation in operations.items():
        await operation()  # the first call of a script not loaded at connect loads it
        before = Counter(routes.requests_by_node())
        await operation()
        sent = Counter(routes.requests_by_node())
        sent.subtract(before)
        used = {node: count for node, count in sent.items() if count}
        assert list(used.values()) == [1], f"{name} sent {used}"
    guard = await ly.locks.try_acquire("acme:other", 30)
    assert guard is not None
    before = Counter(routes.requests_by_node())
    await guard.release()
    sent = Counter(routes.requests_by_node())
    sent.subtract(before)
    assert sorted(sent.values()) == [0] * (len(sent) - 1) + [1]


async def test_ten_thousand_keys_of_one_kind_spread_over_every_master(
    ly: lockyard.Connection, redis_cluster: RedisClusterSetup
) -> None:
    keys = [f"ns:acme:state:{i}" for i in range(KEYS)]
    for start in range(0, KEYS, 500):
        await asyncio.gather(*(ly.store.set(key, "v") for key in keys[start : start + 500]))
    data_pattern = f"lockyard:{{{ly.prefix}|state|*}}:d:*"
    per_master = redis_cluster.keys_per_master(data_pattern)
    masters = redis_cluster.masters()
    assert set(per_master) == {master.port for master in masters}
    assert sum(per_master.values()) == KEYS
    even = KEYS / len(masters)
    # By construction each master holds 21 or 22 of the 64 buckets: within 10% of even.
    for port, count in per_master.items():
        assert abs(count - even) <= 0.1 * even, f"master {port}: {count} of {KEYS}"
    owners = redis_cluster.slot_owners()
    buckets = Counter(
        owners[key_slot(data)] for data, _, _ in cluster_backend(ly).layout.kind_buckets("state")
    )
    assert sorted(buckets.values()) in ([21, 21, 22], [21, 22, 22])
    print(f"\n{KEYS} keys of one kind per master: {dict(per_master)}; buckets: {dict(buckets)}")
    # The scan reads every bucket, in parallel, and finds every key once.
    found = await ly.store.scan_keys_by_kind("state")
    assert len(found) == KEYS
    assert {key for key, _ in found} == set(keys)


async def test_one_tenants_locks_spread_unless_their_names_ask_to_share_a_slot(
    ly: lockyard.Connection, redis_cluster: RedisClusterSetup
) -> None:
    owners = redis_cluster.slot_owners()
    layout = cluster_backend(ly).layout
    names = [f"acme:invoice-{i}" for i in range(300)]
    guards = await asyncio.gather(*(ly.locks.try_acquire(name, 30) for name in names))
    assert all(guard is not None for guard in guards)
    per_master = Counter(owners[key_slot(layout.lease(name))] for name in names)
    assert len(per_master) == len(redis_cluster.masters())
    assert min(per_master.values()) >= 0.2 * len(names), per_master
    held = await ly.locks.list_held()
    assert {info.name for info in held} >= set(names)
    # Co-location on request: names that start with the same {group} share one slot, as
    # Redis Cluster's hash tags do (what a fenced write next to its lock needs).
    grouped = [f"{{acme}}invoice-{i}" for i in range(50)]
    assert len({key_slot(key) for name in grouped for key in layout.lock_keys(name)}) == 1
    for guard in guards:
        assert guard is not None
        await guard.release()


def test_keys_naming_a_group_share_a_bucket_and_a_colocated_name_lands_beside_them() -> None:
    layout = KeyLayout("p", KIND_BUCKETS)
    keys = ["ns:acme:state:{order-17}", "ns:acme:counter:{order-17}-n", "n:t:k:x{order-17}y"]
    slots = {key_slot(k) for key in keys for k in layout.for_key(key)}
    slots |= {
        key_slot(layout.time_index(index, key)) for key in keys for index in ("timeout", "chain")
    }
    assert len(slots) == 1
    name = layout.name_beside("lock", "invoice", keys[0])
    assert name.startswith("invoice~")
    assert {key_slot(k) for k in layout.lock_keys(name)} == slots
    assert KeyLayout("p").name_beside("lock", "invoice", keys[0]) == "invoice"
    with pytest.raises(ValueError, match="cannot hold"):
        layout.name_beside("lock", "a}b", keys[0])


async def test_a_colocated_lock_fences_writes_of_its_group_and_refuses_others(
    ly: lockyard.Connection,
) -> None:
    key = "ns:acme:fenced:{order-17}"
    name = ly.colocated_name("invoice", key)
    async with ly.locks.hold(name, ttl=10) as guard:
        assert await ly.store.check_and_set(key, "a", fence=guard)
        await ly.store.set(key + "-copy", "b", ttl=60, fence=guard)
        assert await ly.store.increment("ns:acme:counter:{order-17}", 3, fence=guard) == 3
        await ly.store.index_timeout(key, 5, fence=guard)
        await ly.store.index_chain_ready(key, 5, fence=guard)
        assert await ly.store.get_expired_timeouts(10) == [key]
        with pytest.raises(lockyard.FenceSlotError, match="share a hash slot"):
            await ly.store.set("ns:acme:fenced:{order-18}", "c", fence=guard)
    permit_name = ly.colocated_name("slots", key, guard="semaphore")
    permit = await ly.semaphores.acquire(permit_name, 2, 10, timeout=5)
    await ly.store.set(key, "d", fence=permit)
    await permit.release()
    with pytest.raises(lockyard.FenceLostError):
        await ly.store.set(key, "e", fence=permit)
    assert await ly.store.get(key) == "d"
