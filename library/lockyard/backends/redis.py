"""The Redis backend: one server (``redis://``, ``rediss://``) or a master found through Sentinel.

Sentinel is only a different way to obtain the connection (redis-py's ``SentinelConnectionPool``);
the store, the locks and every script are the same. Backend names: ``redis`` and
``redis-sentinel``. Driver: ``redis.asyncio`` (hiredis parser when installed).

Data layout
-----------
Every key starts with ``lockyard:{P|`` (``P`` = the store's prefix, which cannot contain ``|``,
``{``, ``}`` or ``:``). The part in braces is the Redis Cluster hash tag: every key one operation
touches lives in one slot.

=====================================  =====================================================
``lockyard:{P|K}:d:<canonical key>``   one hash per logical key: ``v`` = value, ``n`` =
                                       version; the TTL is the key's own ``PEXPIREAT``
``lockyard:{P|K}:i``                   kind index: zset, score 0, members = canonical keys
``lockyard:{P|K}:x``                   kind expiry set: zset, score = deadline (ms, server
                                       clock), members = keys of kind ``K`` that have a TTL
``lockyard:{P|}:timeout``, ``:chain``  the two time indexes: zset, score = timestamp
``lockyard:{P|lock:<name>}:lease``     a lock's lease: string = owner token, ``PX`` = lease
``lockyard:{P|lock:<name>}:fence``     its fencing counter: hash ``e`` = epoch, ``c`` = count,
                                       ``q`` = last queue ticket
``lockyard:{P|lock:<name>}:queue``     its waiters in arrival order: zset, owner -> ticket
``lockyard:{P|lock:<name>}:waiters``   their waiter leases: hash, owner -> "<deadline (ms,
                                       server clock)> <client id>"; both queue keys expire
                                       with the last waiter lease
``lockyard:{P|}:sweep``                short lease so one client per prefix sweeps at a time
channel ``lockyard:{P|}:released``     pub/sub: ``<name>\n<next owner>``, published on
                                       release, break and when a waiter leaves a free lock,
                                       when the next owner waits in another client
=====================================  =====================================================

``K`` is the kind segment (kinds contain no ``:``, and the empty tag ``P|`` is never a kind, so
these forms never collide). The canonical key is stored verbatim, so scans return it exactly as
written. Counter values are the decimal string in ``v`` (``HINCRBY`` does exact int64
arithmetic); ``HINCRBY`` reads exactly the counter grammar every backend shares (the canonical
decimal of a signed 64-bit integer: ``"7"``, ``"-3"``; not ``"007"``, ``"+7"``, ``" 7"``,
``"-0"`` or ``str(2**63)``; see :meth:`lockyard.store.StateStore.increment`). The time
indexes store scores as doubles: timestamps are exact within +/-2**53 ms (285,000 years).

Cost per operation (N = entries in the index, M = entries returned)
--------------------------------------------------------------------
One round trip each: ``get`` = ``HGET``; ``get_versioned`` = ``HMGET`` (value and version of one
hash: atomic); ``check_and_set``, ``set``, ``delete``, ``increment``, ``compare_and_swap`` = one
``EVALSHA`` each, O(log N) for the index update; ``index_timeout``/``index_chain_ready`` =
``ZADD`` (replaces the score: re-indexing is atomic), ``remove_*`` = ``ZREM``, due reads =
``ZRANGEBYSCORE -inf now``: O(log N + M). Scans: one ``EVALSHA``, O(log N + M). ``NOSCRIPT``
(after a restart or failover) is answered by ``SCRIPT LOAD`` and one retry (as redis-py's
``Script``); the scripts are loaded when the backend opens.
Locks: ``try_acquire``, each attempt of ``acquire``, ``extend``, ``release``, ``break_lock`` and
leaving the queue = one ``EVALSHA``; ``is_held`` = ``GET``. With ``wait_replicas`` > 0 an
acquisition adds one ``WAIT``. ``list_held`` and ``purge`` are administration: ``SCAN MATCH``
over the store's escaped prefix (never ``KEYS``), many round trips, proportional to the whole
database.

Scan strategy and why
---------------------
Per-kind index zsets, maintained by the same script as every write, rather than ``SCAN``:
``SCAN`` walks the whole keyspace in many round trips and its glob needs escaping; the index
answers ``scan_keys(ns, tenant, kind, prefix)`` as one lexicographic range
``[ns:tenant:kind:prefix, ...\\xff)`` (literal by construction, O(log N + M)) and
``scan_keys_by_kind`` as the whole zset, in one script. The price is one ``ZADD`` when a key is
created and one ``ZREM`` when it is deleted, plus members left behind by keys Redis expired. Those
are removed (a) by the scan script itself, which drops members whose hash is gone, and (b) by a
background sweep: every ``SWEEP_INTERVAL_S`` one client per prefix (``SET NX PX`` on the sweep
key) finds the kind expiry sets with ``SCAN MATCH lockyard:{P|*}:x TYPE zset`` and removes, in
batches, members whose deadline (the score) has passed: O(log N + expired) per kind, plus one
``SCAN`` of the keyspace per interval. Redis reclaims the data itself natively.

Locks
-----
Acquisition is one script: ``SET lease owner NX PX ttl`` and, in the same script, the fencing
counter. If the lock is held, the script returns the holder's ``PTTL`` so a waiter never sleeps
past the lease. ``extend``/``release`` compare the owner token on the server.

Waiters are served first come, first served: a waiting attempt (``acquire`` with a timeout) takes
a free lock only if no live waiter is ahead of it in the lock's queue, and otherwise joins the
queue (or keeps its place) with a waiter lease of ``DistributedLock.waiter_lease_s`` (2 s),
renewed by each attempt, all in the same script. Expired entries are dropped when they reach the
head, so a crashed waiter holds a hand-off up for at most its waiter lease. ``try_acquire`` does
not queue: it takes a free lock whoever waits. Release and break ``PUBLISH`` the name and the
head waiter's owner token on the prefix's channel; each backend keeps ONE subscribed connection
and wakes only that owner's waiter (``asyncio.Event``) instead of all of them. Queue entries
carry the id of the client (``RedisLocks``) they wait in: when the head waits in the releasing
client, the script publishes nothing and the client wakes the waiter from the script's reply;
nothing is published either when nobody is queued (every waiting ``acquire`` is). The base
class's capped polling (which queued waiters need only to renew their entry) covers lost
messages.

Fencing token = ``epoch << 40 | counter``: the epoch is 0 on a single server, and on Sentinel
the ``config-epoch`` of the master the acquiring connection was opened to (Sentinel raises it on
every failover). A promoted replica that missed the last acquisitions therefore still hands out
tokens above every token of the old master, and its counter restarts at 1. A failover can lose
queue entries like any other write: their waiters re-join at their next attempt.

Guarantees: a single server holds locks while it keeps its data (a restart without persistence
forgets leases and fencing counters). Sentinel replication is asynchronous, and Sentinel
announces a failover (``+switch-master``) about a second after it promoted the replica; writes
the old master acknowledges in between are lost, leases included, so two holders can overlap.
The newer holder's fencing token is higher. ``wait_replicas`` makes an acquisition wait for
replicas (``WAIT``): with it no lease is lost, at the price of failed acquisitions
(``BackendError``) until the new master has a replica again.

Measured by ``tests/redis/test_sentinel_failover.py`` (forced ``SENTINEL FAILOVER``; one master,
one replica, three sentinels on loopback; a shared 2-core machine; two handles running store
operations and six lock contenders): both handles were on the new master 1.2-1.3 s after the
command, the moment Sentinel announced it; the longest gap between successful store operations
was 0.03-0.12 s; no store operation failed or took over 0.15 s. Default settings: 0-10 of ~700
lock holds overlapped, 1-3 releases found their lock lost, no fencing inversions, every token on
the new master carried epoch 1 and exceeded every earlier token; 15-22 % of the increments
acknowledged during the run (all those the old master took between promotion and announcement)
were missing on the new master. With ``wait_replicas=1``: no overlap and no lost lock;
acquisitions failed with ``BackendError`` until the old master had resynchronised as a replica
(up to 10.7 s after the command). ``min-replicas-to-write`` on the servers (with two or more
replicas) is the server-side way to make the old master refuse writes instead of losing them.

Failure behaviour
-----------------
Every call runs under the operation timeout (``OperationRunner``'s ``asyncio.timeout``); a
cancelled read closes its connection. Connects time out after the operation timeout too, but
sockets get no read timeout: with one, redis-py wraps every send in ``asyncio.wait_for``, which
costs a task per command and can swallow a cancellation on Python 3.11 (cpython gh-86296).
redis-py does not retry: a script whose reply was lost may have run, and re-sending it could
apply it twice; the caller sees ``BackendConnectionError`` and decides. A pooled connection the
server closed is replaced when it is checked out, so the first operation after a restart
succeeds; while the server is down, operations fail at once with ``BackendConnectionError``.
On Sentinel, ``READONLY`` from a demoted master closes that connection (redis-py) and becomes
``BackendConnectionError``; ``NOREPLICAS``/``MASTERDOWN``/``LOADING``/``TRYAGAIN`` too. A watcher
subscribed to ``+switch-master`` on one sentinel (the next one if it fails; it also re-asks every
``SENTINEL_REFRESH_S``) moves the pool and the release subscription to the new master as soon
as Sentinel announces it; a connection opened to the old master meanwhile is closed when it is
next checked out, and a late answer naming a master of an older epoch is ignored.

Pool: ``pool_size`` connections for commands (waiting for a free one is bounded by the
operation timeout) plus one for the release subscription and, on Sentinel, one to a sentinel.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast

from redis import exceptions as rx
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import (
    AbstractConnection,
    BlockingConnectionPool,
    ConnectionPool,
)
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import (
    MasterNotFoundError,
    Sentinel,
    SentinelConnectionPool,
)
from redis.backoff import NoBackoff

from lockyard.backends import redis_scripts as lua
from lockyard.backends.redis_packing import (
    PackedConnection,
    PackedSentinelConnection,
    PackedSSLConnection,
)
from lockyard.clock import SYSTEM_CLOCK, Clock
from lockyard.config import RedisConfig, RedisSentinelConfig
from lockyard.errors import (
    BackendConnectionError,
    BackendError,
    OperationTimeoutError,
    SerializationError,
    StateError,
)
from lockyard.guarantees import Guarantees
from lockyard.locks import (
    AcquireAttempt,
    DistributedLock,
    LockInfo,
    ReleaseWaiters,
    ReleaseWatch,
)
from lockyard.operations import OperationRunner
from lockyard.store import (
    COUNTER_RULE,
    CasResult,
    StateStore,
    checked_sum,
    parse_counter,
)

logger = logging.getLogger("lockyard.backends.redis")

KEY_ROOT = "lockyard"
#: Fencing token = epoch << FENCING_EPOCH_SHIFT | counter (counters stay below 2**40).
FENCING_EPOCH_SHIFT = 40
HEALTH_CHECK_INTERVAL_S = 30
SWEEP_INTERVAL_S = 60.0
SWEEP_BATCH = 500
SCAN_COUNT = 1000
PURGE_BATCH = 500
#: How often the Sentinel watcher re-asks for the master when no ``+switch-master`` arrives.
SENTINEL_REFRESH_S = 2.0
LISTEN_POLL_S = 1.0
RECONNECT_INITIAL_S = 0.05
RECONNECT_MAX_S = 1.0

REDIS_GUARANTEES = Guarantees(
    mutual_exclusion=(
        "while the Redis server keeps its data: a lease is one key set NX with a millisecond "
        "expiry, owner-checked by Lua scripts"
    ),
    failover_safety=(
        "one server, no failover; a restart without persistence forgets leases and fencing "
        "counters (use appendonly with appendfsync always to keep them)"
    ),
    fencing="per-name counter incremented in the acquiring script; never reused while the "
    "server keeps its data",
    ttl_precision="1 ms",
    clock="the Redis server's clock (PEXPIREAT from TIME, PX leases)",
    fifo_waiters=True,
)

SENTINEL_GUARANTEES = Guarantees(
    mutual_exclusion=(
        "while the master keeps its data; replication is asynchronous, so a lease acquired "
        "just before a failover can be missing on the new master and two holders can overlap"
    ),
    failover_safety=(
        "a failover can lose locks and writes the old master acknowledged before Sentinel "
        "announced the new one (asynchronous replication; wait_replicas keeps leases); "
        "clients move to the new master as soon as Sentinel announces it"
    ),
    fencing=(
        "token = Sentinel config-epoch << 40 | per-name counter: every acquisition on a newer "
        "master outranks every token of an older one, so the protected resource can reject "
        "the stale holder"
    ),
    ttl_precision="1 ms",
    clock="the master's clock (PEXPIREAT from TIME, PX leases)",
    fifo_waiters=True,
)


#: Error codes (the first word of a Redis error reply) that mean "not now", not "no".
UNAVAILABLE_CODES = frozenset({"NOREPLICAS", "MASTERDOWN", "LOADING", "TRYAGAIN"})


def _error_code(exc: rx.ResponseError) -> str:
    """The Redis error code: redis-py keeps it as the first word of codes it has no class for."""
    text = str(exc.args[0]) if exc.args else ""
    return text.split(" ", 1)[0]


# -- errors --------------------------------------------------------------------------------------
def translate(exc: BaseException) -> StateError | None:
    """Map a redis-py (or socket) exception onto the Lockyard tree, most specific first."""
    if isinstance(exc, TimeoutError):
        return None  # the built-in: the operation timeout fired; the runner reports it
    if isinstance(
        exc,
        rx.AuthenticationError
        | rx.AuthorizationError
        | rx.AuthenticationWrongNumberOfArgsError
        | rx.NoPermissionError,
    ):
        return BackendError(f"redis refused the credentials or the command: {exc}")
    if isinstance(exc, rx.ReadOnlyError):
        return BackendConnectionError(
            f"redis: the server is a read-only replica (a failover demoted it): {exc}"
        )
    if isinstance(exc, rx.TimeoutError):
        return OperationTimeoutError(f"redis: {exc}")
    if isinstance(exc, MasterNotFoundError):
        return BackendConnectionError(f"redis sentinel: no master available: {exc}")
    if isinstance(exc, rx.ConnectionError):
        return BackendConnectionError(f"redis: {exc}")
    if isinstance(exc, rx.ResponseError) and _error_code(exc) in UNAVAILABLE_CODES:
        return BackendConnectionError(f"redis: the server cannot serve writes now: {exc}")
    if isinstance(exc, rx.RedisError):
        return BackendError(f"redis: {exc}")
    if isinstance(exc, OSError):
        return BackendConnectionError(f"redis: {exc}")
    return None


# -- layout --------------------------------------------------------------------------------------
def glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis glob pattern (``SCAN MATCH``)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


class KeyLayout:
    """Where each logical object of one prefix lives (see the module docstring)."""

    __slots__ = (
        "_kinds",
        "chain_index",
        "expiry_pattern",
        "lease_pattern",
        "lock_prefix",
        "purge_pattern",
        "release_channel",
        "sweep_lease",
        "tag",
        "timeout_index",
    )

    def __init__(self, prefix: str) -> None:
        self.tag = f"{KEY_ROOT}:{{{prefix}|"
        self.timeout_index = f"{self.tag}}}:timeout"
        self.chain_index = f"{self.tag}}}:chain"
        self.release_channel = f"{self.tag}}}:released"
        self.sweep_lease = f"{self.tag}}}:sweep"
        self.lock_prefix = f"{self.tag}lock:"
        self.purge_pattern = glob_escape(self.tag) + "*"
        self.lease_pattern = glob_escape(self.lock_prefix) + "*}:lease"
        self.expiry_pattern = glob_escape(self.tag) + "*}:x"
        self._kinds: dict[str, tuple[str, str, str]] = {}

    def kind(self, kind: str) -> tuple[str, str, str]:
        """(data-key prefix, index, expiry set) of ``kind``."""
        keys = self._kinds.get(kind)
        if keys is None:
            base = f"{self.tag}{kind}}}"
            keys = (base + ":d:", base + ":i", base + ":x")
            if len(self._kinds) < 4096:
                self._kinds[kind] = keys
        return keys

    def data(self, key: str) -> str:
        return self.kind(key.split(":", 3)[2])[0] + key

    def for_key(self, key: str) -> tuple[str, str, str]:
        """(data hash, index, expiry set) of a canonical key."""
        prefix, index, expiries = self.kind(key.split(":", 3)[2])
        return prefix + key, index, expiries

    def time_index(self, index: str) -> str:
        return self.timeout_index if index == "timeout" else self.chain_index

    def lease(self, name: str) -> str:
        return f"{self.lock_prefix}{name}}}:lease"

    def fence(self, name: str) -> str:
        return f"{self.lock_prefix}{name}}}:fence"

    def lock_keys(self, name: str) -> tuple[str, str, str, str]:
        """(lease, fence, queue, waiter deadlines) of one lock: one hash slot."""
        base = f"{self.lock_prefix}{name}}}"
        return base + ":lease", base + ":fence", base + ":queue", base + ":waiters"

    def lock_name(self, lease_key: str) -> str:
        return lease_key[len(self.lock_prefix) : -len("}:lease")]

    def is_data_key(self, key: str) -> bool:
        rest = key[len(self.tag) :]
        if rest.startswith(("}:", "lock:")):
            return False
        _, _, tail = rest.partition(":")
        return tail.startswith("d:")


class LuaScript:
    """One script: ``EVALSHA``; on ``NOSCRIPT`` (a restarted or promoted server) ``SCRIPT LOAD``
    and one retry. redis-py's ``Script`` does the same; this one skips its per-call
    pipeline check and argument copies, which are measurable on the hot path."""

    __slots__ = ("_execute", "script", "sha")

    def __init__(self, client: Redis, script: str) -> None:
        self._execute: Callable[..., Awaitable[Any]] = client.execute_command
        self.script = script
        self.sha = hashlib.sha1(script.encode()).hexdigest()

    async def __call__(self, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        execute = self._execute
        try:
            return await execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except rx.NoScriptError:
            await execute("SCRIPT LOAD", self.script)
            return await execute("EVALSHA", self.sha, len(keys), *keys, *args)


class Scripts:
    """The Lua scripts of :mod:`lockyard.backends.redis_scripts`, ready to call."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        self.by_name: dict[str, LuaScript] = {
            name: LuaScript(client, text) for name, text in lua.SCRIPTS.items()
        }
        self.check_and_set = self.by_name["check_and_set"]
        self.set = self.by_name["set"]
        self.delete = self.by_name["delete"]
        self.increment = self.by_name["increment"]
        self.compare_and_swap = self.by_name["compare_and_swap"]
        self.scan = self.by_name["scan"]
        self.sweep = self.by_name["sweep"]
        self.acquire = self.by_name["acquire"]
        self.extend = self.by_name["extend"]
        self.release = self.by_name["release"]
        self.breaks = self.by_name["break"]
        self.leave_queue = self.by_name["leave_queue"]

    async def load(self) -> None:
        """Load every script in one pipelined round trip, so EVALSHA finds them."""
        async with self._client.pipeline(transaction=False) as pipe:
            for script in self.by_name.values():
                pipe.script_load(script.script)
            await pipe.execute()


