"""A master of the cluster is killed under load and its replica takes over: what clients see,
and what locks and writes lose.

Two handles run increments and contend for locks, on keys of the master that will die and of
the others, while the master gets SIGKILL. The test shows that (a) both handles reach the
promoted replica by themselves, (b) no operation outlives its timeout, (c) every error is a
``StateError``, and (d) measures overlapping holds and acknowledged increments lost, and checks
that fencing tokens keep strictly rising: every acquisition on the promoted replica carries its
config epoch, above every epoch the dead master had. It runs with default settings and with
``wait_replicas=1``. Run with ``-s`` to see the measurements (docs/backends/redis-cluster.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter

import pytest
from failover_workload import Run, lock_worker, store_worker, summarize

import lockyard
from lockyard import BackendConnectionError, LockTimeoutError, StateError
from lockyard.backends.redis import FENCING_EPOCH_SHIFT
from lockyard.backends.redis.keys import KeyLayout
from lockyard.backends.redis.slots import key_slot
from lockyard.testing.fixtures import unique_prefix
from lockyard_dev.servers.redis_cluster import RedisClusterSetup

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(600)]

OP_TIMEOUT_S = 1.0
CONNECT_ATTEMPTS = 3
ACQUIRE_TIMEOUT_S = 1.0
LOCK_TTL_S = 2.0
#: A slow, shared machine: an operation may finish a little after its timeout fires.
SLACK_S = 0.5
#: Lock names and counters on the master that dies, and on the others.
PER_SIDE = 3
#: How long the load runs once the replica serves the dead master's slots.
AFTER_S = 3.0


def _names_on(
    cluster: RedisClusterSetup, layout: KeyLayout, port: int, make: str, on: bool
) -> list[str]:
    """``PER_SIDE`` names (``make.format(i)``) whose keys the master at ``port`` serves (or not)."""
    owners = cluster.slot_owners()
    names: list[str] = []
    i = 0
    while len(names) < PER_SIDE:
        name = make.format(i)
        slot = key_slot(layout.lease(name))
        if (owners[slot] == port) == on:
            names.append(name)
        i += 1
    return names


@pytest.mark.parametrize("wait_replicas", [0, 1], ids=["default", "wait_replicas=1"])
async def test_a_master_killed_under_load(
    own_redis_cluster: RedisClusterSetup, wait_replicas: int
) -> None:
    cluster = own_redis_cluster
    prefix = unique_prefix()
    url = cluster.url(prefix, timeout=str(OP_TIMEOUT_S), wait_replicas=str(wait_replicas))
    async with contextlib.AsyncExitStack() as opened:
        handles: dict[str, lockyard.Connection] = {}
        for side in ("A", "B"):
            handles[side] = await _connect(url)
            opened.push_async_callback(handles[side].close)
        await _kill_under_load(cluster, prefix, handles, wait_replicas)


async def _connect(url: str) -> lockyard.Connection:
    """A handle with the test's short operation timeout. Opening one loads every script on
    every master under that timeout: beside a loaded CI run that took over a second once, so
    the opening (not what the test measures) gets a few tries. An opening the cluster does
    not answer in time is a ``BackendConnectionError`` ("no answer within 1s while
    connecting"), as on every backend."""
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            return await lockyard.connect(url)
        except BackendConnectionError as exc:
            print(f"connect attempt {attempt} of {CONNECT_ATTEMPTS}: {exc}")
            if attempt == CONNECT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


async def _kill_under_load(
    cluster: RedisClusterSetup,
    prefix: str,
    handles: dict[str, lockyard.Connection],
    wait_replicas: int,
) -> None:
    victim = cluster.masters()[0]
    layout = KeyLayout(prefix, 64)
    owners = cluster.slot_owners()
    locks_dying = _names_on(cluster, layout, victim.port, "fo-{}", True)
    locks_other = _names_on(cluster, layout, victim.port, "fo-{}", False)
    counters = [f"ns:fo:counter:{i}" for i in range(24)]
    dying_counters = [k for k in counters if owners[key_slot(layout.data(k))] == victim.port]
    assert dying_counters
    assert len(dying_counters) < len(counters)
    run = Run()
    workers = [
        asyncio.create_task(run.watch_loop_lag()),
        *(
            asyncio.create_task(store_worker(run, handles["AB"[i % 2]], key))
            for i, key in enumerate(counters)
        ),
        *(
            asyncio.create_task(
                lock_worker(run, ly, name, ttl=LOCK_TTL_S, timeout=ACQUIRE_TIMEOUT_S)
            )
            for ly in handles.values()
            for name in locks_dying + locks_other
        ),
    ]
    try:
        await asyncio.sleep(1.5)
        epochs_before = cluster.config_epochs()
        current_before = cluster.current_epoch()
        killed_at = run.now()
        await asyncio.to_thread(cluster.kill, victim)
        promoted = await asyncio.to_thread(cluster.wait_failover, victim)
        promoted_at = run.now()
        # (a) Each handle writes to the dead master's slots again, by itself.
        recovered: dict[str, float] = {}
        deadline = time.monotonic() + 30
        while len(recovered) < len(handles) and time.monotonic() < deadline:
            for name in handles:
                if name not in recovered and any(
                    o.kind == "store"
                    and o.error is None
                    and o.start > promoted_at
                    and o.key in dying_counters
                    and o.key in _keys_of(name, counters)
                    for o in run.ops[-400:]
                ):
                    recovered[name] = run.now()
            await asyncio.sleep(0.02)
        assert len(recovered) == len(handles), f"handles did not recover: {recovered}"
        # The dead master comes back as the promoted one's replica (until then, with
        # wait_replicas=1, no acquisition on that master can be confirmed).
        await asyncio.to_thread(cluster.restart, victim)
        rejoined_at = run.now()
        await asyncio.sleep(AFTER_S)
    finally:
        run.stop.set()
        done, pending = await asyncio.wait(workers, timeout=OP_TIMEOUT_S + ACQUIRE_TIMEOUT_S + 10)
    assert not pending, "a workload task hung"
    for task in done:
        task.result()
    epochs_after = cluster.config_epochs()
    new_epoch = epochs_after[promoted.port]
    assert new_epoch > max(epochs_before.values())

    # (b) No operation hangs.
    limits = {
        "store": OP_TIMEOUT_S,
        "release": OP_TIMEOUT_S,
        "acquire": ACQUIRE_TIMEOUT_S + OP_TIMEOUT_S,
    }
    longest = {
        kind: max((o.end - o.start for o in run.ops if o.kind == kind), default=0.0)
        for kind in limits
    }
    for kind, limit in limits.items():
        assert longest[kind] <= limit + SLACK_S + run.loop_lag, (
            f"{kind} took {longest[kind]:.2f}s (the loop was up to {run.loop_lag:.2f}s late)"
        )

    # (c) Every error is a StateError.
    errors = run.errors()
    assert all(isinstance(o.error, StateError) for o in errors), [repr(o.error) for o in errors]
    failures = [o for o in errors if not isinstance(o.error, LockTimeoutError)]
    kinds = Counter(type(o.error).__name__ for o in failures)

    # Recovery as clients saw it: the longest gap between successful increments of a key of
    # the dead master, and of a key of the others, from the kill on.
    def gap(keys: list[str]) -> float:
        ends = sorted(
            o.end for o in run.ops if o.kind == "store" and o.error is None and o.key in keys
        )
        after = [t for t in ends if t >= killed_at]
        return max((b - a for a, b in zip([killed_at, *after], after, strict=False)), default=0.0)

    healthy_counters = [k for k in counters if k not in dying_counters]

    # (d) Overlaps, fencing order, lost writes.
    summary = await summarize(run, handles["A"])
    assert summary.inversions == 0, "a later acquisition got a lower fencing token"
    dying_holds = [h for h in run.holds if h.name in locks_dying]
    before = [h for h in dying_holds if h.acquired < killed_at]
    after = [h for h in dying_holds if h.acquired > promoted_at + OP_TIMEOUT_S]
    assert [h for h in after if h.acquired > rejoined_at]
    assert before
    assert after
    assert min(h.token for h in after) > max(h.token for h in before)
    # The epoch in a token is the cluster's current epoch: the promotion's, after it.
    assert {h.token >> FENCING_EPOCH_SHIFT for h in after} == {new_epoch}
    assert {h.token >> FENCING_EPOCH_SHIFT for h in before} == {current_before}
    assert new_epoch > current_before
    print(
        f"\n[wait_replicas={wait_replicas}] SIGKILL of master "
        f"{victim.port}: replica {promoted.port} serves its slots after "
        f"{promoted_at - killed_at:.2f}s; handles write there again after "
        + ", ".join(f"{n} {t - killed_at:.2f}s" for n, t in sorted(recovered.items()))
        + f"; the dead master back as a replica after {rejoined_at - killed_at:.2f}s"
        + f"\n  longest gap between successful increments: dead master's keys "
        f"{gap(dying_counters):.2f}s, other masters' keys {gap(healthy_counters):.2f}s"
        f"\n  calls: {len(run.ops)}; errors besides lock timeouts: {dict(kinds)}"
        "\n  longest call: "
        + ", ".join(f"{k} {v:.2f}s" for k, v in longest.items())
        + f"\n  lock holds: {len(run.holds)}; overlapping holds: {summary.overlaps}; fencing "
        f"inversions: {summary.inversions}; releases that found the lock lost: "
        f"{summary.lost_holds}"
        f"\n  tokens on the dead master <= {max(h.token for h in before)} (epoch "
        f"{current_before}); on the promoted replica >= "
        f"{min(h.token for h in after)} (epoch {new_epoch})"
        f"\n  acknowledged increments missing after the failover: {summary.lost_increments} "
        f"of {summary.acked_increments}"
    )
    await handles["A"].store.purge()


def _keys_of(handle: str, counters: list[str]) -> set[str]:
    """The counters the store workers of ``handle`` increment (every other one)."""
    return {key for i, key in enumerate(counters) if "AB"[i % 2] == handle}
