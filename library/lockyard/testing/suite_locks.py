"""Conformance: locks, guards, fencing, waiting, renewal and loss (spec section 4)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import pytest

from lockyard import LockExpiredError, LockLostError, LockTimeoutError
from lockyard.connection import Connection
from lockyard.testing.fixtures import ConformanceBase


def lock_name() -> str:
    return f"lock-{uuid.uuid4().hex[:8]}"


@pytest.mark.asyncio
class LockConformance(ConformanceBase):
    async def test_try_acquire_is_exclusive_and_not_reentrant(self, ly: Connection) -> None:
        name = lock_name()
        guard = await ly.locks.try_acquire(name, 5)
        assert guard is not None
        assert guard.name == name
        assert len(guard.owner) >= 16
        assert await ly.locks.try_acquire(name, 5) is None
        assert await guard.is_held()
        await guard.release()
        assert not await guard.is_held()
        again = await ly.locks.try_acquire(name, 5)
        assert again is not None
        assert again.owner != guard.owner
        await again.release()

    async def test_fencing_tokens_strictly_increase(self, ly: Connection) -> None:
        name = lock_name()
        tokens = []
        for _ in range(3):
            guard = await ly.locks.acquire(name, 5, timeout=1)
            tokens.append(guard.fencing_token)
            await guard.release()
        expiring = await ly.locks.acquire(name, self.short_ttl_s, timeout=1)
        tokens.append(expiring.fencing_token)
        await self.expire()
        broken = await ly.locks.acquire(name, 5, timeout=1)
        tokens.append(broken.fencing_token)
        assert await ly.locks.break_lock(name)
        after_break = await ly.locks.acquire(name, 5, timeout=1)
        tokens.append(after_break.fencing_token)
        await after_break.release()
        assert tokens == sorted(set(tokens))
        assert all(isinstance(t, int) and t > 0 for t in tokens)

    async def test_fencing_counters_are_per_name(self, ly: Connection) -> None:
        a, b = lock_name(), lock_name()
        for _ in range(3):
            await (await ly.locks.acquire(a, 5, timeout=1)).release()
        guard_b = await ly.locks.acquire(b, 5, timeout=1)
        guard_a = await ly.locks.acquire(a, 5, timeout=1)
        assert guard_a.fencing_token > guard_b.fencing_token
        await guard_a.release()
        await guard_b.release()

    async def test_an_expired_lock_is_free_and_its_stale_guard_raises(self, ly: Connection) -> None:
        name = lock_name()
        stale = await ly.locks.acquire(name, self.short_ttl_s, timeout=1)
        await self.expire()
        assert not await stale.is_held()
        fresh = await ly.locks.try_acquire(name, 5)
        assert fresh is not None
        assert fresh.fencing_token > stale.fencing_token
        with pytest.raises(LockExpiredError):
            await stale.extend(5)
        with pytest.raises(LockExpiredError):
            await stale.release()
        assert stale.lost.is_set()
        assert await fresh.is_held()
        assert await ly.locks.try_acquire(name, 5) is None
        await fresh.release()

    async def test_a_released_guard_cannot_release_again(self, ly: Connection) -> None:
        guard = await ly.locks.acquire(lock_name(), 5, timeout=1)
        await guard.release()
        with pytest.raises(LockExpiredError):
            await guard.release()
        with pytest.raises(LockExpiredError):
            await guard.extend(5)

    async def test_extend_resets_the_lease_rather_than_adding(self, ly: Connection) -> None:
        name = lock_name()
        guard = await ly.locks.acquire(name, self.short_ttl_s, timeout=1)
        await guard.extend(timedelta(seconds=30))
        await self.expire()
        assert await guard.is_held()
        await guard.extend(self.short_ttl_s)
        await self.expire()
        assert not await guard.is_held()

    async def test_acquire_waits_for_a_release(self, ly: Connection) -> None:
        name = lock_name()
        holder = await ly.locks.acquire(name, 30, timeout=1)
        released_at = 0.0

        async def release_later() -> None:
            nonlocal released_at
            await asyncio.sleep(0.3)
            released_at = time.monotonic()
            await holder.release()

        task = asyncio.create_task(release_later())
        waiter = await ly.locks.acquire(name, 5, timeout=10)
        acquired_at = time.monotonic()
        await task
        assert waiter.fencing_token > holder.fencing_token
        assert acquired_at - released_at <= self.handover_bound_s + 0.05
        await waiter.release()

    async def test_acquire_takes_a_lock_whose_holder_expired(self, ly: Connection) -> None:
        name = lock_name()
        await ly.locks.acquire(name, self.short_ttl_s, timeout=1)
        started = time.monotonic()
        guard = await ly.locks.acquire(name, 5, timeout=10)
        assert time.monotonic() - started <= self.short_ttl_s + self.handover_bound_s + 0.2
        await guard.release()

    async def test_acquire_times_out_on_time(self, ly: Connection) -> None:
        name = lock_name()
        holder = await ly.locks.acquire(name, 30, timeout=1)
        for timeout in (0, 0.3):
            started = time.monotonic()
            with pytest.raises(LockTimeoutError) as raised:
                await ly.locks.acquire(name, 5, timeout=timeout)
            elapsed = time.monotonic() - started
            assert elapsed <= timeout + self.timeout_slack_s + 0.05
            assert elapsed >= timeout
            assert isinstance(raised.value, TimeoutError)
        await holder.release()

    async def test_acquire_with_zero_timeout_takes_a_free_lock(self, ly: Connection) -> None:
        guard = await ly.locks.acquire(lock_name(), 5, timeout=0)
        await guard.release()

    async def test_guard_is_an_async_context_manager(self, ly: Connection) -> None:
        name = lock_name()
        async with await ly.locks.acquire(name, 5, timeout=1) as guard:
            assert await guard.is_held()
        assert not await guard.is_held()
        assert await ly.locks.try_acquire(name, 5) is not None

    async def test_bad_lock_arguments_are_rejected(self, ly: Connection) -> None:
        with pytest.raises(ValueError, match="ttl"):
            await ly.locks.try_acquire(lock_name(), 0)
        with pytest.raises(ValueError, match="ttl"):
            await ly.locks.acquire(lock_name(), -1, timeout=1)
        with pytest.raises(ValueError, match="timeout"):
            await ly.locks.acquire(lock_name(), 1, timeout=-1)
        with pytest.raises(ValueError, match="name"):
            await ly.locks.try_acquire("", 1)
        with pytest.raises(TypeError):
            await ly.locks.try_acquire(lock_name(), "1")  # type: ignore[arg-type]

    async def test_many_waiters_get_the_lock_one_at_a_time(self, ly: Connection) -> None:
        name = lock_name()
        inside = 0
        tokens: list[int] = []

        async def worker() -> None:
            nonlocal inside
            for _ in range(3):
                async with await ly.locks.acquire(name, 5, timeout=30) as guard:
                    inside += 1
                    assert inside == 1
                    tokens.append(guard.fencing_token)
                    await asyncio.sleep(0.002)
                    inside -= 1

        await asyncio.gather(*(worker() for _ in range(8)))
        assert len(tokens) == 24
        assert tokens == sorted(set(tokens))

    async def test_list_held_and_break_lock(self, ly: Connection) -> None:
        name = lock_name()
        guard = await ly.locks.acquire(name, 30, timeout=1)
        held = {info.name: info for info in await ly.locks.list_held()}
        assert held[name].owner == guard.owner
        assert held[name].fencing_token == guard.fencing_token
        assert 0 < held[name].expires_in_ms <= 30_000
        assert await ly.locks.break_lock(name)
        assert not await ly.locks.break_lock(name)
        assert name not in {info.name for info in await ly.locks.list_held()}
        with pytest.raises(LockExpiredError):
            await guard.release()

    # -- hold() ----------------------------------------------------------------------------
    async def test_hold_renews_while_the_block_runs(self, ly: Connection) -> None:
        name = lock_name()
        async with ly.locks.hold(name, self.short_ttl_s) as guard:
            await asyncio.sleep(self.short_ttl_s * 3)
            assert await guard.is_held()
            assert await ly.locks.try_acquire(name, 5) is None
        assert not guard.lost.is_set()
        assert not await guard.is_held()

    async def test_hold_cancels_the_block_when_the_lock_is_lost(self, ly: Connection) -> None:
        name = lock_name()
        reached_end = False
        thief = None
        with pytest.raises(LockLostError):
            async with ly.locks.hold(name, self.short_ttl_s) as guard:
                assert await ly.locks.break_lock(name)
                thief = await ly.locks.try_acquire(name, 30)
                assert thief is not None
                await asyncio.sleep(self.short_ttl_s * 4)
                reached_end = True
        assert not reached_end
        assert guard.lost.is_set()
        assert thief is not None
        assert await thief.is_held()
        await thief.release()

    async def test_hold_without_auto_renew_expires(self, ly: Connection) -> None:
        name = lock_name()
        with pytest.raises(LockLostError):
            async with ly.locks.hold(name, self.short_ttl_s, auto_renew=False):
                await self.expire()

    async def test_hold_releases_when_the_block_raises(self, ly: Connection) -> None:
        name = lock_name()
        with pytest.raises(RuntimeError, match="boom"):
            async with ly.locks.hold(name, 5):
                raise RuntimeError("boom")
        assert await ly.locks.try_acquire(name, 5) is not None
