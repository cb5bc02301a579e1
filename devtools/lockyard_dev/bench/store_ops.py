"""The store-operation benchmarks: what each timed call does and the data it runs against.

Each ``StoreOp`` is one public ``StateStore`` method. ``prepare`` writes its data untimed;
``call`` is the timed operation, given the operation's index ``i`` and the calling task's number.
Every (pass, mode) gets its own tenant segment (``OpContext.tag``), so runs never see each
other's keys. Data sets are fixed and small, so the numbers are comparable across backends:

- reads and updates cycle over ``HOT_KEYS`` keys;
- ``check_and_set`` and ``index_timeout`` create a new entry per call;
- ``delete`` and ``remove_timeout_index`` remove entries prepared for them, one per call;
- ``compare_and_swap`` gives every task its own record and always passes the current version,
  so each call is a successful swap;
- warm-up calls use negative indexes, so they never consume an entry prepared for a timed call;
- scans return ``SCAN_MATCHES`` entries out of ``SCAN_MATCHES + SCAN_OTHERS`` of that kind and
  tenant neighbourhood; ``get_expired_timeouts`` returns ``SCAN_MATCHES`` due entries while the
  index also holds every far-future entry ``index_timeout`` added.

The chain-ready index is the same code path as the timeout index on every backend (a second
index name), so it is not measured separately.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from lockyard.store import StateStore

HOT_KEYS = 64
SCAN_MATCHES = 20
SCAN_OTHERS = 180
#: Entries ``index_timeout`` adds are due far in the future, so they never show up as expired.
FAR_FUTURE_MS = 10**15
DUE_AT_MS = 1_000
KEY_TTL_S = 600
SETUP_CONCURRENCY = 32
NAMESPACE = "bench"


@dataclass
class OpContext:
    """Per (pass, mode): the tenant tag, the op budget and the tasks that will call."""

    tag: str
    n: int
    tasks: int
    versions: dict[int, int] = field(default_factory=dict)

    def key(self, kind: str, i: int | str) -> str:
        return f"{NAMESPACE}:{self.tag}:{kind}:{i}"


Prepare = Callable[[StateStore, OpContext], Awaitable[None]]
Call = Callable[[StateStore, OpContext, int, int], Awaitable[object]]
Cleanup = Callable[[StateStore, OpContext], Awaitable[None]]


async def _nothing(store: StateStore, ctx: OpContext) -> None:
    return None


@dataclass(frozen=True, slots=True)
class StoreOp:
    name: str
    call: Call
    prepare: Prepare = _nothing
    cleanup: Cleanup = _nothing
    #: Each timed call uses up one prepared entry, so only as many are prepared as can be
    #: used within the time cap (see ``runner``): a slow backend is not filled for nothing.
    consumes: bool = False


async def _bulk(count: int, write: Callable[[int], Awaitable[object]]) -> None:
    """Run ``write(0..count-1)`` with bounded concurrency (untimed set-up)."""
    indexes = iter(range(count))

    async def worker() -> None:
        for i in indexes:
            await write(i)

    async with asyncio.TaskGroup() as group:
        for _ in range(min(SETUP_CONCURRENCY, count)):
            group.create_task(worker())


# -- data ------------------------------------------------------------------------------------
async def _prepare_hot(store: StateStore, ctx: OpContext) -> None:
    await _bulk(HOT_KEYS, lambda i: store.set(ctx.key("state", i), f"value-{i}", KEY_TTL_S))


async def _check_and_set(store: StateStore, ctx: OpContext, i: int, task: int) -> object:
    return await store.check_and_set(ctx.key("dedup", i), "seen", KEY_TTL_S)


async def _get(store: StateStore, ctx: OpContext, i: int, task: int) -> object:
    return await store.get(ctx.key("state", i % HOT_KEYS))


async def _get_versioned(store: StateStore, ctx: OpContext, i: int, task: int) -> object:
    return await store.get_versioned(ctx.key("state", i % HOT_KEYS))


async def _set(store: StateStore, ctx: OpContext, i: int, task: int) -> object:
    await store.set(ctx.key("record", i % HOT_KEYS), "x" * 32, KEY_TTL_S)
    return None


async def _prepare_delete(store: StateStore, ctx: OpContext) -> None:
    await _bulk(ctx.n, lambda i: store.set(ctx.key("doomed", i), "x", KEY_TTL_S))


async def _delete(store: StateStore, ctx: OpContext, i: int, task: int) -> object:
    return await store.delete(ctx.key("doomed", i))


async def _increment(store: StateStore, ctx: OpContext, i: int, task: int) -> object:
    return await store.increment(ctx.key("counter", i % HOT_KEYS), 1)


async def _prepare_cas(store: StateStore, ctx: OpContext) -> None:
    async def create(task: int) -> None:
        await store.set(ctx.key("versioned", task), "v0", KEY_TTL_S)
        ctx.versions[task] = 1

    await _bulk(ctx.tasks, create)


async def _compare_and_swap(store: StateStore, ctx: OpContext, i: int, task: int) -> object:
    result = await store.compare_and_swap(
        ctx.key("versioned", task), ctx.versions[task], f"v{i}", KEY_TTL_S
    )
    ctx.versions[task] = result.current_version
    return result


# -- scans -----------------------------------------------------------------------------------
def _scan_kind(ctx: OpContext) -> str:
    return f"scan{ctx.tag}"


async def _prepare_scans(store: StateStore, ctx: OpContext) -> None:
    kind = _scan_kind(ctx)

    async def write(i: int) -> None:
        if i < SCAN_MATCHES:
            # scan_keys matches these; scan_keys_by_kind matches them too (same kind).
            await store.set(f"{NAMESPACE}:{ctx.tag}:{kind}:item-{i}", "x" * 32, KEY_TTL_S)
        else:
            # Neighbours: same namespace and kind in other tenants, or other kinds in ours.
            other = f"{NAMESPACE}:{ctx.tag}n{i % 9}:other{ctx.tag}:item-{i}"
            await store.set(other, "x" * 32, KEY_TTL_S)

    await _bulk(SCAN_MATCHES + SCAN_OTHERS, write)


async def _scan_keys(store: StateStore, ctx: OpContext, i: int, task: int) -> object:
    return await store.scan_keys(NAMESPACE, ctx.tag, _scan_kind(ctx), "item-")


async def _scan_keys_by_kind(store: StateStore, ctx: OpContext, i: int, task: int) -> object:
    return await store.scan_keys_by_kind(_scan_kind(ctx))


# -- indexes ---------------------------------------------------------------------------------
async def _index_timeout(store: StateStore, ctx: OpContext, i: int, task: int) -> object:
    await store.index_timeout(ctx.key("event_timeout", i), FAR_FUTURE_MS + i)
    return None


async def _prepare_remove(store: StateStore, ctx: OpContext) -> None:
    await _bulk(ctx.n, lambda i: store.index_timeout(ctx.key("removable", i), FAR_FUTURE_MS + i))


async def _remove_timeout_index(store: StateStore, ctx: OpContext, i: int, task: int) -> object:
    await store.remove_timeout_index(ctx.key("removable", i))
    return None


async def _prepare_due(store: StateStore, ctx: OpContext) -> None:
    await _bulk(SCAN_MATCHES, lambda i: store.index_timeout(ctx.key("due", i), DUE_AT_MS - i))


async def _get_expired_timeouts(store: StateStore, ctx: OpContext, i: int, task: int) -> object:
    return await store.get_expired_timeouts(DUE_AT_MS)


async def _cleanup_due(store: StateStore, ctx: OpContext) -> None:
    # The index is shared by the whole store: later passes must find only their own due entries.
    await _bulk(SCAN_MATCHES, lambda i: store.remove_timeout_index(ctx.key("due", i)))


STORE_OPS: list[StoreOp] = [
    StoreOp("check_and_set", _check_and_set),
    StoreOp("get", _get, _prepare_hot),
    StoreOp("get_versioned", _get_versioned, _prepare_hot),
    StoreOp("set", _set),
    StoreOp("delete", _delete, _prepare_delete, consumes=True),
    StoreOp("increment", _increment),
    StoreOp("compare_and_swap", _compare_and_swap, _prepare_cas),
    StoreOp("scan_keys", _scan_keys, _prepare_scans),
    StoreOp("scan_keys_by_kind", _scan_keys_by_kind, _prepare_scans),
    StoreOp("index_timeout", _index_timeout),
    StoreOp("remove_timeout_index", _remove_timeout_index, _prepare_remove, consumes=True),
    StoreOp("get_expired_timeouts", _get_expired_timeouts, _prepare_due, _cleanup_due),
]

STORE_OP_NAMES = [op.name for op in STORE_OPS]
