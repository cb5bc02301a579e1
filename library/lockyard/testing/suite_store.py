"""Conformance: keys, values, versions and TTLs of the data operations (spec sections 1-3)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from lockyard import CasResult, KeyKind, SerializationError, StateKey
from lockyard.connection import Connection
from lockyard.errors import HandleClosedError, InvalidKeyError
from lockyard.testing.fixtures import ConformanceBase, ConnectFactory, key, unique_prefix
from lockyard.testing.virtual_time import loop_time

INT64_MAX = 2**63 - 1


@pytest.mark.asyncio
class StoreConformance(ConformanceBase):
    # -- keys and values -------------------------------------------------------------------
    async def test_state_key_and_canonical_string_are_the_same_key(self, ly: Connection) -> None:
        k = StateKey("ns", "acme", KeyKind.STATE, "ns:t:act-1")
        await ly.store.set(k, "v")
        assert await ly.store.get("ns:acme:state:ns:t:act-1") == "v"
        assert await ly.store.scan_keys("ns", "acme", KeyKind.STATE) == [(str(k), "v")]

    async def test_malformed_keys_raise_invalid_key_error(self, ly: Connection) -> None:
        for bad in ["", "a:b:c", "a::c:d", ":b:c:d", "a:b:c:"]:
            with pytest.raises(InvalidKeyError):
                await ly.store.get(bad)
        with pytest.raises(InvalidKeyError):
            StateKey("a:x", "b", "c", "d")
        with pytest.raises(ValueError, match="kind"):
            StateKey("a", "b", "", "d")

    async def test_values_round_trip_exactly(self, ly: Connection) -> None:
        for value in ["", " ", "ünïcødé ✓ 🔒", "line\nbreak", "x" * 100_000, "'; DROP --"]:
            k = key()
            await ly.store.set(k, value)
            assert await ly.store.get(k) == value

    async def test_non_string_values_are_rejected(self, ly: Connection) -> None:
        with pytest.raises(TypeError):
            await ly.store.set(key(), 5)  # type: ignore[arg-type]

    # -- the handle ------------------------------------------------------------------------
    async def test_a_closed_handle_refuses_every_operation(
        self, lockyard_connect: ConnectFactory
    ) -> None:
        """After ``close()`` (idempotent) every operation raises ``HandleClosedError`` (also a
        ``RuntimeError``) and sends nothing: a driver that reconnected on demand would open a
        connection that nothing ever closes."""
        closed = await lockyard_connect(unique_prefix())
        k = key()
        await closed.store.set(k, "v")
        await closed.store.purge()
        await closed.close()
        await closed.close()
        for operation in (
            lambda: closed.store.get(k),
            lambda: closed.store.set(k, "w"),
            lambda: closed.locks.try_acquire(f"closed-{k}", 5),
            lambda: closed.semaphores.try_acquire(f"closed-{k}", 2, 5),
        ):
            with pytest.raises(HandleClosedError, match="closed"):
                await operation()

    # -- check_and_set ---------------------------------------------------------------------
    async def test_check_and_set_creates_only_when_absent(self, ly: Connection) -> None:
        k = key("dedup")
        assert await ly.store.check_and_set(k, "first") is True
        assert await ly.store.check_and_set(k, "second") is False
        assert await ly.store.get_versioned(k) == ("first", 1)

    async def test_check_and_set_leaves_the_ttl_of_a_live_value(self, ly: Connection) -> None:
        created: dict[str, tuple[bool, bool]] = {}

        async def set_up(k: str) -> None:
            first = await ly.store.check_and_set(k, "a", ttl=self.short_ttl_s)
            created[k] = (first, await ly.store.check_and_set(k, "b", ttl=3600))

        k = await self.key_set_up_within_short_ttl(set_up, "dedup")
        assert created[k] == (True, False)
        await self.expire()
        assert await ly.store.get(k) is None

    async def test_check_and_set_wins_over_an_expired_value(self, ly: Connection) -> None:
        k = key("dedup")
        await ly.store.set(k, "old", ttl=self.short_ttl_s)
        await ly.store.set(k, "old2", ttl=self.short_ttl_s)
        await self.expire()
        assert await ly.store.check_and_set(k, "new") is True
        assert await ly.store.get_versioned(k) == ("new", 1)

    # -- get / set / delete ----------------------------------------------------------------
    async def test_get_of_a_missing_key_is_none(self, ly: Connection) -> None:
        assert await ly.store.get(key()) is None
        assert await ly.store.get_versioned(key()) is None

    async def test_set_counts_versions_from_one(self, ly: Connection) -> None:
        k = key()
        await ly.store.set(k, "a")
        await ly.store.set(k, "b")
        await ly.store.set(k, "c")
        assert await ly.store.get_versioned(k) == ("c", 3)

    async def test_set_without_ttl_clears_an_earlier_ttl(self, ly: Connection) -> None:
        async def set_up(k: str) -> None:
            await ly.store.set(k, "a", ttl=self.short_ttl_s)
            await ly.store.set(k, "b")

        k = await self.key_set_up_within_short_ttl(set_up)
        await self.expire()
        assert await ly.store.get_versioned(k) == ("b", 2)

    async def test_set_with_ttl_replaces_the_expiry(self, ly: Connection) -> None:
        seen: dict[str, str | None] = {}

        async def set_up(k: str) -> None:
            await ly.store.set(k, "a")
            await ly.store.set(k, "b", ttl=timedelta(seconds=self.short_ttl_s))
            seen[k] = await ly.store.get(k)

        k = await self.key_set_up_within_short_ttl(set_up)
        assert seen[k] == "b"
        await self.expire()
        assert await ly.store.get(k) is None

    async def test_set_after_expiry_restarts_the_version(self, ly: Connection) -> None:
        k = key()
        await ly.store.set(k, "a", ttl=self.short_ttl_s)
        await ly.store.set(k, "b", ttl=self.short_ttl_s)
        await self.expire()
        await ly.store.set(k, "c")
        assert await ly.store.get_versioned(k) == ("c", 1)

    async def test_delete_reports_whether_a_live_value_existed(self, ly: Connection) -> None:
        k = key()
        assert await ly.store.delete(k) is False
        await ly.store.set(k, "a")
        assert await ly.store.delete(k) is True
        assert await ly.store.get(k) is None
        assert await ly.store.delete(k) is False
        await ly.store.set(k, "b", ttl=self.short_ttl_s)
        await self.expire()
        assert await ly.store.delete(k) is False

    # -- TTL arguments ---------------------------------------------------------------------
    async def test_zero_or_negative_ttl_is_rejected(self, ly: Connection) -> None:
        bad: float | timedelta
        bads: list[float | timedelta] = [0, -1, 0.0, timedelta(0), timedelta(seconds=-1)]
        for bad in bads:
            with pytest.raises(ValueError, match="ttl"):
                await ly.store.set(key(), "v", ttl=bad)
            with pytest.raises(ValueError, match="ttl"):
                await ly.store.check_and_set(key(), "v", ttl=bad)
            with pytest.raises(ValueError, match="ttl"):
                await ly.store.increment(key(), 1, ttl=bad)

    async def test_sub_millisecond_ttl_rounds_up_and_expires(self, ly: Connection) -> None:
        k = key()
        await ly.store.set(k, "v", ttl=0.0004)
        await asyncio.sleep(0.05)
        assert await ly.store.get(k) is None

    async def test_expired_data_is_reclaimed_without_being_touched(self, ly: Connection) -> None:
        for i in range(5):
            await ly.store.set(key("history", f"h{i}"), "v", ttl=self.short_ttl_s)
        await self.expire()
        assert await ly.store.scan_keys_by_kind("history") == []

    # -- increment -------------------------------------------------------------------------
    async def test_increment_starts_from_zero_and_counts_versions(self, ly: Connection) -> None:
        k = key("counter")
        assert await ly.store.increment(k, 5) == 5
        assert await ly.store.increment(k, -7) == -2
        assert await ly.store.get_versioned(k) == ("-2", 2)

    async def test_increment_continues_a_value_written_by_set(self, ly: Connection) -> None:
        k = key("counter")
        await ly.store.set(k, "7")
        assert await ly.store.increment(k, 1) == 8
        assert await ly.store.get(k) == "8"
        assert await ly.store.scan_keys("ns", "acme", "counter") == [(k, "8")]

    async def test_increment_with_ttl_slides_the_window(self, ly: Connection) -> None:
        ttl = self.short_ttl_s
        # The read lands after the first window ended, so "2" proves the second increment slid
        # it. An attempt whose steps outran a window on a loaded machine proves nothing and is
        # repeated on a fresh key rather than judged.
        for _ in range(5):
            k = key("rate_limit")
            first = loop_time()
            await ly.store.increment(k, 1, ttl=ttl)
            await asyncio.sleep(ttl * 0.6)
            second = loop_time()
            await ly.store.increment(k, 1, ttl=ttl)
            second_done = loop_time()
            await asyncio.sleep(ttl * 0.6)
            value = await ly.store.get(k)
            if second_done - first < ttl * 0.9 and loop_time() - second < ttl * 0.9:
                break
        else:
            raise AssertionError(f"5 attempts each outran short_ttl_s={ttl}s; raise it")
        assert value == "2"
        await self.expire()
        assert await ly.store.increment(k, 1) == 1

    async def test_increment_without_ttl_keeps_an_existing_expiry(self, ly: Connection) -> None:
        k = key("counter")
        await ly.store.increment(k, 1, ttl=self.short_ttl_s)
        await ly.store.increment(k, 1)
        await self.expire()
        assert await ly.store.get(k) is None

    async def test_increment_of_a_non_integer_raises_and_changes_nothing(
        self, ly: Connection
    ) -> None:
        k = key("counter")
        for text in ["abc", "1.5", "", " 1x"]:
            await ly.store.set(k, text)
            before = await ly.store.get_versioned(k)
            with pytest.raises(SerializationError):
                await ly.store.increment(k, 1)
            assert await ly.store.get_versioned(k) == before

    async def test_increment_overflow_raises_and_changes_nothing(self, ly: Connection) -> None:
        k = key("counter")
        await ly.store.set(k, str(INT64_MAX - 1))
        assert await ly.store.increment(k, 1) == INT64_MAX
        with pytest.raises(SerializationError):
            await ly.store.increment(k, 1)
        assert await ly.store.get_versioned(k) == (str(INT64_MAX), 2)
        with pytest.raises(SerializationError):
            await ly.store.increment(k, 2**63)

    # -- compare_and_swap ------------------------------------------------------------------
    async def test_cas_on_the_current_version_writes(self, ly: Connection) -> None:
        k = key()
        await ly.store.set(k, "a")
        result = await ly.store.compare_and_swap(k, 1, "b")
        assert result == CasResult(ok=True, current_value="b", current_version=2)
        assert await ly.store.get_versioned(k) == ("b", 2)

    async def test_cas_conflict_returns_the_current_state(self, ly: Connection) -> None:
        k = key()
        await ly.store.set(k, "a")
        await ly.store.set(k, "b")
        result = await ly.store.compare_and_swap(k, 1, "c")
        assert result == CasResult(ok=False, current_value="b", current_version=2)
        assert await ly.store.get_versioned(k) == ("b", 2)

    async def test_cas_on_a_missing_key_creates_nothing(self, ly: Connection) -> None:
        k = key()
        for expected in [0, 1, 5]:
            result = await ly.store.compare_and_swap(k, expected, "x")
            assert result == CasResult(ok=False, current_value=None, current_version=0)
        assert await ly.store.get(k) is None

    async def test_cas_on_an_expired_key_does_not_resurrect_it(self, ly: Connection) -> None:
        k = key()
        await ly.store.set(k, "a", ttl=self.short_ttl_s)
        await self.expire()
        assert await ly.store.compare_and_swap(k, 1, "b") == CasResult(False, None, 0)
        assert await ly.store.compare_and_swap(k, 0, "b") == CasResult(False, None, 0)
        assert await ly.store.get(k) is None

    async def test_cas_sets_the_expiry_exactly_like_set(self, ly: Connection) -> None:
        k = key()
        await ly.store.set(k, "a", ttl=3600)
        assert (await ly.store.compare_and_swap(k, 1, "b", ttl=self.short_ttl_s)).ok
        await self.expire()
        assert await ly.store.get(k) is None
        await ly.store.set(k, "a", ttl=self.short_ttl_s)
        assert (await ly.store.compare_and_swap(k, 1, "b")).ok
        await self.expire()
        assert await ly.store.get_versioned(k) == ("b", 2)

    # -- isolation -------------------------------------------------------------------------
    async def test_stores_with_different_prefixes_never_meet(
        self, ly: Connection, open_store: object
    ) -> None:
        from lockyard.testing.fixtures import unique_prefix

        other = await open_store(unique_prefix())  # type: ignore[operator]
        k = key("dedup", "shared")
        await ly.store.set(k, "mine")
        await ly.store.index_timeout(k, 10)
        guard = await ly.locks.try_acquire("shared-lock", 5)
        assert guard is not None
        assert await other.store.get(k) is None
        assert await other.store.scan_keys("ns", "acme", "dedup") == []
        assert await other.store.scan_keys_by_kind("dedup") == []
        assert await other.store.get_expired_timeouts(100) == []
        assert await other.locks.try_acquire("shared-lock", 5) is not None
        assert await other.store.check_and_set(k, "theirs")
        assert await ly.store.get(k) == "mine"
        await other.store.purge()
        assert await ly.store.get(k) == "mine"
        await guard.release()
