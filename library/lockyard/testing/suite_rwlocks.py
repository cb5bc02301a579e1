"""Conformance: read-write locks (``ly.rwlocks``).

Any number of readers or one writer, never a writer beside a reader or another writer; each
hold its own lease and fencing token; writer preference (a reader never overtakes a waiting
writer, so a writer waits at most for the holders and waiters ahead of it); upgrade refused
with ``LockUpgradeError``; ``hold()``'s loss signal.
"""

from __future__ import annotations

import asyncio
import random
import uuid

import pytest

from lockyard import LockExpiredError, LockLostError, LockTimeoutError, LockUpgradeError
from lockyard.connection import Connection
from lockyard.testing.fixtures import ConformanceBase
from lockyard.testing.virtual_time import loop_time


def rwlock_name() -> str:
    return f"rw-{uuid.uuid4().hex[:8]}"


@pytest.mark.asyncio
class ReadWriteLockConformance(ConformanceBase):
    #: Time for a waiter's first attempt to reach the backend (as LockConformance's).
    queue_join_s: float = 0.15

    async def test_readers_share_and_a_writer_excludes(self, ly: Connection) -> None:
        name = rwlock_name()
        readers = [await ly.rwlocks.try_acquire_read(name, 30) for _ in range(5)]
        assert all(r is not None and r.mode == "read" for r in readers)
        assert await asyncio.create_task(ly.rwlocks.try_acquire_write(name, 30)) is None
        for reader in readers:
            assert reader is not None
            await reader.release()
        writer = await ly.rwlocks.try_acquire_write(name, 30)
        assert writer is not None
        assert writer.mode == "write"
        # Other tasks (this one would be refused the lock it holds: LockUpgradeError).
        assert await asyncio.create_task(ly.rwlocks.try_acquire_read(name, 30)) is None
        assert await asyncio.create_task(ly.rwlocks.try_acquire_write(name, 30)) is None
        tokens = [r.fencing_token for r in readers if r is not None] + [writer.fencing_token]
        assert tokens == sorted(set(tokens))
        await writer.release()
        assert await ly.rwlocks.try_acquire_read(name, 30) is not None

    async def test_a_waiting_writer_blocks_new_readers(self, ly: Connection) -> None:
        name = rwlock_name()
        reader = await ly.rwlocks.acquire_read(name, 30, timeout=1)
        writer = asyncio.create_task(ly.rwlocks.acquire_write(name, 30, timeout=30))
        await asyncio.sleep(self.queue_join_s)
        # Writer preference: with a writer waiting, a new reader neither barges nor waits
        # ahead of it.
        assert await ly.rwlocks.try_acquire_read(name, 30) is None
        late_reader = asyncio.create_task(ly.rwlocks.acquire_read(name, 30, timeout=30))
        await asyncio.sleep(self.queue_join_s)
        assert not late_reader.done()
        assert not writer.done()
        async with self.watching_round_trips(ly) as round_trips:
            released_at = loop_time()
            await reader.release()
            write_guard = await writer
            handed_over = loop_time() - released_at
        assert handed_over <= self.handover_bound_for(round_trips.slowest) + 0.05
        await asyncio.sleep(self.queue_join_s)
        assert not late_reader.done()
        await write_guard.release()
        read_guard = await late_reader
        assert read_guard.fencing_token > write_guard.fencing_token > reader.fencing_token
        await read_guard.release()

    async def test_a_stream_of_readers_does_not_starve_a_writer(self, ly: Connection) -> None:
        name = rwlock_name()
        stop = asyncio.Event()
        reads = 0

        async def reader_stream() -> None:
            nonlocal reads
            while not stop.is_set():
                async with await ly.rwlocks.acquire_read(name, 30, timeout=30):
                    reads += 1
                    await asyncio.sleep(random.uniform(0.01, 0.03))

        streams = [asyncio.create_task(reader_stream()) for _ in range(4)]
        await asyncio.sleep(0.2)
        async with self.watching_round_trips(ly) as round_trips:
            started = loop_time()
            guard = await ly.rwlocks.acquire_write(name, 30, timeout=10)
            waited = loop_time() - started
        stop.set()
        await guard.release()
        await asyncio.gather(*streams)
        assert reads > 0
        # At most the readers ahead of it: each holds 30 ms at most.
        assert waited <= 0.03 + 2 * self.handover_bound_for(round_trips.slowest) + 0.2

    async def test_never_a_writer_beside_anyone(self, ly: Connection) -> None:
        name = rwlock_name()
        readers = writers = 0
        max_readers = 0
        written = 0

        async def worker(number: int) -> None:
            nonlocal readers, writers, max_readers, written
            for turn in range(4):
                if (number + turn) % 3 == 0:
                    async with await ly.rwlocks.acquire_write(name, 30, timeout=60):
                        writers += 1
                        assert writers == 1
                        assert readers == 0
                        written += 1
                        await asyncio.sleep(0.002)
                        writers -= 1
                else:
                    async with await ly.rwlocks.acquire_read(name, 30, timeout=60):
                        readers += 1
                        max_readers = max(max_readers, readers)
                        assert writers == 0
                        await asyncio.sleep(0.004)
                        readers -= 1

        await asyncio.gather(*(worker(n) for n in range(12)))
        assert written == sum(1 for n in range(12) for t in range(4) if (n + t) % 3 == 0)
        assert max_readers >= 1  # sharing itself: test_readers_share_and_a_writer_excludes

    async def test_upgrade_is_refused(self, ly: Connection) -> None:
        name = rwlock_name()
        reader = await ly.rwlocks.acquire_read(name, 30, timeout=1)
        with pytest.raises(LockUpgradeError, match="not supported"):
            await reader.upgrade()
        with pytest.raises(LockUpgradeError):
            await ly.rwlocks.acquire_write(name, 30, timeout=5)
        with pytest.raises(LockUpgradeError):
            await ly.rwlocks.acquire_read(name, 30, timeout=5)
        await reader.release()
        writer = await ly.rwlocks.acquire_write(name, 30, timeout=1)
        with pytest.raises(LockUpgradeError):
            await ly.rwlocks.acquire_read(name, 30, timeout=5)
        await writer.release()

        async def other_task() -> None:
            async with await ly.rwlocks.acquire_read(name, 30, timeout=5):
                pass

        async with await ly.rwlocks.acquire_read(name, 30, timeout=1):
            await asyncio.create_task(other_task())  # another task may read beside us

    async def test_an_expired_hold_is_free_and_its_guard_raises(self, ly: Connection) -> None:
        name = rwlock_name()
        stale = await ly.rwlocks.acquire_write(name, self.short_ttl_s, timeout=1)
        await self.expire()
        fresh = await ly.rwlocks.try_acquire_read(name, 30)
        assert fresh is not None
        assert fresh.fencing_token > stale.fencing_token
        with pytest.raises(LockExpiredError):
            await stale.extend(30)
        with pytest.raises(LockExpiredError):
            await stale.release()
        await fresh.release()

    async def test_acquire_times_out_on_time(self, ly: Connection) -> None:
        name = rwlock_name()

        async def hold_write() -> None:
            async with await ly.rwlocks.acquire_write(name, 30, timeout=1):
                await asyncio.sleep(1.5)

        holder = asyncio.create_task(hold_write())
        await asyncio.sleep(self.queue_join_s)
        for timeout in (0, 0.3):
            async with self.watching_round_trips(ly) as round_trips:
                started = loop_time()
                with pytest.raises(LockTimeoutError):
                    await ly.rwlocks.acquire_read(name, 30, timeout=timeout)
                elapsed = loop_time() - started
            slack_s = self.timeout_slack_for(round_trips.slowest)
            assert timeout <= elapsed <= timeout + slack_s + 0.05
        await holder

    async def test_list_held_and_break_holder(self, ly: Connection) -> None:
        name = rwlock_name()
        first = await ly.rwlocks.acquire_read(name, 30, timeout=1)
        second = await ly.rwlocks.try_acquire_read(name, 30)
        assert second is not None
        held = {i.owner: i for i in await ly.rwlocks.list_held() if i.name == name}
        assert set(held) == {first.owner, second.owner}
        assert held[first.owner].weight == 1
        assert held[first.owner].fencing_token == first.fencing_token
        assert await ly.rwlocks.break_holder(name, first.owner)
        with pytest.raises(LockExpiredError):
            await first.release()
        await second.release()
        writer = await ly.rwlocks.acquire_write(name, 30, timeout=1)
        held = {i.owner: i for i in await ly.rwlocks.list_held() if i.name == name}
        assert held[writer.owner].weight > 1
        await writer.release()

    async def test_hold_write_cancels_the_block_when_lost(self, ly: Connection) -> None:
        name = rwlock_name()
        reached_end = False
        with pytest.raises(LockLostError):
            async with ly.rwlocks.hold_write(name, self.short_ttl_s) as guard:
                assert await ly.rwlocks.break_holder(name, guard.owner)
                await asyncio.sleep(self.short_ttl_s * 4)
                reached_end = True
        assert not reached_end
        assert guard.lost.is_set()
        ttl = self.renewal_ttl_s
        async with ly.rwlocks.hold_read(name, ttl) as reader:
            await asyncio.sleep(ttl * 3)
            assert await reader.is_held()
        assert not await reader.is_held()
