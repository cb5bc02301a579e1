"""The library-wide input limits, at their edges, identical on every backend.

Each limit is enforced by the core before any round trip, so every backend (memory included)
accepts the largest allowed input and round-trips it exactly, and refuses the next one with the
same exception and the same message, which names the limit:

- keys: at most 1024 bytes of UTF-8 (``InvalidKeyError``); no NUL, no lone surrogate;
- values: at most 192 KiB of UTF-8 (``ValueError``); no NUL, no lone surrogate;
- lock names: at most 512 bytes of UTF-8 (``ValueError``); no NUL, no lone surrogate;
- TTLs: at most 100 years (36,500 days; ``ValueError``);
- time-index timestamps: within +/-(2**53 - 1) ms (``SerializationError``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from property_support import Pair

import lockyard
from lockyard.durations import MAX_TTL
from lockyard.keys import MAX_KEY_BYTES
from lockyard.locks import MAX_LOCK_NAME_LENGTH
from lockyard.store import MAX_INDEX_TIMESTAMP_MS, MAX_VALUE_BYTES

ANCHOR = "ns:t:k:"


def sized(total_bytes: int, unit: str, filler: str = "a") -> str:
    """A string of exactly ``total_bytes`` UTF-8 bytes: ``unit`` repeated, padded with ASCII."""
    width = len(unit.encode())
    return unit * (total_bytes // width) + filler * (total_bytes % width)


def key_of(total_bytes: int, unit: str) -> str:
    return ANCHOR + sized(total_bytes - len(ANCHOR), unit)


UNITS = ["a", "é", "€", "😀"]


@pytest.mark.parametrize("unit", UNITS)
def test_the_longest_key_round_trips_and_one_byte_more_is_refused(pair: Pair, unit: str) -> None:
    longest = key_of(MAX_KEY_BYTES, unit)
    assert len(longest.encode()) == MAX_KEY_BYTES

    async def write_and_read(ly: lockyard.Connection) -> Any:
        await ly.store.set(longest, "v")
        await ly.store.index_timeout(longest, 5)
        return (
            await ly.store.get_versioned(longest),
            await ly.store.scan_keys("ns", "t", "k", longest[len(ANCHOR) :]),
            await ly.store.get_expired_timeouts(5),
        )

    assert pair.compare(write_and_read) == (
        "ok",
        (("v", 1), [(longest, "v")], [longest]),
    )
    too_long = longest + "a"
    result = pair.compare(lambda ly: ly.store.set(too_long, "v"))
    assert result[:2] == ("rejected", "InvalidKeyError")
    assert f"the limit is {MAX_KEY_BYTES}" in result[2]


@pytest.mark.parametrize("unit", UNITS)
def test_the_largest_value_round_trips_and_one_byte_more_is_refused(pair: Pair, unit: str) -> None:
    largest = sized(MAX_VALUE_BYTES, unit)
    assert len(largest.encode()) == MAX_VALUE_BYTES
    key = key_of(MAX_KEY_BYTES, "a")  # the largest item: longest key, largest value

    async def write_and_read(ly: lockyard.Connection) -> Any:
        await ly.store.set(key, largest)
        await ly.store.set(key, largest[::-1], ttl=3600)  # an update replacing a largest value
        created = await ly.store.check_and_set("ns:t:k:big2", largest)
        swapped = await ly.store.compare_and_swap(key, 2, largest)
        return created, swapped.ok, await ly.store.get_versioned(key) == (largest, 3)

    assert pair.compare(write_and_read) == ("ok", (True, True, True))
    for write in (
        lambda ly: ly.store.set(key, largest + "a"),
        lambda ly: ly.store.check_and_set("ns:t:k:other", largest + "a"),
        lambda ly: ly.store.compare_and_swap(key, 3, largest + "a"),
    ):
        result = pair.compare(write)
        assert result[:2] == ("rejected", "ValueError")
        assert f"the limit is {MAX_VALUE_BYTES}" in result[2]


@pytest.mark.parametrize("unit", UNITS)
def test_the_longest_lock_name_works_and_one_byte_more_is_refused(pair: Pair, unit: str) -> None:
    longest = sized(MAX_LOCK_NAME_LENGTH, unit)

    async def cycle(ly: lockyard.Connection) -> Any:
        guard = await ly.locks.try_acquire(longest, 30)
        assert guard is not None
        names = {info.name for info in await ly.locks.list_held()}
        held = await guard.is_held()
        await guard.release()
        return longest in names, held

    assert pair.compare(cycle) == ("ok", (True, True))
    result = pair.compare(lambda ly: ly.locks.try_acquire(longest + "a", 30))
    assert result[:2] == ("rejected", "ValueError")
    assert f"the limit is {MAX_LOCK_NAME_LENGTH}" in result[2]


def test_the_longest_ttl_is_accepted_and_a_millisecond_more_is_refused(pair: Pair) -> None:
    async def longest(ly: lockyard.Connection) -> Any:
        await ly.store.set("ns:t:k:ttl", "v", ttl=MAX_TTL)
        await ly.store.increment("ns:t:k:n", 1, ttl=MAX_TTL)
        guard = await ly.locks.try_acquire("long-lease", MAX_TTL)
        assert guard is not None
        await guard.extend(MAX_TTL)
        await guard.release()
        return await ly.store.get("ns:t:k:ttl"), await ly.store.get("ns:t:k:n")

    assert pair.compare(longest) == ("ok", ("v", "1"))
    too_long = MAX_TTL + timedelta(milliseconds=1)
    for write in (
        lambda ly: ly.store.set("ns:t:k:ttl", "v", ttl=too_long),
        lambda ly: ly.store.check_and_set("ns:t:k:ttl2", "v", ttl=too_long.total_seconds()),
        lambda ly: ly.locks.try_acquire("long-lease", too_long),
    ):
        result = pair.compare(write)
        assert result[:2] == ("rejected", "ValueError")
        assert "at most 100 years" in result[2]


def test_index_timestamps_are_exact_to_2_53_and_refused_beyond(pair: Pair) -> None:
    edge = MAX_INDEX_TIMESTAMP_MS

    async def extremes(ly: lockyard.Connection) -> Any:
        await ly.store.index_timeout("ns:t:k:top", edge)
        await ly.store.index_timeout("ns:t:k:below", edge - 1)
        await ly.store.index_chain_ready("ns:t:k:bottom", -edge)
        return (
            await ly.store.get_expired_timeouts(edge - 1),
            await ly.store.get_expired_timeouts(edge),
            await ly.store.get_ready_chains(-edge - 1),
            await ly.store.get_ready_chains(-edge),
        )

    assert pair.compare(extremes) == (
        "ok",
        (
            ["ns:t:k:below"],
            ["ns:t:k:below", "ns:t:k:top"],
            [],
            ["ns:t:k:bottom"],
        ),
    )
    for write in (
        lambda ly: ly.store.index_timeout("ns:t:k:x", edge + 1),
        lambda ly: ly.store.index_chain_ready("ns:t:k:x", -edge - 1),
    ):
        assert pair.compare(write) == ("error", "SerializationError")


BAD_TEXT = {"NUL": "a\x00b", "lone surrogate": "a\ud800b"}


@pytest.mark.parametrize("what", list(BAD_TEXT))
def test_nul_and_lone_surrogates_are_refused_everywhere(pair: Pair, what: str) -> None:
    bad = BAD_TEXT[what]
    for operation in (
        lambda ly: ly.store.set(f"ns:t:k:{bad}", "v"),
        lambda ly: ly.store.get(f"ns:t:k:{bad}"),
        lambda ly: ly.store.set(f"ns:{bad}:k:id", "v"),
        lambda ly: ly.store.scan_keys("ns", "t", bad),
        lambda ly: ly.store.scan_keys("ns", "t", "k", prefix=bad),
        lambda ly: ly.store.scan_keys_by_kind(bad),
        lambda ly: ly.store.index_timeout(f"ns:t:k:{bad}", 1),
    ):
        assert pair.compare(operation)[:2] == ("rejected", "InvalidKeyError")
    for operation in (
        lambda ly: ly.store.set("ns:t:k:id", bad),
        lambda ly: ly.store.check_and_set("ns:t:k:id", bad),
        lambda ly: ly.store.compare_and_swap("ns:t:k:id", 1, bad),
        lambda ly: ly.locks.try_acquire(bad, 5),
    ):
        result = pair.compare(operation)
        assert result[:2] == ("rejected", "ValueError")
        assert ("NUL" if what == "NUL" else "surrogate") in result[2]
    # Nothing was written by any refused call.
    assert pair.compare(lambda ly: ly.store.scan_keys_by_kind("k")) == ("ok", [])


def test_a_scan_prefix_longer_than_any_key_finds_nothing(pair: Pair) -> None:
    longest = key_of(MAX_KEY_BYTES, "a")

    async def scans(ly: lockyard.Connection) -> Any:
        await ly.store.set(longest, "v")
        return (
            await ly.store.scan_keys("ns", "t", "k", longest[len(ANCHOR) :] + "a"),
            await ly.store.scan_keys_by_kind("k" * MAX_KEY_BYTES),
        )

    assert pair.compare(scans) == ("ok", ([], []))