def _ttl_arg(ttl_ms: int | None) -> int | str:
    return "" if ttl_ms is None else ttl_ms


# -- store ---------------------------------------------------------------------------------------
class RedisStateStore(StateStore):
    def __init__(
        self, runner: OperationRunner, client: Redis, layout: KeyLayout, scripts: Scripts
    ) -> None:
        super().__init__(runner)
        self._client = client
        self._layout = layout
        self._scripts = scripts

    async def _check_and_set(self, key: str, value: str, ttl_ms: int | None) -> bool:
        created = await self._scripts.check_and_set(
            self._layout.for_key(key), (key, value, _ttl_arg(ttl_ms))
        )
        return bool(created)

    async def _get(self, key: str) -> str | None:
        return cast("str | None", await self._client.hget(self._layout.data(key), "v"))

    async def _get_versioned(self, key: str) -> tuple[str, int] | None:
        reply = await self._client.hmget(self._layout.data(key), ("v", "n"))
        value, version = cast("list[str | None]", reply)
        return None if value is None or version is None else (value, int(version))

    async def _set(self, key: str, value: str, ttl_ms: int | None) -> None:
        await self._scripts.set(self._layout.for_key(key), (key, value, _ttl_arg(ttl_ms)))

    async def _delete(self, key: str) -> bool:
        return bool(await self._scripts.delete(self._layout.for_key(key), (key,)))

    async def _increment(self, key: str, delta: int, ttl_ms: int | None) -> int:
        result = await self._scripts.increment(
            self._layout.for_key(key), (key, delta, _ttl_arg(ttl_ms))
        )
        if isinstance(result, list):
            raise _increment_error(key, str(result[0]), delta)
        return int(result)

    async def _compare_and_swap(
        self, key: str, expected_version: int, new_value: str, ttl_ms: int | None
    ) -> CasResult:
        result = await self._scripts.compare_and_swap(
            self._layout.for_key(key), (key, expected_version, new_value, _ttl_arg(ttl_ms))
        )
        if not result:
            return CasResult(ok=False, current_value=None, current_version=0)
        if result[0] == 1:
            return CasResult(ok=True, current_value=new_value, current_version=int(result[1]))
        return CasResult(ok=False, current_value=result[1], current_version=int(result[2]))

    async def _scan_keys(self, key_prefix: str, kind: str) -> list[tuple[str, str]]:
        return await self._scan(kind, key_prefix)

    async def _scan_keys_by_kind(self, kind: str) -> list[tuple[str, str]]:
        return await self._scan(kind, "")

    async def _scan(self, kind: str, key_prefix: str) -> list[tuple[str, str]]:
        data_prefix, index, expiries = self._layout.kind(kind)
        flat = await self._scripts.scan((index, expiries), (data_prefix, key_prefix))
        return list(zip(flat[::2], flat[1::2], strict=True))

    async def _index_add(self, index: str, key: str, at_ms: int) -> None:
        await self._client.zadd(self._layout.time_index(index), {key: at_ms})

    async def _index_remove(self, index: str, key: str) -> None:
        await self._client.zrem(self._layout.time_index(index), key)

    async def _index_due(self, index: str, now_ms: int) -> list[str]:
        due = await self._client.zrangebyscore(self._layout.time_index(index), "-inf", now_ms)
        return cast("list[str]", due)

    async def _purge(self) -> int:
        removed = 0
        data: list[str] = []
        other: list[str] = []
        async for key in self._client.scan_iter(match=self._layout.purge_pattern, count=SCAN_COUNT):
            (data if self._layout.is_data_key(key) else other).append(key)
            if len(data) + len(other) >= PURGE_BATCH:
                removed += await self._unlink(data, other)
                data, other = [], []
        return removed + await self._unlink(data, other)

    async def _unlink(self, data: list[str], other: list[str]) -> int:
        if not data and not other:
            return 0
        async with self._client.pipeline(transaction=False) as pipe:
            if data:
                pipe.unlink(*data)
            if other:
                pipe.unlink(*other)
            results = await pipe.execute()
        return int(results[0]) if data else 0

    async def sweep(self, *, timeout: float) -> int:
        """Drop index members of expired keys, for every kind; returns how many it examined.

        Each round trip runs under ``timeout``; the background task calls this (and the tests
        call it directly).
        """
        examined = 0
        cursor = 0
        while True:
            async with asyncio.timeout(timeout):
                cursor, keys = await self._client.scan(
                    cursor, match=self._layout.expiry_pattern, count=SCAN_COUNT, _type="zset"
                )
            for expiry_key in cast("list[str]", keys):
                base = expiry_key[: -len(":x")]
                while True:
                    async with asyncio.timeout(timeout):
                        count = int(
                            await self._scripts.sweep(
                                (base + ":i", expiry_key), (base + ":d:", SWEEP_BATCH)
                            )
                        )
                    examined += count
                    if count < SWEEP_BATCH:
                        break
            if cursor == 0:
                return examined


