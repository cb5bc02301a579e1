"""A forced Sentinel failover under load: what clients see, and what locks and writes lose.

Two handles (two "processes") run store operations and contend for three locks while
``SENTINEL FAILOVER`` promotes the replica. The test shows that (a) both handles reach the new
master by themselves within a few seconds, (b) no operation outlives its timeout, (c) every error
is a ``StateError``, and (d) counts the lock acquisitions that overlapped because of the failover
and checks that every acquisition on the new master has a higher fencing token than every
acquisition before the failover (and carries the new Sentinel epoch). It runs twice: with
default settings, and with ``wait_replicas=1``. Run with ``-s`` to see the measurements, which
docs/backends/redis.md records.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from failover_workload import Run, lock_worker, store_worker, summarize

import lockyard
from lockyard import LockTimeoutError, StateError
from lockyard.backends.redis import FENCING_EPOCH_SHIFT, RedisBackend
from lockyard.testing.fixtures import unique_prefix
from lockyard_dev.servers.redis import RedisSentinelSetup

pytestmark = [pytest.mark.sentinel, pytest.mark.slow]

OP_TIMEOUT_S = 1.0
ACQUIRE_TIMEOUT_S = 1.0
LOCK_TTL_S = 2.0
LOCK_NAMES = ["fo-0", "fo-1", "fo-2"]
#: A slow, shared CI machine: an operation may finish a little after its timeout fires.
SLACK_S = 0.5
#: Attempts already running on the old master when the pools moved finish there; an
#: acquisition counts as "on the new master" from this long after both handles moved.
IN_FLIGHT_S = 0.5
#: How many acquisitions on the new master the test waits for (at most AFTER_MAX_S).
AFTER_HOLDS = 30
AFTER_MIN_S = 2.0
AFTER_MAX_S = 30.0


@pytest.fixture
def failover_setup(tmp_path: Path) -> Iterator[RedisSentinelSetup]:
    """A Sentinel setup of its own: the failover changes its topology."""
    with RedisSentinelSetup(tmp_path / "sentinel", password="failover-pass") as setup:
        yield setup


def _backend(connection: lockyard.Connection) -> RedisBackend:
    backend = connection._backend
    assert isinstance(backend, RedisBackend)
    return backend


@pytest.mark.parametrize("wait_replicas", [0, 1], ids=["default", "wait_replicas=1"])
async def test_forced_failover_under_load(
    failover_setup: RedisSentinelSetup, wait_replicas: int
) -> None:
    prefix = unique_prefix()
    params = {"timeout": str(OP_TIMEOUT_S), "wait_replicas": str(wait_replicas)}
    url = failover_setup.url(prefix, **params)
    clients = {"A": await lockyard.connect(url), "B": await lockyard.connect(url)}
    try:
        await _failover_under_load(failover_setup, prefix, clients, wait_replicas)
    finally:
        for ly in clients.values():
            await ly.close()


async def _failover_under_load(
    setup: RedisSentinelSetup,
    prefix: str,
    clients: dict[str, lockyard.Connection],
    wait_replicas: int,
) -> None:
    run = Run()
    workers = [
        asyncio.create_task(run.watch_loop_lag()),
        *(
            asyncio.create_task(store_worker(run, ly, f"ns:fo:counter:{c}{i}", read_back=True))
            for c, ly in clients.items()
            for i in range(3)
        ),
        *(
            asyncio.create_task(
                lock_worker(run, ly, name, ttl=LOCK_TTL_S, timeout=ACQUIRE_TIMEOUT_S)
            )
            for ly in clients.values()
            for name in LOCK_NAMES
            for _ in range(2)
        ),
    ]
    try:
        await asyncio.sleep(1.5)
        epoch_before = setup.config_epoch()
        failover_at = run.now()
        old, new = await asyncio.to_thread(setup.failover)
        promoted_at = run.now()
        # (a) Both handles move to the new master by themselves.
        reached: dict[str, float] = {}
        deadline = time.monotonic() + 15
        while len(reached) < len(clients) and time.monotonic() < deadline:
            for name, ly in clients.items():
                watch = _backend(ly).sentinel_watch
                assert watch is not None
                if name not in reached and watch.master == ("127.0.0.1", new):
                    reached[name] = run.now()
            await asyncio.sleep(0.01)
        assert len(reached) == len(clients), f"clients did not follow the failover: {reached}"
        settled_at = max(reached.values())
        started_after = time.monotonic()
        while time.monotonic() - started_after < AFTER_MAX_S:
            later = [h for h in run.holds if h.acquired > settled_at + IN_FLIGHT_S]
            if len(later) >= AFTER_HOLDS and time.monotonic() - started_after >= AFTER_MIN_S:
                break
            await asyncio.sleep(0.1)
    finally:
        run.stop.set()
        done, pending = await asyncio.wait(workers, timeout=OP_TIMEOUT_S + ACQUIRE_TIMEOUT_S + 5)
    assert not pending, "a workload task hung"
    for task in done:
        task.result()

    # Writes land on the new master.
    await clients["A"].store.set("ns:fo:state:after", "new-master")
    with setup.server_on(new).admin() as admin:
        assert admin.hget(f"lockyard:{{{prefix}|state}}:d:ns:fo:state:after", "v") == "new-master"
    assert old != new
    epoch_after = setup.config_epoch()
    assert epoch_after > epoch_before

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
    errors = [o for o in run.ops if o.error is not None]
    assert all(isinstance(o.error, StateError) for o in errors), [repr(o.error) for o in errors]
    failures = [o for o in errors if not isinstance(o.error, LockTimeoutError)]
    error_kinds = Counter(type(o.error).__name__ for o in failures)
    error_span = (
        f"{min(o.start for o in failures) - failover_at:.2f}s to "
        f"{max(o.end for o in failures) - failover_at:.2f}s after the command"
        if failures
        else "none"
    )

    # Time without a usable master, as the clients saw it: the longest gap between successful
    # store operations from the failover command on.
    successes = sorted(o.end for o in run.ops if o.kind == "store" and o.error is None)
    after = [t for t in successes if t >= failover_at]
    gaps = [b - a for a, b in zip([failover_at, *after], after, strict=False)]
    window = max(gaps, default=0.0)

    # (d) Overlapping holders, fencing order, and acknowledged increments the new master
    # does not have (asynchronous replication).
    summary = await summarize(run, clients["A"])
    before = [h for h in run.holds if h.acquired < failover_at]
    later = [h for h in run.holds if h.acquired > settled_at + IN_FLIGHT_S]
    assert before
    assert later
    assert min(h.token for h in later) > max(h.token for h in before)
    assert {h.token >> FENCING_EPOCH_SHIFT for h in later} == {epoch_after}
    print(
        f"\n[wait_replicas={wait_replicas}] forced SENTINEL FAILOVER: every sentinel on the new "
        f"master after {promoted_at - failover_at:.2f}s; handles on the new master after "
        + ", ".join(f"{n} {t - failover_at:.2f}s" for n, t in sorted(reached.items()))
        + f"\n  longest gap between successful store operations: {window:.2f}s"
        f"\n  operations: {len(run.ops)}; errors besides lock timeouts: {dict(error_kinds)} "
        f"({error_span})"
        "\n  longest operation: "
        + ", ".join(f"{k} {v:.2f}s" for k, v in longest.items())
        + f"\n  lock holds: {len(run.holds)}; overlapping holds: {summary.overlaps}; fencing "
        f"inversions (a later acquisition with a lower token): {summary.inversions}; releases "
        f"that found the lock lost: {summary.lost_holds}"
        f"\n  tokens before <= {max(h.token for h in before)} (epoch {epoch_before}); on the "
        f"new master >= {min(h.token for h in later)} (epoch {epoch_after})"
        f"\n  acknowledged increments missing on the new master: {summary.lost_increments} of "
        f"{summary.acked_increments}"
    )
    await clients["A"].store.purge()
