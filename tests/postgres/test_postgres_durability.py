"""Crash safety of the PostgreSQL lock cycle at the durable-write floor.

Acquire and extend wait for their WAL flush; release, break and leaving the queue do not
(docs/backends/postgres.md, *Durability*). These tests crash the server (SIGKILL to every
server process, as ``kill -9`` of the postmaster and its backends) and check what survives:
an acquisition always does, with its fencing token; a release may not, and its lease then ends
by itself; and through crashes in the middle of concurrent lock cycles no fencing token is
handed out twice and no two holders ever overlap.

The server writes WAL lazily only every 10 s here (``wal_writer_delay``), so a commit that
does not wait for its flush is reliably still unwritten when the crash comes.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

import lockyard
from lockyard import LockTimeoutError, StateError
from lockyard_dev.servers.postgres import PostgresServer

pytestmark = pytest.mark.postgres

SCHEMA = "durability"
TIMEOUT_S = 2.0
TTL_S = 1.0
#: The leases of the crash test: long enough that a loaded machine never lets one run out in
#: the middle of a hold, which would be an overlap the crashes did not cause.
CYCLE_TTL_S = 2.0


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with PostgresServer(settings={"wal_writer_delay": "10000ms"}) as started:
        yield started


@pytest.fixture
def running(server: PostgresServer) -> PostgresServer:
    if not server.running:
        server.start()
    return server


def url(server: PostgresServer, prefix: str) -> str:
    return server.url(prefix=prefix, schema=SCHEMA, timeout=str(TIMEOUT_S))


def crash_and_restart(server: PostgresServer) -> None:
    """SIGKILL every server process, then start again (recovery replays the WAL)."""
    server.kill()
    server.start()


async def test_a_release_lost_in_a_crash_leaves_a_lease_that_expires_on_its_own(
    running: PostgresServer,
) -> None:
    prefix = f"d{uuid.uuid4().hex[:8]}"
    async with lockyard.connect(url(running, prefix)) as ly:
        guard = await ly.locks.acquire("job", TTL_S, timeout=1)
        await guard.release()
        crash_and_restart(running)  # blocking: nothing runs between the release and the crash
    async with lockyard.connect(url(running, prefix)) as ly:
        # The release was committed without waiting for its flush, and the crash undid it:
        # the lease is back, under its owner, until it ends.
        (held,) = await ly.locks.list_held()
        assert (held.name, held.owner, held.fencing_token) == (
            "job",
            guard.owner,
            guard.fencing_token,
        )
        assert await ly.locks.try_acquire("job", TTL_S) is None
        started = time.monotonic()
        again = await ly.locks.acquire("job", TTL_S, timeout=TTL_S + 1)
        assert time.monotonic() - started <= TTL_S + 0.5
        assert again.fencing_token == guard.fencing_token + 1
        await again.release()
        await ly.store.purge()


async def test_an_acquisition_survives_a_crash_and_makes_the_release_it_saw_durable(
    running: PostgresServer,
) -> None:
    prefix = f"d{uuid.uuid4().hex[:8]}"
    async with (
        lockyard.connect(url(running, prefix)) as first,
        lockyard.connect(url(running, prefix)) as second,
    ):
        before = await first.locks.acquire("job", 60, timeout=1)
        await before.release()
        # The next holder's commit waits for its flush, and the WAL is one sequence: the
        # release it saw is flushed with it.
        after = await second.locks.acquire("job", 60, timeout=1)
        crash_and_restart(running)
    async with lockyard.connect(url(running, prefix)) as ly:
        (held,) = await ly.locks.list_held()
        assert (held.owner, held.fencing_token) == (after.owner, before.fencing_token + 1)
        assert await ly.locks.break_lock("job")
        assert (await ly.locks.acquire("job", 5, timeout=1)).fencing_token == held.fencing_token + 1
        await ly.store.purge()


@dataclass
class Hold:
    """One critical section: from the acquisition's return to the start of its release."""

    name: str
    worker: int
    token: int
    acquired_at: float
    left_at: float = float("inf")


@dataclass
class Log:
    holds: list[Hold] = field(default_factory=list)
    errors: int = 0
    timeouts: int = 0


NAMES = ("a", "b", "c")
WORKERS = 6
CRASHES = 3


async def _cycle(ly: lockyard.Connection, worker: int, log: Log, stop: asyncio.Event) -> None:
    """Lock cycles on a few names, each hold logged from acquisition to the end of release."""
    turn = worker
    while not stop.is_set():
        turn += 1
        name = NAMES[turn % len(NAMES)]
        try:
            guard = await ly.locks.acquire(name, CYCLE_TTL_S, timeout=CYCLE_TTL_S * 2)
        except LockTimeoutError:
            log.timeouts += 1
            continue
        except StateError:
            log.errors += 1
            await asyncio.sleep(0.02)
            continue
        hold = Hold(name, worker, guard.fencing_token, time.monotonic())
        log.holds.append(hold)
        await asyncio.sleep(0.001)
        hold.left_at = time.monotonic()
        try:
            await guard.release()
        except StateError:
            log.errors += 1  # the crash: the lease ends by itself


async def test_crashes_during_lock_cycles_never_reuse_a_token_nor_overlap_holders(
    running: PostgresServer,
) -> None:
    prefix = f"d{uuid.uuid4().hex[:8]}"
    handles = [await lockyard.connect(url(running, prefix)) for _ in range(WORKERS)]
    log = Log()
    stop = asyncio.Event()
    workers = [asyncio.create_task(_cycle(ly, i, log, stop)) for i, ly in enumerate(handles)]
    crashes: list[float] = []
    try:
        for _ in range(CRASHES):
            # Long enough for a lease whose release the last crash undid to run out, and for
            # cycles to run again before the next crash.
            await asyncio.sleep(CYCLE_TTL_S + 0.7)
            crashes.append(time.monotonic())
            crash_and_restart(running)  # with cycles in flight, the loop blocked meanwhile
        await asyncio.sleep(CYCLE_TTL_S * 1.5)  # leases whose release a crash undid run out
        stop.set()
        await asyncio.wait_for(asyncio.gather(*workers), 30)
    finally:
        stop.set()
        for task in workers:
            task.cancel()
        for ly in handles:
            await ly.close()

    by_name: dict[str, list[Hold]] = {name: [] for name in NAMES}
    for hold in log.holds:
        by_name[hold.name].append(hold)
    overlaps = reused = 0
    for holds in by_name.values():
        holds.sort(key=lambda hold: hold.acquired_at)
        tokens = [hold.token for hold in holds]
        reused += len(tokens) - len(set(tokens))
        # In the order they were handed out, tokens only grow: none was given out again.
        assert tokens == sorted(tokens), "a later acquisition got a lower fencing token"
        for earlier, later in itertools.pairwise(holds):
            if later.acquired_at < earlier.left_at:
                overlaps += 1
    print(
        f"\n{len(log.holds)} holds through {CRASHES} crashes; errors {log.errors}, "
        f"timeouts {log.timeouts}; tokens reused {reused}; overlapping holders {overlaps}"
    )
    assert reused == 0
    assert overlaps == 0
    # Cycles ran right up to every crash and resumed after it.
    bounds = [0.0, *crashes, float("inf")]
    for start, end in itertools.pairwise(bounds):
        assert sum(start < hold.acquired_at < end for hold in log.holds) >= 10, (start, end)
    async with lockyard.connect(url(running, prefix)) as ly:
        await ly.store.purge()