def _increment_error(key: str, current: str, delta: int) -> SerializationError:
    """Why ``HINCRBY`` refused: the value is not a counter, or the sum leaves int64.

    ``HINCRBY`` reads exactly the grammar of :func:`lockyard.store.parse_counter`, so one of the
    two checks raises; the last line only answers a Redis that read integers differently.
    """
    try:
        checked_sum(parse_counter(current, key), delta, key)
    except SerializationError as exc:
        return exc
    return SerializationError(
        f"increment on {key!r} by {delta}: Redis refused the current value {current[:40]!r}: "
        f"{COUNTER_RULE}"
    )


# -- release signals -----------------------------------------------------------------------------
class _EventWatch:
    __slots__ = ("_event", "_signals")

    def __init__(self, event: asyncio.Event, signals: ReleaseSignals) -> None:
        self._event = event
        self._signals = signals

    @property
    def live(self) -> bool:
        return self._signals.subscribed

    async def wait(self, timeout: float) -> None:
        event = self._event
        if not event.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await event.wait()
        event.clear()


def _raise_if_cancelled() -> None:
    """Re-raise a cancellation a library call swallowed (asyncio.wait_for on Python 3.11)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for it, cancelling again if a cancellation got lost."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.5)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


async def _close_pubsub(pubsub: PubSub) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await pubsub.aclose()  # type: ignore[no-untyped-call]


class ReleaseSignals:
    """One SUBSCRIBE per backend on the prefix's release channel, fanned out to waiters.

    Subscribed lazily by the first waiter, which waits for the subscription to be confirmed
    before its first attempt (so no release between attempt and wait is missed). If the
    connection drops, every waiter is woken (it re-attempts) and the listener re-subscribes
    with backoff; meanwhile waiters fall back to the base class's capped polling.
    """

    def __init__(self, client: Redis, channel: str, timeout: float) -> None:
        self._client = client
        self._channel = channel
        self._timeout = timeout
        self._waiters = ReleaseWaiters()
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def subscribed(self) -> bool:
        return self._ready.is_set()

    async def ensure(self) -> None:
        """Subscribe if nobody has; never raises (polling covers a missing subscription)."""
        if self._ready.is_set():
            return
        async with self._lock:
            if self._ready.is_set():
                return
            if self._task is not None and not self._task.done():
                return  # re-subscribing in the background; don't hold this waiter up
            try:
                pubsub = await self._subscribe()
            except (rx.RedisError, OSError, TimeoutError) as exc:
                logger.debug("redis: release signals unavailable, waiters poll: %r", exc)
                return
            self._ready.set()
            self._task = asyncio.create_task(
                self._listen(pubsub), name="lockyard-redis-release-signals"
            )

    def watch(self, name: str, owner: str | None = None) -> asyncio.Event:
        return self._waiters.watch(name, owner)

    def unwatch(self, name: str, event: asyncio.Event) -> None:
        self._waiters.unwatch(name, event)

    def wake(self, name: str, owner: str) -> None:
        """Wake ``owner``'s waiter now if it waits in this process (its message follows)."""
        self._waiters.wake(name, owner)

    def _wake_all(self) -> None:
        self._waiters.wake_all()

    async def _subscribe(self) -> PubSub:
        pubsub = self._client.pubsub()
        try:
            async with asyncio.timeout(self._timeout):
                await pubsub.subscribe(self._channel)
                while True:
                    message = await pubsub.get_message(timeout=self._timeout)
                    if message is not None and message["type"] == "subscribe":
                        return pubsub
        except BaseException:
            await _close_pubsub(pubsub)
            raise

    async def _listen(self, pubsub: PubSub | None) -> None:
        backoff = RECONNECT_INITIAL_S
        try:
            while True:
                try:
                    if pubsub is None:
                        pubsub = await self._subscribe()
                        self._ready.set()
                        self._wake_all()  # messages may have been lost while away
                        backoff = RECONNECT_INITIAL_S
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=LISTEN_POLL_S
                    )
                    _raise_if_cancelled()
                    if message is not None and message["type"] == "message":
                        self._waiters.wake_signal(message["data"])
                except (rx.RedisError, OSError, TimeoutError) as exc:
                    logger.debug("redis: release subscription lost, re-subscribing: %r", exc)
                    self._ready.clear()
                    self._wake_all()
                    if pubsub is not None:
                        await _close_pubsub(pubsub)
                        pubsub = None
                    _raise_if_cancelled()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, RECONNECT_MAX_S)
        finally:
            self._ready.clear()
            if pubsub is not None:
                await _close_pubsub(pubsub)

    async def restart(self) -> None:
        """Re-subscribe now (the master moved); waiters re-attempt meanwhile."""
        await self.stop()
        self._wake_all()
        self._task = asyncio.create_task(self._listen(None), name="lockyard-redis-release-signals")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await _stop_task(task)
        self._ready.clear()


