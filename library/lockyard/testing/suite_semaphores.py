"""Conformance: counting semaphores (``ly.semaphores``).

Never more than ``limit`` live permits; each permit its own lease and fencing token; expired
permits reclaimed without anyone's help; waiters served in arrival order where
``Guarantees.fifo_waiters`` says so; the limit fixed by the first use; ``hold()``'s loss signal.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from lockyard import LockExpiredError, LockLostError, LockTimeoutError, SemaphoreLimitError
from lockyard.connection import Connection
from lockyard.semaphores import Permit
from lockyard.testing.fixtures import ConformanceBase
from lockyard.testing.virtual_time import loop_time

#: Contending tasks in the contention test (the issue's figure).
CONTENDERS = 32


def semaphore_name() -> str:
    return f"sem-{uuid.uuid4().hex[:8]}"


@pytest.mark.asyncio
class SemaphoreConformance(ConformanceBase):
    #: Time for a waiter's first attempt to reach the backend (as LockConformance's).
    queue_join_s: float = 0.15

    async def test_at_most_limit_permits_each_with_its_own_token(self, ly: Connection) -> None:
        name = semaphore_name()
        permits = [await ly.semaphores.try_acquire(name, 3, 30) for _ in range(3)]
        assert all(isinstance(p, Permit) for p in permits)
        assert await ly.semaphores.try_acquire(name, 3, 30) is None
        held = [p for p in permits if p is not None]
        assert len({p.owner for p in held}) == 3
        tokens = [p.fencing_token for p in held]
        assert tokens == sorted(set(tokens))
        assert all(p.limit == 3 and p.name == name for p in held)
        for permit in held:
            assert await permit.is_held()
        await held[1].release()
        assert not await held[1].is_held()
        again = await ly.semaphores.try_acquire(name, 3, 30)
        assert again is not None
        assert again.fencing_token > max(tokens)
        assert await ly.semaphores.try_acquire(name, 3, 30) is None
        for permit in (held[0], held[2], again):
            await permit.release()

    async def test_the_first_use_fixes_the_limit(self, ly: Connection) -> None:
        name = semaphore_name()
        first = await ly.semaphores.acquire(name, 2, 30, timeout=1)
        with pytest.raises(SemaphoreLimitError, match="first used with limit 2"):
            await ly.semaphores.try_acquire(name, 3, 30)
        with pytest.raises(SemaphoreLimitError):
            await ly.semaphores.acquire(name, 1, 30, timeout=1)
        with pytest.raises(SemaphoreLimitError):
            async with ly.semaphores.hold(name, 5, 30):
                pass
        second = await ly.semaphores.try_acquire(name, 2, 30)
        assert second is not None
        assert await ly.semaphores.try_acquire(name, 2, 30) is None
        await first.release()
        await second.release()
        # Still fixed once every permit is gone.
        with pytest.raises(SemaphoreLimitError):
            await ly.semaphores.try_acquire(name, 3, 30)

    async def test_an_expired_permit_is_reclaimed_without_help(self, ly: Connection) -> None:
        # The permit must still be live when the second attempt is refused: an attempt that
        # took most of the short TTL (a loaded machine) proves nothing, and runs again.
        for _ in range(5):
            name = semaphore_name()
            started = loop_time()
            stale = await ly.semaphores.acquire(name, 1, self.short_ttl_s, timeout=1)
            refused = await ly.semaphores.try_acquire(name, 1, 30)
            if loop_time() - started < self.short_ttl_s * 0.8:
                break
            if refused is not None:
                await refused.release()
        assert refused is None
        await self.expire()
        assert not await stale.is_held()
        fresh = await ly.semaphores.try_acquire(name, 1, 30)
        assert fresh is not None
        assert fresh.fencing_token > stale.fencing_token
        with pytest.raises(LockExpiredError):
            await stale.extend(30)
        with pytest.raises(LockExpiredError):
            await stale.release()
        assert stale.lost.is_set()
        assert await fresh.is_held()
        await fresh.release()

    async def test_a_waiter_gets_an_expired_permit_without_a_release(self, ly: Connection) -> None:
        name = semaphore_name()
        await ly.semaphores.acquire(name, 1, self.short_ttl_s, timeout=1)
        started = loop_time()
        async with self.watching_round_trips(ly) as round_trips:
            permit = await ly.semaphores.acquire(name, 1, 30, timeout=10)
        waited = loop_time() - started
        assert waited <= self.short_ttl_s + self.handover_bound_for(round_trips.slowest) + 0.2
        await permit.release()

    async def test_extend_is_per_permit_and_resets_the_lease(self, ly: Connection) -> None:
        name = semaphore_name()
        kept = await ly.semaphores.acquire(name, 2, 5, timeout=1)
        lapsing = await ly.semaphores.acquire(name, 2, 5, timeout=1)
        await kept.extend(30)
        await lapsing.extend(self.short_ttl_s)
        await self.expire()
        assert await kept.is_held()
        assert not await lapsing.is_held()
        other = await ly.semaphores.try_acquire(name, 2, 30)
        assert other is not None
        assert await ly.semaphores.try_acquire(name, 2, 30) is None
        await kept.release()
        await other.release()

    async def test_acquire_waits_for_a_release(self, ly: Connection) -> None:
        name = semaphore_name()
        holders = [await ly.semaphores.acquire(name, 2, 30, timeout=1) for _ in range(2)]
        released_at = 0.0

        async def release_later() -> None:
            nonlocal released_at
            await asyncio.sleep(0.3)
            released_at = loop_time()
            await holders[0].release()

        async with self.watching_round_trips(ly) as round_trips:
            task = asyncio.create_task(release_later())
            waiter = await ly.semaphores.acquire(name, 2, 30, timeout=10)
            acquired_at = loop_time()
            await task
        assert acquired_at - released_at <= self.handover_bound_for(round_trips.slowest) + 0.05
        assert waiter.fencing_token > holders[1].fencing_token
        await waiter.release()
        await holders[1].release()

    async def test_acquire_times_out_on_time(self, ly: Connection) -> None:
        name = semaphore_name()
        holder = await ly.semaphores.acquire(name, 1, 30, timeout=1)
        for timeout in (0, 0.3):
            async with self.watching_round_trips(ly) as round_trips:
                started = loop_time()
                with pytest.raises(LockTimeoutError) as raised:
                    await ly.semaphores.acquire(name, 1, 30, timeout=timeout)
                elapsed = loop_time() - started
            slack_s = self.timeout_slack_for(round_trips.slowest)
            assert timeout <= elapsed <= timeout + slack_s + 0.05
            assert isinstance(raised.value, TimeoutError)
        await holder.release()

    async def test_contending_tasks_never_exceed_the_limit(self, ly: Connection) -> None:
        name = semaphore_name()
        limit = 3
        inside = 0
        peak = 0
        tokens: list[int] = []

        async def worker() -> None:
            nonlocal inside, peak
            for _ in range(2):
                async with await ly.semaphores.acquire(name, limit, 30, timeout=60) as permit:
                    inside += 1
                    peak = max(peak, inside)
                    assert inside <= limit
                    tokens.append(permit.fencing_token)
                    await asyncio.sleep(0.002)
                    inside -= 1

        await asyncio.gather(*(worker() for _ in range(CONTENDERS)))
        assert len(tokens) == 2 * CONTENDERS
        assert len(set(tokens)) == len(tokens)
        assert peak <= limit

    async def test_waiters_are_served_in_arrival_order(self, ly: Connection) -> None:
        name = semaphore_name()
        holders = [await ly.semaphores.acquire(name, 2, 30, timeout=1) for _ in range(2)]
        order: list[str] = []

        async def waiter(label: str) -> None:
            async with await ly.semaphores.acquire(name, 2, 30, timeout=30):
                order.append(label)
                await asyncio.sleep(0.05)

        waiters = []
        for number in range(4):
            waiters.append(asyncio.create_task(waiter(f"w{number}")))
            await asyncio.sleep(self.queue_join_s)
        await holders[0].release()
        await holders[1].release()
        await asyncio.gather(*waiters)
        if ly.guarantees.fifo_waiters:
            # w0 and w1 take the two freed permits together; w2 is next, then w3.
            assert sorted(order[:2]) == ["w0", "w1"]
            assert order[2:] == ["w2", "w3"]
        else:
            assert sorted(order) == ["w0", "w1", "w2", "w3"]

    async def test_a_waiter_that_times_out_leaves_the_queue(self, ly: Connection) -> None:
        name = semaphore_name()
        holder = await ly.semaphores.acquire(name, 1, 30, timeout=1)
        quitter = asyncio.create_task(
            ly.semaphores.acquire(name, 1, 30, timeout=self.queue_join_s + 0.2)
        )
        await asyncio.sleep(self.queue_join_s)
        patient = asyncio.create_task(ly.semaphores.acquire(name, 1, 30, timeout=10))
        with pytest.raises(LockTimeoutError):
            await quitter
        async with self.watching_round_trips(ly) as round_trips:
            released_at = loop_time()
            await holder.release()
            permit = await patient
            handed_over = loop_time() - released_at
        assert handed_over <= self.handover_bound_for(round_trips.slowest) + 0.05
        await permit.release()

    async def test_list_held_and_break_permit(self, ly: Connection) -> None:
        name = semaphore_name()
        permit = await ly.semaphores.acquire(name, 4, 30, timeout=1)
        other = await ly.semaphores.acquire(name, 4, 30, timeout=1)
        held = {(i.name, i.owner): i for i in await ly.semaphores.list_held()}
        info = held[name, permit.owner]
        assert (info.fencing_token, info.limit, info.weight) == (permit.fencing_token, 4, 1)
        assert 0 < info.expires_in_ms <= 30_000
        assert (name, other.owner) in held
        assert await ly.semaphores.break_permit(name, permit.owner)
        assert not await ly.semaphores.break_permit(name, permit.owner)
        assert (name, permit.owner) not in {
            (i.name, i.owner) for i in await ly.semaphores.list_held()
        }
        with pytest.raises(LockExpiredError):
            await permit.release()
        assert await other.is_held()
        await other.release()

    async def test_semaphores_and_locks_of_one_name_live_apart(self, ly: Connection) -> None:
        name = semaphore_name()
        guard = await ly.locks.acquire(name, 30, timeout=1)
        permit = await ly.semaphores.acquire(name, 1, 30, timeout=1)
        reader = await ly.rwlocks.acquire_read(name, 30, timeout=1)
        assert [i.owner for i in await ly.locks.list_held()] == [guard.owner]
        assert [i.owner for i in await ly.semaphores.list_held()] == [permit.owner]
        assert [i.owner for i in await ly.rwlocks.list_held()] == [reader.owner]
        await guard.release()
        await permit.release()
        await reader.release()

    async def test_hold_renews_while_the_block_runs(self, ly: Connection) -> None:
        name = semaphore_name()
        ttl = self.renewal_ttl_s
        async with ly.semaphores.hold(name, 1, ttl) as permit:
            await asyncio.sleep(ttl * 3)
            assert await permit.is_held()
            assert await ly.semaphores.try_acquire(name, 1, 5) is None
        assert not permit.lost.is_set()
        assert not await permit.is_held()

    async def test_hold_cancels_the_block_when_the_permit_is_lost(self, ly: Connection) -> None:
        name = semaphore_name()
        reached_end = False
        stealing: asyncio.Future[Permit | None] | None = None

        async def break_and_steal(owner: str) -> Permit | None:
            assert await ly.semaphores.break_permit(name, owner)
            return await ly.semaphores.try_acquire(name, 1, 30)

        with pytest.raises(LockLostError):
            async with ly.semaphores.hold(name, 1, self.short_ttl_s) as permit:
                # Outside the block's task: a renewal may find the break, and cancel the
                # block, before the thief's request is answered (a slow backend).
                stealing = asyncio.ensure_future(break_and_steal(permit.owner))
                await asyncio.shield(stealing)
                await asyncio.sleep(self.short_ttl_s * 4)
                reached_end = True
        assert not reached_end
        assert permit.lost.is_set()
        assert stealing is not None
        thief = await stealing
        assert thief is not None
        assert await thief.is_held()
        await thief.release()

    async def test_bad_semaphore_arguments_are_rejected(self, ly: Connection) -> None:
        name = semaphore_name()
        with pytest.raises(ValueError, match="limit"):
            await ly.semaphores.try_acquire(name, 0, 5)
        with pytest.raises(ValueError, match="limit"):
            await ly.semaphores.try_acquire(name, 1001, 5)
        with pytest.raises(TypeError, match="limit"):
            await ly.semaphores.try_acquire(name, True, 5)
        with pytest.raises(ValueError, match="ttl"):
            await ly.semaphores.acquire(name, 1, 0, timeout=1)
        with pytest.raises(ValueError, match="timeout"):
            await ly.semaphores.acquire(name, 1, 1, timeout=-1)
        with pytest.raises(ValueError, match="name"):
            await ly.semaphores.try_acquire("", 1, 1)
