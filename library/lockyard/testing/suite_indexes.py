"""Conformance: the timeout and chain-ready indexes (spec section 3, ``index_*``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from lockyard.connection import Connection
from lockyard.testing.fixtures import ConformanceBase, key


@pytest.mark.asyncio
class IndexConformance(ConformanceBase):
    @pytest.fixture(params=["timeout", "chain"])
    def index(
        self, request: pytest.FixtureRequest, ly: Connection
    ) -> tuple[
        Callable[[str, int], Awaitable[None]],
        Callable[[str], Awaitable[None]],
        Callable[[int], Awaitable[list[str]]],
    ]:
        store = ly.store
        if request.param == "timeout":
            return store.index_timeout, store.remove_timeout_index, store.get_expired_timeouts
        return store.index_chain_ready, store.remove_chain_ready_index, store.get_ready_chains

    async def test_due_entries_are_inclusive_of_now(self, index: tuple) -> None:  # type: ignore[type-arg]
        add, _, due = index
        await add(key(id_="a"), 100)
        await add(key(id_="b"), 200)
        await add(key(id_="c"), 201)
        await add(key(id_="neg"), -5)
        assert set(await due(200)) == {key(id_="a"), key(id_="b"), key(id_="neg")}
        assert await due(-6) == []
        assert set(await due(-5)) == {key(id_="neg")}

    async def test_reindexing_replaces_the_timestamp(self, index: tuple) -> None:  # type: ignore[type-arg]
        add, _, due = index
        k = key(id_="moved")
        await add(k, 100)
        await add(k, 500)
        assert await due(499) == []
        assert await due(500) == [k]
        await add(k, 50)
        assert await due(100) == [k]

    async def test_reads_are_read_only_and_removal_is_idempotent(self, index: tuple) -> None:  # type: ignore[type-arg]
        add, remove, due = index
        k = key(id_="x")
        await add(k, 10)
        assert await due(10) == [k]
        assert await due(10) == [k]
        await remove(k)
        await remove(k)
        await remove(key(id_="never-indexed"))
        assert await due(10**12) == []

    async def test_the_two_indexes_are_independent(self, ly: Connection) -> None:
        k = key(id_="both")
        await ly.store.index_timeout(k, 10)
        assert await ly.store.get_ready_chains(10**12) == []
        await ly.store.index_chain_ready(k, 20)
        await ly.store.remove_timeout_index(k)
        assert await ly.store.get_expired_timeouts(10**12) == []
        assert await ly.store.get_ready_chains(20) == [k]

    async def test_indexes_hold_keys_not_data(self, ly: Connection) -> None:
        k = key("event_timeout", "e1")
        await ly.store.set(k, "v", ttl=self.short_ttl_s)
        await ly.store.index_timeout(k, 5)
        await ly.store.delete(k)
        assert await ly.store.get_expired_timeouts(5) == [k]
        await self.expire()
        assert await ly.store.get_expired_timeouts(5) == [k]

    async def test_keys_with_colons_and_wildcards_round_trip(self, ly: Connection) -> None:
        keys = {f"ns:acme:chain:ns:t:{c}act" for c in ["%", "_", "*", "[x]", ":"]}
        for i, k in enumerate(sorted(keys)):
            await ly.store.index_chain_ready(k, i)
        assert set(await ly.store.get_ready_chains(100)) == keys

    async def test_many_entries_only_due_ones_return(self, ly: Connection) -> None:
        for i in range(200):
            await ly.store.index_timeout(key(id_=f"k{i}"), i * 10)
        due = await ly.store.get_expired_timeouts(95)
        assert set(due) == {key(id_=f"k{i}") for i in range(10)}
