"""Random sequences of semaphore and read-write lock operations give the same results on every
backend as on the memory backend (the executable contract).

Hypothesis draws acquisitions (semaphores with a limit that now and then disagrees with the
name's first one, readers, writers), extensions, releases, breaks, is-held checks, listings and
at most one expiry (one sleep past the short TTL, for both sides) per sequence, and fenced
writes by any guard.
Each step runs on the memory backend and on the backend under test; the outcomes must be equal:
the same permit granted or refused with the same fencing token, the same error type, the same
listing. The stores are purged between examples, so fencing counters restart alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from property_support import Pair

import lockyard
from lockyard import StateError
from lockyard.rwlocks import ReadWriteGuard
from lockyard.semaphores import Permit

#: A TTL that outlives any sequence, and one that an "expire" step outlives.
LONG_TTL = 60
SHORT_TTL = 2.0
EXPIRY_WAIT = 2.3
EXAMPLES = {"memory": 60, "redis": 40, "postgresql": 30, "dynamodb": 12}

Step = Callable[[lockyard.Connection, list[Any]], Awaitable[Any]]


def normalised(result: object) -> object:
    if isinstance(result, Permit):
        return ("permit", result.fencing_token, result.limit)
    if isinstance(result, ReadWriteGuard):
        return ("rw", result.mode, result.fencing_token)
    if isinstance(result, list):
        return sorted(normalised(item) for item in result)  # type: ignore[type-var]
    return result


async def run_step(step: Step, side: lockyard.Connection, guards: list[Any]) -> tuple[Any, ...]:
    try:
        result = await step(side, guards)
    except StateError as exc:
        return ("error", type(exc).__name__)
    if isinstance(result, Permit | ReadWriteGuard):
        guards.append(result)
    return ("ok", normalised(result))


async def listing(ly: lockyard.Connection) -> list[tuple[str, int, int, int]]:
    found = [*await ly.semaphores.list_held(), *await ly.rwlocks.list_held()]
    return sorted((h.name, h.weight, h.limit, h.fencing_token) for h in found)


names = st.sampled_from(["a", "b"])
ttls = st.sampled_from([LONG_TTL, LONG_TTL, SHORT_TTL])


def draw_step(data: st.DataObject, guards: int, expired: bool) -> tuple[str, Step | None]:
    ops = ["semaphore"] * 4 + ["read"] * 2 + ["write"] * 2 + ["list", "fenced"]
    if guards:
        ops += ["extend", "release", "break", "held"] * 2
    if not expired:
        ops.append("expire")
    op = data.draw(st.sampled_from(ops), label="op")
    if op == "semaphore":
        name, ttl = data.draw(names, label="name"), data.draw(ttls, label="ttl")
        limit = data.draw(st.sampled_from([2, 2, 2, 3]), label="limit")
        return op, lambda ly, g: ly.semaphores.try_acquire(name, limit, ttl)
    if op in ("read", "write"):
        name, ttl = data.draw(names, label="name"), data.draw(ttls, label="ttl")
        if op == "read":
            return op, lambda ly, g: ly.rwlocks.try_acquire_read(name, ttl)
        return op, lambda ly, g: ly.rwlocks.try_acquire_write(name, ttl)
    if op == "list":
        return op, lambda ly, g: listing(ly)
    if op == "expire":
        return op, None  # a wait, not a step: both sides' leases age on the same clock
    if op == "fenced":
        index = data.draw(st.integers(0, max(guards - 1, 0)), label="guard")
        value = data.draw(st.sampled_from(["x", "y"]), label="value")

        async def fenced(ly: lockyard.Connection, g: list[Any]) -> Any:
            if not g:
                return await ly.store.get("ns:t:fenced:k")
            await ly.store.set("ns:t:fenced:k", value, fence=g[index])
            return await ly.store.get("ns:t:fenced:k")

        return op, fenced
    index = data.draw(st.integers(0, guards - 1), label="guard")
    if op == "extend":
        ttl = data.draw(ttls, label="ttl")
        return op, lambda ly, g: g[index].extend(ttl)
    if op == "release":
        return op, lambda ly, g: g[index].release()
    if op == "held":
        return op, lambda ly, g: g[index].is_held()

    async def breaks(ly: lockyard.Connection, g: list[Any]) -> bool:
        guard = g[index]
        name, owner = str(guard.name), str(guard.owner)
        if isinstance(guard, Permit):
            return await ly.semaphores.break_permit(name, owner)
        return await ly.rwlocks.break_holder(name, owner)

    return op, breaks


def test_permit_sequences_match_the_memory_backend(pair: Pair) -> None:
    backend = pair.real.backend

    @settings(
        max_examples=EXAMPLES.get(backend, 20),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(data=st.data())
    def sequence(data: st.DataObject) -> None:
        pair.reset()
        guards: dict[str, list[Any]] = {"model": [], "real": []}
        expired = False
        for _ in range(data.draw(st.integers(1, 14), label="steps")):
            op, step = draw_step(data, len(guards["model"]), expired)
            expired = expired or op == "expire"
            if step is None:  # one wait outlives the short leases taken so far on both sides
                pair.run(asyncio.sleep(EXPIRY_WAIT))
                continue
            model = pair.run(run_step(step, pair.model, guards["model"]))
            real = pair.run(run_step(step, pair.real, guards["real"]))
            assert real == model, (op, model, real)
        final = (pair.run(listing(pair.model)), pair.run(listing(pair.real)))
        assert final[0] == final[1]

    sequence()