# -- locks ---------------------------------------------------------------------------------------
class RedisLocks(DistributedLock):
    def __init__(
        self,
        runner: OperationRunner,
        client: Redis,
        layout: KeyLayout,
        scripts: Scripts,
        signals: ReleaseSignals,
        *,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(runner, clock)
        self._client = client
        self._layout = layout
        self._scripts = scripts
        self._signals = signals
        self._wait_replicas = wait_replicas
        self._wait_timeout_ms = wait_timeout_ms
        #: Tags this client's queue entries: a release whose next owner waits here wakes it
        #: directly instead of publishing to ourselves.
        self._client_id = secrets.token_hex(8)

    async def _try_acquire(
        self, name: str, owner: str, ttl_ms: int, wait_ms: int | None = None
    ) -> AcquireAttempt:
        pool = self._client.connection_pool
        # The acquisition runs on a connection we hold, because the fencing epoch belongs to
        # the server that connection was opened to (and WAIT counts that connection's writes).
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            epoch = getattr(connection, "fencing_epoch", 0)
            script = self._scripts.acquire
            waiter_lease = "" if wait_ms is None else wait_ms
            keys = self._layout.lock_keys(name)
            args = (*keys, owner, ttl_ms, epoch, waiter_lease, self._client_id)
            try:
                result = await _command(connection, "EVALSHA", script.sha, 4, *args)
            except rx.NoScriptError:
                await _command(connection, "SCRIPT", "LOAD", script.script)
                result = await _command(connection, "EVALSHA", script.sha, 4, *args)
            if not isinstance(result, list):
                retry_after = max(int(result), 0)
                return AcquireAttempt(None, retry_after, queued=wait_ms is not None)
            token = int(result[0]) << FENCING_EPOCH_SHIFT | int(result[1])
            if self._wait_replicas:
                await self._confirm_replicas(connection, name, owner)
            return AcquireAttempt(token)
        finally:
            await pool.release(connection)

    async def _confirm_replicas(
        self, connection: AbstractConnection, name: str, owner: str
    ) -> None:
        acked = int(await _command(connection, "WAIT", self._wait_replicas, self._wait_timeout_ms))
        if acked >= self._wait_replicas:
            return
        release = self._scripts.release
        lease, _, queue, waiters = self._layout.lock_keys(name)
        channel = self._layout.release_channel
        args = (lease, queue, waiters, owner, channel, name, self._client_id)
        await _command(connection, "EVALSHA", release.sha, 3, *args)
        raise BackendError(
            f"lock {name!r}: only {acked} of {self._wait_replicas} replicas confirmed the "
            f"acquisition within {self._wait_timeout_ms} ms; it was released again"
        )

    async def _extend(self, name: str, owner: str, ttl_ms: int) -> bool:
        return bool(await self._scripts.extend((self._layout.lease(name),), (owner, ttl_ms)))

    def _queue_keys(self, name: str) -> tuple[str, str, str]:
        lease, _, queue, waiters = self._layout.lock_keys(name)
        return lease, queue, waiters

    def _handed_over(self, name: str, result: Any) -> bool:
        """Parse a release/break reply; wake the next owner here if it waits in this process."""
        if not isinstance(result, list):
            return False
        if result[1]:
            self._signals.wake(name, result[1])
        return True

    async def _release(self, name: str, owner: str) -> bool:
        args = (owner, self._layout.release_channel, name, self._client_id)
        result = await self._scripts.release(self._queue_keys(name), args)
        return self._handed_over(name, result)

    async def _is_held(self, name: str, owner: str) -> bool:
        return bool(await self._client.get(self._layout.lease(name)) == owner)

    async def _break(self, name: str) -> bool:
        args = (self._layout.release_channel, name, self._client_id)
        result = await self._scripts.breaks(self._queue_keys(name), args)
        return self._handed_over(name, result)

    async def _leave_queue(self, name: str, owner: str) -> None:
        args = (owner, self._layout.release_channel, name, self._client_id)
        head = await self._scripts.leave_queue(self._queue_keys(name), args)
        if head:
            self._signals.wake(name, head)

    async def _list_held(self) -> list[LockInfo]:
        layout = self._layout
        held: list[LockInfo] = []
        batch: list[str] = []
        async for lease in self._client.scan_iter(
            match=layout.lease_pattern, count=SCAN_COUNT, _type="string"
        ):
            batch.append(lease)
            if len(batch) >= PURGE_BATCH:
                held += await self._lock_infos(batch)
                batch = []
        return held + await self._lock_infos(batch)

    async def _lock_infos(self, leases: Sequence[str]) -> list[LockInfo]:
        if not leases:
            return []
        layout = self._layout
        async with self._client.pipeline(transaction=False) as pipe:
            for lease in leases:
                name = layout.lock_name(lease)
                pipe.eval(lua.LOCK_INFO, 2, lease, layout.fence(name))
            results = await pipe.execute()
        infos = []
        for lease, info in zip(leases, results, strict=True):
            if info:
                owner, remaining, epoch, counter = info
                token = int(epoch) << FENCING_EPOCH_SHIFT | int(counter)
                infos.append(LockInfo(layout.lock_name(lease), owner, token, int(remaining)))
        return infos

    @contextlib.asynccontextmanager
    async def watch_releases(
        self, name: str, owner: str | None = None
    ) -> AsyncIterator[ReleaseWatch]:
        signals = self._signals
        await signals.ensure()
        event = signals.watch(name, owner)
        try:
            yield _EventWatch(event, signals)
        finally:
            signals.unwatch(name, event)


async def _command(connection: AbstractConnection, *args: Any) -> Any:
    """One command on a connection we hold (redis-py closes it on any read error)."""
    await connection.send_command(*args)
    return await connection.read_response()


# -- Sentinel ------------------------------------------------------------------------------------
class EpochSentinel(Sentinel):
    """redis-py's Sentinel client that also remembers each master's ``config-epoch``."""

    def __init__(self, sentinels: Sequence[tuple[str, int]], **kwargs: Any) -> None:
        super().__init__(sentinels, **kwargs)  # type: ignore[no-untyped-call]
        self.epochs: dict[tuple[str, int], int] = {}

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        """As redis-py's, recording the epoch that came with the address (one reply)."""
        errors = []
        for position, sentinel in enumerate(self.sentinels):
            try:
                masters = await sentinel.sentinel_masters()
            except (rx.ConnectionError, rx.TimeoutError) as exc:
                errors.append(f"{sentinel} - {exc!r}")
                continue
            state = cast("dict[str, dict[str, Any]]", masters).get(service_name)
            if state and self.check_master_state(state, service_name):
                self.sentinels[0], self.sentinels[position] = sentinel, self.sentinels[0]
                address = (str(state["ip"]), int(state["port"]))
                self.epochs[address] = int(state.get("config-epoch", 0))
                return address
        detail = f" : {', '.join(errors)}" if errors else ""
        raise MasterNotFoundError(f"No master found for {service_name!r}{detail}")


class _SentinelConnection(PackedSentinelConnection):
    """A master connection that knows the Sentinel epoch of the server it was opened to."""

    fencing_epoch = 0

    async def _connect_retry(self) -> None:
        if self._reader:
            return
        pool = self.connection_pool
        address = await pool.get_master_address()
        self.fencing_epoch = pool.sentinel_manager.epochs.get(tuple(address), 0)
        await self.connect_to(address)  # type: ignore[no-untyped-call]


class _SentinelSSLConnection(_SentinelConnection, PackedSSLConnection):
    pass


class _LeanCheckout(BlockingConnectionPool):
    """A blocking pool whose uncontended checkout skips redis-py's bookkeeping.

    redis-py 8 records connection metrics and dispatches a "connection released" event on
    every checkout and return, through an ``asyncio.Condition`` and a lock; on the hot path
    that costs about as much as the rest of a ``GET``. When a connection is free, no task is
    waiting and redis-py's observability is off, this pool hands it out directly, still
    checking it (``ensure_connection``: reconnects a connection the server closed). Otherwise,
    and for every waiter, the stock path runs, so waiters are served in order. The released
    event only matters for streaming credential providers, which Lockyard does not use.
    """

    _waiting = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lean = not _observability_enabled()

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        available = self._available_connections
        if available and self._lean and not self._waiting and not self._in_maintenance:
            connection: AbstractConnection = available.pop()
            self._in_use_connections.add(connection)
            try:
                await self.ensure_connection(connection)
            except BaseException:
                await self.release(connection)
                raise
            return connection
        self._waiting += 1
        try:
            return await super().get_connection()  # type: ignore[no-untyped-call,no-any-return]
        finally:
            self._waiting -= 1

    async def release(self, connection: AbstractConnection) -> None:
        if not self._lean or self._waiting or self._in_maintenance:
            await super().release(connection)
            return
        self._in_use_connections.remove(connection)
        if connection.should_reconnect():  # type: ignore[no-untyped-call]
            await connection.disconnect()
        self._available_connections.append(connection)


def _observability_enabled() -> bool:
    try:
        from redis.observability.providers import get_observability_instance
    except ImportError:  # an older redis-py: nothing to keep in step with
        return False
    return bool(get_observability_instance().is_enabled())


class _SentinelPool(SentinelConnectionPool, _LeanCheckout):
    """Sentinel's master discovery with a pool that waits for a free connection.

    Two races of a failover are closed here: a discovery answered before the switch (or by a
    lagging sentinel) never moves the pool back to a master of an older epoch, and a
    connection that was opened to the old master while the pool moved is closed when it is
    checked out, so no command reaches a replaced master after the pool has moved.
    """

    async def get_master_address(self) -> tuple[str, int]:
        manager = self.sentinel_manager
        address: tuple[str, int] = await manager.discover_master(self.service_name)
        current = self.master_address
        if current is None or address == current:
            self.master_address = address
            return address
        if manager.epochs.get(address, 0) < manager.epochs.get(current, 0):
            return cast("tuple[str, int]", current)  # a stale answer: keep the newer master
        self.master_address = address
        await self.disconnect(inuse_connections=False)
        return address

    async def ensure_connection(self, connection: AbstractConnection) -> None:
        await super().ensure_connection(connection)
        master = self.master_address
        if master is not None and (connection.host, getattr(connection, "port", None)) != master:
            await connection.disconnect()
            await super().ensure_connection(connection)


class SentinelWatch:
    """Moves the pools to a new master as soon as Sentinel announces it.

    Subscribes to ``+switch-master`` on one sentinel at a time (the next one if it fails) and
    re-asks for the master every ``SENTINEL_REFRESH_S`` in case a message was missed.
    """

    def __init__(
        self,
        sentinel: EpochSentinel,
        master: str,
        pools: Sequence[SentinelConnectionPool],
        on_switch: Callable[[], Awaitable[None]],
        timeout: float,
    ) -> None:
        self._sentinel = sentinel
        self._master = master
        self._pools = pools
        self._on_switch = on_switch
        self._timeout = timeout
        self._current: tuple[str, int] | None = None
        self.switches = 0

    @property
    def master(self) -> tuple[str, int] | None:
        """The master the pools use, as this watch last saw it."""
        return self._current

    async def follow(self) -> None:
        """Ask Sentinel for the master; if it moved, move the pools."""
        async with asyncio.timeout(self._timeout):
            address = await self._sentinel.discover_master(self._master)
        if self._current is None:
            self._current = address
            return
        if address == self._current:
            return
        logger.info(
            "redis sentinel: master %s moved %s -> %s", self._master, self._current, address
        )
        for pool in self._pools:
            # Idle connections to the old master close now; busy ones when they come back.
            await pool.get_master_address()  # type: ignore[no-untyped-call]
            await pool.disconnect(inuse_connections=False)
            await pool.update_active_connections_for_reconnect()  # type: ignore[no-untyped-call]
        self._current = address
        self.switches += 1
        await self._on_switch()

    async def run(self) -> None:
        position = 0
        backoff = RECONNECT_INITIAL_S
        while True:
            sentinels = self._sentinel.sentinels
            pubsub = sentinels[position % len(sentinels)].pubsub()
            try:
                async with asyncio.timeout(self._timeout):
                    await pubsub.subscribe("+switch-master")
                _raise_if_cancelled()
                backoff = RECONNECT_INITIAL_S
                await self._follow_quietly()
                last = time.monotonic()
                while True:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=LISTEN_POLL_S
                    )
                    _raise_if_cancelled()
                    if (
                        message is not None and self._about_our_master(message)
                    ) or time.monotonic() - last >= SENTINEL_REFRESH_S:
                        await self._follow_quietly()
                        last = time.monotonic()
            except (rx.RedisError, OSError, TimeoutError) as exc:
                logger.debug("redis sentinel: watch on one sentinel failed: %r", exc)
                _raise_if_cancelled()
                position += 1
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RECONNECT_MAX_S)
            finally:
                await _close_pubsub(pubsub)

    def _about_our_master(self, message: dict[str, Any]) -> bool:
        """``+switch-master <name> <old ip> <old port> <new ip> <new port>`` for our master?"""
        data = message["data"]
        text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
        return message["type"] == "message" and text.split(" ", 1)[0] == self._master

    async def _follow_quietly(self) -> None:
        try:
            await self.follow()
        except (rx.RedisError, OSError, TimeoutError) as exc:
            logger.debug("redis sentinel: no master right now: %r", exc)
        _raise_if_cancelled()


