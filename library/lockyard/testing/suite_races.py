"""Conformance: atomicity under concurrent callers (spec section 3, "under any number of
concurrent callers exactly one wins")."""

from __future__ import annotations

import asyncio

import pytest

from lockyard.connection import Connection
from lockyard.testing.fixtures import ConformanceBase, key

RACERS = 32


@pytest.mark.asyncio
class RaceConformance(ConformanceBase):
    async def test_concurrent_check_and_set_has_exactly_one_winner(self, ly: Connection) -> None:
        k = key("dedup")
        results = await asyncio.gather(*(ly.store.check_and_set(k, f"v{i}") for i in range(RACERS)))
        assert results.count(True) == 1
        winner = results.index(True)
        assert await ly.store.get_versioned(k) == (f"v{winner}", 1)

    async def test_concurrent_check_and_set_on_an_expired_key(self, ly: Connection) -> None:
        k = key("dedup")
        await ly.store.set(k, "old", ttl=self.short_ttl_s)
        await self.expire()
        results = await asyncio.gather(*(ly.store.check_and_set(k, f"v{i}") for i in range(RACERS)))
        assert results.count(True) == 1

    async def test_concurrent_increments_are_exact_and_distinct(self, ly: Connection) -> None:
        k = key("counter")
        results = await asyncio.gather(*(ly.store.increment(k, 1) for _ in range(RACERS * 2)))
        assert sorted(results) == list(range(1, RACERS * 2 + 1))
        assert await ly.store.get_versioned(k) == (str(RACERS * 2), RACERS * 2)

    async def test_concurrent_cas_on_one_version_has_one_winner(self, ly: Connection) -> None:
        k = key()
        await ly.store.set(k, "start")
        results = await asyncio.gather(
            *(ly.store.compare_and_swap(k, 1, f"v{i}") for i in range(RACERS))
        )
        winners = [r for r in results if r.ok]
        assert len(winners) == 1
        assert all(r.current_version == 2 for r in results)
        assert await ly.store.get_versioned(k) == (winners[0].current_value, 2)

    async def test_concurrent_reindexing_keeps_the_key_once(self, ly: Connection) -> None:
        k = key(id_="contended")
        await asyncio.gather(
            *(ly.store.index_timeout(k, i) for i in range(RACERS)),
            *(ly.store.index_chain_ready(k, i) for i in range(RACERS)),
        )
        assert await ly.store.get_expired_timeouts(10**6) == [k]
        assert await ly.store.get_ready_chains(10**6) == [k]

    async def test_cas_chains_lose_no_update(self, ly: Connection) -> None:
        k = key()
        await ly.store.set(k, "0")

        async def bump() -> None:
            while True:
                current = await ly.store.get_versioned(k)
                assert current is not None
                value, version = current
                result = await ly.store.compare_and_swap(k, version, str(int(value) + 1))
                if result.ok:
                    return

        await asyncio.gather(*(bump() for _ in range(12)))
        assert await ly.store.get_versioned(k) == ("12", 13)
