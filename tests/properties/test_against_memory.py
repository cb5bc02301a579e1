"""Random operation sequences give the same results on every backend as on the memory backend.

Hypothesis draws a small pool of keys (valid ones with ``:``, glob and SQL wildcards, ``{}|#``,
non-ASCII and near the length limit, and malformed ones), then a sequence of store, index and
lock operations on them with odd values (empty, NUL, lone surrogates, near and over the size
limit, integers) and TTLs (none, long, zero, negative, NaN, over the limit). Each operation runs
on the memory backend (the executable contract) and on the backend under test; the outcomes
must be equal: the same result, the same argument error with the same message, or the same
``StateError`` type. After the sequence, every kind's full scan and both indexes must match.

TTLs here never run out during a sequence (the shortest valid one is a minute), so timing
cannot make the two sides differ; ``test_short_ttls_expire_alike`` covers expiry.

Counter values are drawn as canonical decimal integers within signed 64 bits; the other
spellings of an integer (``" 7"``, ``"007"``, ``"+7"``, out-of-range numbers), which every
backend refuses alike, are covered case by case in ``test_counter_edges.py``.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from datetime import timedelta
from functools import partial
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from property_support import Outcome, Pair

import lockyard
from lockyard import KeyKind
from lockyard.durations import MAX_TTL
from lockyard.keys import MAX_KEY_BYTES
from lockyard.store import MAX_INDEX_TIMESTAMP_MS, MAX_VALUE_BYTES

SETTINGS = settings(
    deadline=None,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
#: Examples per backend: moto answers one request at a time, 10-20 times slower than the rest.
EXAMPLES = {"memory": 100, "redis": 100, "redis-sentinel": 100, "postgresql": 100, "dynamodb": 30}


def weighted(*choices: tuple[st.SearchStrategy[Any], int]) -> st.SearchStrategy[Any]:
    """One of the strategies, each drawn about ``weight`` times as often as a weight of 1."""
    return st.one_of(*[strategy for strategy, weight in choices for _ in range(weight)])


#: Characters that broke scans, layouts or escaping somewhere (or could).
ODD = [*":%_*?[]\\{}|#/ .-'\"\t\né€😀", "\x00", "\ud800"]
PLAIN = list("abcxyz019")

#: Characters a key segment may hold (everything but ":", NUL and lone surrogates).
SAFE = [c for c in ODD if c not in {":", "\x00", "\ud800"}]

segments = st.one_of(
    st.text(alphabet=st.sampled_from(PLAIN), min_size=1, max_size=3),
    st.text(alphabet=st.sampled_from(PLAIN + SAFE), min_size=1, max_size=4),
)
#: Any text: mostly malformed as a segment.
odd_segments = st.text(alphabet=st.sampled_from(PLAIN + ODD), min_size=0, max_size=4)
kinds = st.one_of(
    st.sampled_from(["counter", "lock", "state", "dedup", "k", "a}b", "{x", "p|q", "#", "%_"]),
    st.sampled_from([k.value for k in KeyKind]),
    segments,
)
ids = st.one_of(
    st.text(alphabet=st.sampled_from(PLAIN + SAFE + [":"]), min_size=1, max_size=6),
    # Around the 1024-byte key limit (the key is "n:t:k:" + id).
    st.builds(
        lambda unit, extra: unit * ((MAX_KEY_BYTES - 6) // len(unit.encode())) + "a" * extra,
        st.sampled_from(["a", "é", "😀"]),
        st.integers(-1, 3),
    ),
)


@st.composite
def keys(draw: st.DrawFn) -> str:
    """Mostly valid keys; one in five has an odd (usually malformed) part."""
    odd = draw(st.integers(0, 9))
    if odd == 0:
        return draw(st.text(alphabet=st.sampled_from(PLAIN + ODD), max_size=8))
    ns, tenant = draw(segments), draw(odd_segments if odd == 1 else segments)
    kind = draw(kinds)
    id_ = draw(odd_segments if odd == 2 else ids)
    if len(id_) > 100:
        ns, tenant, kind = "n", "t", "k"
    return f"{ns}:{tenant}:{kind}:{id_}"


def _big(unit: str, extra: int) -> str:
    return unit * (MAX_VALUE_BYTES // len(unit.encode())) + "a" * extra


values = weighted(
    (st.text(alphabet=st.sampled_from(PLAIN + ODD), max_size=12), 3),
    (st.integers(-(2**63), 2**63 - 1).map(str) | st.integers(-20, 20).map(str), 3),
    (st.sampled_from(["", "0", "-1", "x", "1.5", "0x10", "1e3", str(2**63 - 1)]), 1),
    (st.builds(_big, st.sampled_from(["a", "é", "😀"]), st.integers(-1, 1)), 1),
)
ttls = weighted(
    (st.none(), 5),
    (st.floats(60, 10**6) | st.just(timedelta(hours=1)) | st.just(MAX_TTL), 3),
    (
        st.sampled_from(
            [MAX_TTL + timedelta(milliseconds=1), 0, -1, -0.001, math.nan, math.inf, 10**10]
        ),
        1,
    ),
)
deltas = weighted(
    (st.integers(1, 5) | st.integers(-5, -1), 4),
    (st.sampled_from([2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**62]), 1),
)
timestamps = st.one_of(
    st.integers(-20, 20),
    st.sampled_from(
        [
            MAX_INDEX_TIMESTAMP_MS,
            -MAX_INDEX_TIMESTAMP_MS,
            MAX_INDEX_TIMESTAMP_MS + 1,
            2**63 - 1,
            2**63,
            10**12,
        ]
    ),
)
lock_names = st.one_of(
    st.sampled_from(["a", "b", "lock:x", "ns:t:lock:id", "%", "*"]),
    st.text(alphabet=st.sampled_from(PLAIN + ODD), max_size=5),
    st.builds(lambda unit, extra: unit * (512 // len(unit.encode())) + "a" * extra,
              st.sampled_from(["a", "é", "😀"]), st.integers(0, 1)),
)  # fmt: skip
lock_ttls = st.one_of(st.just(60), st.sampled_from([0, -1, math.nan, MAX_TTL * 2]))


#: Operations, repeated by weight: writes and reads of the pool's keys come up most.
OPERATIONS = [
    *["set"] * 4,
    *["increment"] * 3,
    *["get_versioned"] * 2,
    *["compare_and_swap"] * 2,
    "check_and_set",
    "get",
    "delete",
    "scan_keys",
    "scan_keys_by_kind",
    "index",
    "unindex",
    "due",
    "lock",
    "unlock",
]


class Sides:
    """What each side holds besides the store: lock guards, and the tokens they were given."""

    def __init__(self) -> None:
        self.guards: dict[str, dict[str, Any]] = {"model": {}, "real": {}}
        self.tokens: dict[str, defaultdict[str, list[int]]] = {
            "model": defaultdict(list),
            "real": defaultdict(list),
        }


def step(pair: Pair, sides: Sides, data: st.DataObject, pool: list[str]) -> Outcome:
    """Draw one operation, run it on both sides, and return the common outcome."""
    found = _step(pair, sides, data, pool)
    event(f"outcome: {found[0]} {found[1] if found[0] != 'ok' else ''}".strip())
    return found


def _step(pair: Pair, sides: Sides, data: st.DataObject, pool: list[str]) -> Outcome:
    op = data.draw(st.sampled_from(OPERATIONS), label="op")
    key = data.draw(st.sampled_from(pool), label="key")
    parts = key.split(":", 3)
    if op == "set":
        value, ttl = data.draw(values, label="value"), data.draw(ttls, label="ttl")
        return pair.compare(lambda ly: ly.store.set(key, value, ttl))
    if op == "check_and_set":
        value, ttl = data.draw(values, label="value"), data.draw(ttls, label="ttl")
        return pair.compare(lambda ly: ly.store.check_and_set(key, value, ttl))
    if op == "get":
        return pair.compare(lambda ly: ly.store.get(key))
    if op == "get_versioned":
        return pair.compare(lambda ly: ly.store.get_versioned(key))
    if op == "delete":
        return pair.compare(lambda ly: ly.store.delete(key))
    if op == "increment":
        delta, ttl = data.draw(deltas, label="delta"), data.draw(ttls, label="ttl")
        return pair.compare(lambda ly: ly.store.increment(key, delta, ttl))
    if op == "compare_and_swap":
        version = data.draw(st.integers(-1, 4), label="expected_version")
        value, ttl = data.draw(values, label="value"), data.draw(ttls, label="ttl")
        return pair.compare(lambda ly: ly.store.compare_and_swap(key, version, value, ttl))
    if op == "scan_keys":
        if len(parts) == 4 and data.draw(st.booleans(), label="scan a pool key"):
            ns, tenant, kind = parts[:3]
            prefix = parts[3][: data.draw(st.integers(0, 4), label="prefix length")] or None
        else:
            ns, tenant, kind = (data.draw(segments, label=s) for s in ("ns", "tenant", "kind"))
            prefix = data.draw(st.none() | st.text(st.sampled_from(PLAIN + ODD), max_size=3))
        return pair.compare(lambda ly: ly.store.scan_keys(ns, tenant, kind, prefix))
    if op == "scan_keys_by_kind":
        kind = parts[2] if len(parts) == 4 else data.draw(kinds, label="kind")
        return pair.compare(lambda ly: ly.store.scan_keys_by_kind(kind))
    which = data.draw(st.sampled_from(["timeout", "chain"]), label="index")
    if op == "index":
        at = data.draw(timestamps, label="at")
        if which == "timeout":
            return pair.compare(lambda ly: ly.store.index_timeout(key, at))
        return pair.compare(lambda ly: ly.store.index_chain_ready(key, at))
    if op == "unindex":
        if which == "timeout":
            return pair.compare(lambda ly: ly.store.remove_timeout_index(key))
        return pair.compare(lambda ly: ly.store.remove_chain_ready_index(key))
    if op == "due":
        now = data.draw(timestamps, label="now")
        if which == "timeout":
            return pair.compare(lambda ly: ly.store.get_expired_timeouts(now))
        return pair.compare(lambda ly: ly.store.get_ready_chains(now))
    name = data.draw(lock_names, label="lock name")
    if op == "lock":
        lease: Any = data.draw(lock_ttls, label="lock ttl")

        async def take(ly: lockyard.Connection) -> Any:
            guard = await ly.locks.try_acquire(name, lease)
            side = "model" if ly is pair.model else "real"
            if guard is not None:
                sides.guards[side][name] = guard
                sides.tokens[side][name].append(guard.fencing_token)
            return guard

        return pair.compare(take)

    async def release(ly: lockyard.Connection) -> Any:
        guard = sides.guards["model" if ly is pair.model else "real"].pop(name, None)
        if guard is None:
            return await ly.locks.break_lock(name)
        await guard.release()
        return "released"

    return pair.compare(release)


async def scan_kind(ly: lockyard.Connection, kind: str) -> list[tuple[str, str]]:
    return await ly.store.scan_keys_by_kind(kind)


def test_random_sequences_match_the_memory_backend(pair: Pair) -> None:
    @settings(SETTINGS, max_examples=EXAMPLES[pair.real.backend])
    @given(data=st.data())
    def sequences(data: st.DataObject) -> None:
        pair.reset()
        pool = data.draw(st.lists(keys(), min_size=1, max_size=3, unique=True), label="keys")
        sides = Sides()
        for _ in range(data.draw(st.integers(1, 25), label="steps")):
            step(pair, sides, data, pool)
        # The whole state, as each side sees it.
        kinds_used = {k.split(":", 3)[2] for k in pool if k.count(":") >= 3}
        for kind in kinds_used:
            pair.compare(partial(scan_kind, kind=kind))
        pair.compare(lambda ly: ly.store.get_expired_timeouts(2**62))
        pair.compare(lambda ly: ly.store.get_ready_chains(2**62))
        for side in ("model", "real"):
            for name, tokens in sides.tokens[side].items():
                assert tokens == sorted(set(tokens)), f"{side}: tokens of {name!r} must rise"

    sequences()


@settings(SETTINGS, max_examples=12)
@given(
    ttl_ms=st.integers(1, 40),
    value=st.text(alphabet=st.sampled_from([*PLAIN, "é", "%", ":"]), max_size=5),
)
def test_short_ttls_expire_alike(pair: Pair, ttl_ms: int, value: str) -> None:
    """A key written with a TTL of a few ms reads as missing once it has passed, everywhere."""
    pair.reset()
    key = "ns:t:state:short"
    pair.compare(lambda ly: ly.store.set(key, value, ttl=ttl_ms / 1000))
    pair.compare(lambda ly: ly.store.set("ns:t:counter:short", "5", ttl=ttl_ms / 1000))
    # Both writes were acknowledged by now, so both deadlines are at most ttl away.
    time.sleep(ttl_ms / 1000 + 0.02)
    assert pair.compare(lambda ly: ly.store.get(key)) == ("ok", None)
    assert pair.compare(lambda ly: ly.store.scan_keys_by_kind("state")) == ("ok", [])
    assert pair.compare(lambda ly: ly.store.compare_and_swap(key, 1, "x")) == (
        "ok",
        ("cas", False, None, 0),
    )
    assert pair.compare(lambda ly: ly.store.increment("ns:t:counter:short", 2)) == ("ok", 2)
    assert pair.compare(lambda ly: ly.store.check_and_set(key, "again")) == ("ok", True)
    assert pair.compare(lambda ly: ly.store.get_versioned(key)) == ("ok", ("again", 1))
