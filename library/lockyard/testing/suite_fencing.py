"""Conformance: fenced writes (``fence=guard`` on store writes).

A fenced write lands only while its guard (a lock, a semaphore permit, a read-write lock hold)
still holds its lease, checked in the same round trip as the write; after expiry, release,
break or take-over it raises ``FenceLostError`` (a ``LockLostError``) and leaves the value, its
version and the indexes untouched.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lockyard import FenceLostError, LockLostError, StateError
from lockyard.connection import Connection
from lockyard.fenced_writes import Fenced
from lockyard.testing.fixtures import ConformanceBase, key

FencedWrite = Callable[[Connection, str, Fenced], Awaitable[Any]]

#: Every fenced write, on a key that holds "before" at version 1 (and is in both indexes at 5).
WRITES: dict[str, FencedWrite] = {
    "set": lambda ly, k, g: ly.store.set(k, "after", fence=g),
    "set_ttl": lambda ly, k, g: ly.store.set(k, "after", ttl=60, fence=g),
    "check_and_set": lambda ly, k, g: ly.store.check_and_set(k + "-new", "after", fence=g),
    "compare_and_swap": lambda ly, k, g: ly.store.compare_and_swap(k, 1, "after", fence=g),
    "increment": lambda ly, k, g: ly.store.increment(k + "-counter", 5, fence=g),
    "delete": lambda ly, k, g: ly.store.delete(k, fence=g),
    "index_timeout": lambda ly, k, g: ly.store.index_timeout(k, 99, fence=g),
    "remove_timeout_index": lambda ly, k, g: ly.store.remove_timeout_index(k, fence=g),
    "index_chain_ready": lambda ly, k, g: ly.store.index_chain_ready(k, 99, fence=g),
    "remove_chain_ready_index": lambda ly, k, g: ly.store.remove_chain_ready_index(k, fence=g),
}


def fence_name() -> str:
    return f"fence-{uuid.uuid4().hex[:8]}"


def fenced_key() -> str:
    """A fresh key in a ``{group}`` of its own: guards placed beside it with
    ``Connection.colocated_name`` may fence it on every backend (Redis Cluster needs the lease
    and the key in one hash slot; the other backends ignore the group)."""
    return key("fenced", f"{{{uuid.uuid4().hex[:10]}}}")


def beside(ly: Connection, k: str, guard: str = "lock") -> str:
    """A fresh guard name whose lease lives beside ``k``."""
    return ly.colocated_name(fence_name(), k, guard=guard)


async def snapshot(ly: Connection, k: str) -> tuple[object, ...]:
    """Everything a write of :data:`WRITES` could change."""
    return (
        await ly.store.get_versioned(k),
        await ly.store.get_versioned(k + "-new"),
        await ly.store.get_versioned(k + "-counter"),
        k in await ly.store.get_expired_timeouts(10),
        k in await ly.store.get_expired_timeouts(100),
        k in await ly.store.get_ready_chains(10),
        k in await ly.store.get_ready_chains(100),
    )


async def prepared_key(ly: Connection, k: str) -> str:
    await ly.store.set(k, "before")
    await ly.store.set(k + "-counter", "10")
    await ly.store.index_timeout(k, 5)
    await ly.store.index_chain_ready(k, 5)
    return k


@pytest.mark.asyncio
class FencingConformance(ConformanceBase):
    async def test_fenced_writes_land_while_the_lock_is_held(self, ly: Connection) -> None:
        k = fenced_key()
        guard = await ly.locks.acquire(beside(ly, k), 30, timeout=1)
        assert await ly.store.check_and_set(k, "a", fence=guard)
        assert not await ly.store.check_and_set(k, "b", fence=guard)
        await ly.store.set(k, "c", fence=guard)
        cas = await ly.store.compare_and_swap(k, 2, "d", fence=guard)
        assert (cas.ok, cas.current_value, cas.current_version) == (True, "d", 3)
        conflict = await ly.store.compare_and_swap(k, 2, "e", fence=guard)
        assert (conflict.ok, conflict.current_value, conflict.current_version) == (False, "d", 3)
        missing = await ly.store.compare_and_swap(k + "-none", 0, "e", fence=guard)
        assert (missing.ok, missing.current_value, missing.current_version) == (False, None, 0)
        assert await ly.store.increment(k + "-n", 4, fence=guard) == 4
        assert await ly.store.increment(k + "-n", -1, ttl=60, fence=guard) == 3
        await ly.store.index_timeout(k, 7, fence=guard)
        await ly.store.index_chain_ready(k, 8, fence=guard)
        assert await ly.store.get_expired_timeouts(7) == [k]
        assert await ly.store.get_ready_chains(8) == [k]
        await ly.store.remove_timeout_index(k, fence=guard)
        await ly.store.remove_chain_ready_index(k, fence=guard)
        assert await ly.store.get_expired_timeouts(7) == []
        assert await ly.store.get_ready_chains(8) == []
        assert await ly.store.get_versioned(k) == ("d", 3)
        assert await ly.store.delete(k, fence=guard)
        assert not await ly.store.delete(k, fence=guard)
        await guard.release()

    async def test_fenced_increment_refuses_a_non_counter_like_the_unfenced_one(
        self, ly: Connection
    ) -> None:
        k = fenced_key()
        guard = await ly.locks.acquire(beside(ly, k), 30, timeout=1)
        await ly.store.set(k, "seven")
        with pytest.raises(StateError) as fenced_error:
            await ly.store.increment(k, 1, fence=guard)
        with pytest.raises(StateError) as plain_error:
            await ly.store.increment(k, 1)
        assert type(fenced_error.value) is type(plain_error.value)
        assert not isinstance(fenced_error.value, LockLostError)
        assert await ly.store.get_versioned(k) == ("seven", 1)
        await guard.release()

    @pytest.mark.parametrize("write", sorted(WRITES))
    async def test_a_released_lock_fences_nothing(self, ly: Connection, write: str) -> None:
        k = fenced_key()
        guard = await ly.locks.acquire(beside(ly, k), 30, timeout=1)
        await prepared_key(ly, k)
        before = await snapshot(ly, k)
        await guard.release()
        with pytest.raises(FenceLostError) as raised:
            await WRITES[write](ly, k, guard)
        assert isinstance(raised.value, LockLostError)
        assert await snapshot(ly, k) == before

    async def test_an_expired_lock_fences_nothing(self, ly: Connection) -> None:
        k = fenced_key()
        guard = await ly.locks.acquire(beside(ly, k), self.short_ttl_s, timeout=1)
        await prepared_key(ly, k)
        before = await snapshot(ly, k)
        await self.expire()
        for write in WRITES.values():
            with pytest.raises(FenceLostError):
                await write(ly, k, guard)
        assert await snapshot(ly, k) == before

    async def test_a_broken_and_taken_over_lock_fences_only_the_new_holder(
        self, ly: Connection
    ) -> None:
        k = fenced_key()
        name = beside(ly, k)
        old = await ly.locks.acquire(name, 30, timeout=1)
        await prepared_key(ly, k)
        await ly.store.set(k, "by-old", fence=old)
        assert await ly.locks.break_lock(name)
        new = await ly.locks.acquire(name, 30, timeout=1)
        assert new.fencing_token > old.fencing_token
        await ly.store.set(k, "by-new", fence=new)
        before = await snapshot(ly, k)
        for write in WRITES.values():
            with pytest.raises(FenceLostError):
                await write(ly, k, old)
        assert await snapshot(ly, k) == before
        assert await ly.store.get(k) == "by-new"
        await new.release()

    async def test_a_lock_of_another_name_does_not_fence(self, ly: Connection) -> None:
        k = fenced_key()
        held = await ly.locks.acquire(beside(ly, k), 30, timeout=1)
        other = await ly.locks.acquire(beside(ly, k), 30, timeout=1)
        await other.release()
        with pytest.raises(FenceLostError):
            await ly.store.set(k, "x", fence=other)
        await ly.store.set(k, "y", fence=held)
        assert await ly.store.get(k) == "y"
        await held.release()

    async def test_a_semaphore_permit_fences_its_own_writes(self, ly: Connection) -> None:
        k = fenced_key()
        name = beside(ly, k, "semaphore")
        first = await ly.semaphores.acquire(name, 2, 30, timeout=1)
        second = await ly.semaphores.acquire(name, 2, 30, timeout=1)
        await prepared_key(ly, k)
        await ly.store.set(k, "by-first", fence=first)
        assert await ly.semaphores.break_permit(name, first.owner)
        before = await snapshot(ly, k)
        for write in WRITES.values():
            with pytest.raises(FenceLostError):
                await write(ly, k, first)
        assert await snapshot(ly, k) == before
        await ly.store.set(k, "by-second", fence=second)
        assert await ly.store.get(k) == "by-second"
        await second.release()
        with pytest.raises(FenceLostError):
            await ly.store.set(k, "late", fence=second)

    async def test_an_expired_permit_fences_nothing(self, ly: Connection) -> None:
        k = fenced_key()
        permit = await ly.semaphores.acquire(
            beside(ly, k, "semaphore"), 3, self.short_ttl_s, timeout=1
        )
        await prepared_key(ly, k)
        before = await snapshot(ly, k)
        await self.expire()
        with pytest.raises(FenceLostError):
            await ly.store.set(k, "late", fence=permit)
        with pytest.raises(FenceLostError):
            await ly.store.increment(k + "-counter", 1, fence=permit)
        assert await snapshot(ly, k) == before

    async def test_read_write_lock_holds_fence_their_writes(self, ly: Connection) -> None:
        k = fenced_key()
        name = beside(ly, k, "rwlock")
        writer = await ly.rwlocks.acquire_write(name, 30, timeout=1)
        await prepared_key(ly, k)
        await ly.store.set(k, "written", fence=writer)
        await writer.release()
        with pytest.raises(FenceLostError):
            await ly.store.set(k, "late", fence=writer)
        reader = await ly.rwlocks.acquire_read(name, 30, timeout=1)
        await ly.store.index_timeout(k, 1, fence=reader)
        assert await ly.rwlocks.break_holder(name, reader.owner)
        with pytest.raises(FenceLostError):
            await ly.store.remove_timeout_index(k, fence=reader)
        assert k in await ly.store.get_expired_timeouts(1)
        assert await ly.store.get(k) == "written"

    async def test_a_fence_must_be_a_guard(self, ly: Connection) -> None:
        with pytest.raises(TypeError, match="fence"):
            await ly.store.set(key(), "x", fence="lock-17")  # type: ignore[arg-type]

    async def test_fenced_writes_stop_at_the_break(self, ly: Connection) -> None:
        """Fenced increments by one holder race a break: every increment that returned landed,
        none that raised did, and once the break has returned every later one is refused."""
        k = fenced_key()
        name = beside(ly, k)
        guard = await ly.locks.acquire(name, 30, timeout=1)
        landed = 0
        first_landed = asyncio.Event()

        async def writer() -> None:
            nonlocal landed
            while True:
                try:
                    await ly.store.increment(k, 1, fence=guard)
                except FenceLostError:
                    return
                landed += 1
                first_landed.set()
                await asyncio.sleep(0.001)  # the memory backend never yields by itself

        tasks = [asyncio.create_task(writer()) for _ in range(4)]
        # The break comes once increments are landing (the first takes a round trip, hundreds
        # of milliseconds on a loaded machine), so it races them rather than preceding them all.
        await asyncio.wait_for(first_landed.wait(), 10)
        await asyncio.sleep(0.02)
        assert await ly.locks.break_lock(name)
        with pytest.raises(FenceLostError):
            await ly.store.increment(k, 1, fence=guard)
        await asyncio.gather(*tasks)
        assert landed > 0
        assert await ly.store.get(k) == str(landed)