# -- backend -------------------------------------------------------------------------------------
class RedisBackend:
    """One store and one lock manager over a connection pool, plus background tasks."""

    #: Seconds between background sweeps of expired index members (class attribute so tests
    #: and benchmarks can change it before connecting).
    sweep_interval_s: float = SWEEP_INTERVAL_S

    def __init__(
        self,
        name: str,
        config: RedisConfig | RedisSentinelConfig,
        client: Redis,
        signal_client: Redis,
        sentinel: EpochSentinel | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.name = name
        self.guarantees = SENTINEL_GUARANTEES if sentinel is not None else REDIS_GUARANTEES
        self.config = config
        self.client = client
        self._signal_client = signal_client
        self._sentinel = sentinel
        self._master = config.master if isinstance(config, RedisSentinelConfig) else ""
        self._timeout = config.operation_timeout
        self._run = OperationRunner(name, config.operation_timeout, translate)
        self.layout = KeyLayout(config.prefix)
        self.scripts = Scripts(client)
        self.signals = ReleaseSignals(signal_client, self.layout.release_channel, self._timeout)
        self.store = RedisStateStore(self._run, client, self.layout, self.scripts)
        self.locks = RedisLocks(
            self._run,
            client,
            self.layout,
            self.scripts,
            self.signals,
            wait_replicas=config.wait_replicas,
            wait_timeout_ms=max(1, int(config.operation_timeout * 500)),
            clock=clock,
        )
        self.sentinel_watch: SentinelWatch | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Check the server answers (and the credentials work), load the scripts, start tasks."""
        await self._run("connect", self.scripts.load())
        if self._sentinel is not None:
            pools = [
                cast(SentinelConnectionPool, self.client.connection_pool),
                cast(SentinelConnectionPool, self._signal_client.connection_pool),
            ]
            watch = SentinelWatch(
                self._sentinel, self._master, pools, self.signals.restart, self._timeout
            )
            with contextlib.suppress(rx.RedisError, OSError, TimeoutError):
                await watch.follow()
            self.sentinel_watch = watch
            self._tasks.append(
                asyncio.create_task(watch.run(), name="lockyard-redis-sentinel-watch")
            )
        self._tasks.append(asyncio.create_task(self._sweep_forever(), name="lockyard-redis-sweep"))

    async def sweep(self, *, force: bool = True) -> int:
        """One sweep of expired index members; unless ``force``, only if no other client of
        this prefix swept within the interval. Returns how many members it examined."""
        if not force:
            interval_ms = max(1, int(self.sweep_interval_s * 1000))
            async with asyncio.timeout(self._timeout):
                won = await self.client.set(
                    self.layout.sweep_lease, secrets.token_hex(8), nx=True, px=interval_ms
                )
            if not won:
                return 0
        return await self.store.sweep(timeout=self._timeout)

    async def _sweep_forever(self) -> None:
        while True:
            interval = self.sweep_interval_s
            # Spread the clients of one prefix over the interval.
            await asyncio.sleep(interval * (0.5 + secrets.randbelow(1000) / 1000))
            try:
                await self.sweep(force=False)
            except (rx.RedisError, OSError, TimeoutError) as exc:
                logger.debug("redis: background sweep failed, will retry: %r", exc)
            _raise_if_cancelled()

    async def ping(self) -> float:
        started = time.perf_counter()
        await self._run("ping", self.client.ping())
        return time.perf_counter() - started

    async def server_version(self) -> str:
        info = await self._run("server_version", self.client.info("server"))
        return f"Redis {info.get('redis_version', 'unknown')}"

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            await _stop_task(task)
        await self.signals.stop()
        await self.client.aclose()
        await self._signal_client.aclose()
        if self._sentinel is not None:
            await self._sentinel.aclose()


# -- opening -------------------------------------------------------------------------------------
def _connection_kwargs(config: RedisConfig | RedisSentinelConfig) -> dict[str, Any]:
    timeout = config.operation_timeout
    kwargs: dict[str, Any] = {
        "db": config.db,
        "username": config.username,
        "password": None if config.password is None else config.password.get_secret_value(),
        # No socket read/write timeout: the operation timeout (asyncio.timeout in the runner)
        # bounds every call, and a closed read disconnects the connection. With a socket
        # timeout redis-py wraps every send in asyncio.wait_for, which costs a task per command
        # and, on Python 3.11, can swallow a cancellation (cpython gh-86296).
        "socket_timeout": None,
        "socket_connect_timeout": timeout,
        "socket_keepalive": True,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        # No retries: a script whose reply was lost may have run; re-sending it could apply it
        # twice. The caller gets BackendConnectionError and decides.
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": True,
        "client_name": "lockyard",
    }
    return kwargs | _tls_kwargs(config)


def _tls_kwargs(config: RedisConfig | RedisSentinelConfig) -> dict[str, Any]:
    tls = config.tls
    if not tls.enabled:
        return {}
    return {
        "ssl_ca_certs": tls.ca_file,
        "ssl_certfile": tls.cert_file,
        "ssl_keyfile": tls.key_file,
        "ssl_cert_reqs": ssl.CERT_REQUIRED if tls.verify else ssl.CERT_NONE,
        "ssl_check_hostname": tls.verify,
    }


def _single_server_clients(config: RedisConfig) -> tuple[Redis, Redis]:
    kwargs = _connection_kwargs(config) | {"host": config.host, "port": config.port}
    connection_class = PackedSSLConnection if config.tls.enabled else PackedConnection
    pool = _LeanCheckout(
        max_connections=config.pool_size,
        timeout=None,  # the operation timeout bounds the wait for a free connection
        connection_class=connection_class,
        **kwargs,
    )
    signal_pool = ConnectionPool(max_connections=4, connection_class=connection_class, **kwargs)
    return Redis.from_pool(pool), Redis.from_pool(signal_pool)


def _sentinel_clients(config: RedisSentinelConfig) -> tuple[Redis, Redis, EpochSentinel]:
    kwargs = _connection_kwargs(config)
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": None,
        "socket_connect_timeout": config.operation_timeout,
        "retry": Retry(NoBackoff(), 0),
        "username": config.sentinel_username,
        "password": (
            None
            if config.sentinel_password is None
            else config.sentinel_password.get_secret_value()
        ),
    }
    if config.tls.enabled:
        sentinel_kwargs |= {"ssl": True, **_tls_kwargs(config)}
    sentinel = EpochSentinel(
        [(s.host, s.port) for s in config.sentinels], sentinel_kwargs=sentinel_kwargs
    )
    connection_class = _SentinelSSLConnection if config.tls.enabled else _SentinelConnection

    def pool(size: int) -> _SentinelPool:
        return _SentinelPool(  # type: ignore[no-untyped-call]
            config.master,
            sentinel,
            max_connections=size,
            timeout=None,
            connection_class=connection_class,
            is_master=True,
            **kwargs,
        )

    return Redis.from_pool(pool(config.pool_size)), Redis.from_pool(pool(4)), sentinel


async def open_backend(config: RedisConfig | RedisSentinelConfig) -> RedisBackend:
    """Open a Redis (or Sentinel) backend: pools, scripts loaded, background tasks running."""
    if isinstance(config, RedisSentinelConfig):
        client, signal_client, sentinel = _sentinel_clients(config)
        backend = RedisBackend("redis-sentinel", config, client, signal_client, sentinel)
    else:
        client, signal_client = _single_server_clients(config)
        backend = RedisBackend("redis", config, client, signal_client)
    try:
        await backend.start()
    except BaseException:
        await backend.close()
        raise
    return backend
