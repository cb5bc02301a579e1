"""Redis locks: one script per operation, waiters served first come, first served.

A lease is one key ``SET NX PX``; the fencing counter is bumped in the same script; release and
break compare the owner token on the server, and publish the head of the queue if it waits in
another client (a head that waits in this client is woken from the script's reply instead). How
the queue, the fencing epoch and ``wait_replicas`` work: docs/backends/redis.md, *Locks*.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from redis import exceptions as rx
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from lockyard import lanes
from lockyard.clock import SYSTEM_CLOCK, Clock
from lockyard.errors import BackendError
from lockyard.locks import AcquireAttempt, DistributedLock, LockInfo
from lockyard.operations import OperationRunner
from lockyard.signals import ReleaseSignals

from . import replies
from . import scripts as lua
from .autopipeline import serves_lanes
from .keys import KeyLayout
from .keyspace import Keyspace, ServerKeyspace
from .pool import command
from .scripts import LuaScript, Scripts
from .store import PURGE_BATCH, SCAN_COUNT

#: Fencing token = epoch << FENCING_EPOCH_SHIFT | counter (counters stay below 2**40).
FENCING_EPOCH_SHIFT = 40


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
        keyspace: Keyspace | None = None,
    ) -> None:
        super().__init__(runner, clock, signals)
        self._client = client
        self._keyspace: Keyspace = keyspace or ServerKeyspace(client)
        self._timeout = runner.timeout
        self._layout = layout
        self._scripts = scripts
        self._signals = signals
        self._wait_replicas = wait_replicas
        self._wait_timeout_ms = wait_timeout_ms
        #: Tags this client's queue entries: a release whose next owner waits here wakes it
        #: directly instead of publishing to ourselves.
        self._client_id = secrets.token_hex(8)
        self._lock_info = LuaScript(client, lua.LOCK_INFO)
        # WAIT counts one pooled connection's writes: with replicas to wait for, no lanes.
        self.serves_lanes = not wait_replicas and serves_lanes(client)

    async def _try_acquire(
        self, name: str, owner: str, ttl_ms: int, wait_ms: int | None = None
    ) -> AcquireAttempt:
        pipeline = getattr(self._client, "auto_pipeline", None)
        if pipeline is None or self._wait_replicas:
            return await self._acquire_on_own_connection(name, owner, ttl_ms, wait_ms)
        script = self._scripts.acquire
        keys = self._layout.lock_keys(name)
        waiter_lease = "" if wait_ms is None else wait_ms
        client_id = self._client_id

        def evalsha(epoch: int) -> tuple[Any, ...]:
            # The fencing epoch is that of the server the pipelined connection was opened to.
            return ("EVALSHA", script.sha, 4, *keys, owner, ttl_ms, epoch, waiter_lease, client_id)

        try:
            result = await pipeline.call_with_epoch(evalsha)
        except rx.NoScriptError:
            await pipeline.call(("SCRIPT", "LOAD", script.script))
            result = await pipeline.call_with_epoch(evalsha)
        return _attempt(result, wait_ms)

    async def _acquire_on_own_connection(
        self, name: str, owner: str, ttl_ms: int, wait_ms: int | None
    ) -> AcquireAttempt:
        # The acquisition runs on a connection we hold, because the fencing epoch belongs to
        # the server that connection was opened to (and WAIT counts that connection's writes).
        keys = self._layout.lock_keys(name)

        async def acquire(connection: AbstractConnection) -> AcquireAttempt:
            epoch = getattr(connection, "fencing_epoch", 0)
            script = self._scripts.acquire
            waiter_lease = "" if wait_ms is None else wait_ms
            args = (*keys, owner, ttl_ms, epoch, waiter_lease, self._client_id)
            try:
                result = await command(connection, "EVALSHA", script.sha, 4, *args)
            except rx.NoScriptError:
                await command(connection, "SCRIPT", "LOAD", script.script)
                result = await command(connection, "EVALSHA", script.sha, 4, *args)
            attempt = _attempt(result, wait_ms)
            if attempt.fencing_token is not None and self._wait_replicas:
                await self._confirm_replicas(connection, name, owner)
            return attempt

        # Redis Cluster: a connection to the master of the lock's slot, redirects followed.
        on_own_connection = getattr(self._client, "on_own_connection", None)
        if on_own_connection is not None:
            attempt: AcquireAttempt = await on_own_connection(keys[0], acquire)
            return attempt
        pool = self._client.connection_pool
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            return await acquire(connection)
        finally:
            await pool.release(connection)

    async def _confirm_replicas(
        self, connection: AbstractConnection, name: str, owner: str
    ) -> None:
        reply = await command(connection, "WAIT", self._wait_replicas, self._wait_timeout_ms)
        acked = replies.count("acquire (WAIT)", reply)
        if acked >= self._wait_replicas:
            return
        release = self._scripts.release
        lease, _, queue, waiters = self._layout.lock_keys(name)
        channel = self._layout.release_channel
        args = (lease, queue, waiters, owner, channel, name, self._client_id)
        replies.handed_over("release", await command(connection, "EVALSHA", release.sha, 3, *args))
        raise BackendError(
            f"lock {name!r}: only {acked} of {self._wait_replicas} replicas confirmed the "
            f"acquisition within {self._wait_timeout_ms} ms; it was released again"
        )

    async def _take_if_unwanted(self, name: str, owner: str, ttl_ms: int) -> int | None:
        # A waiter lease of 0: the queue is consulted, not joined (only a lane calls this).
        attempt = await self._try_acquire(name, owner, ttl_ms, 0)
        return attempt.fencing_token

    async def _extend(self, name: str, owner: str, ttl_ms: int) -> bool:
        reply = await self._scripts.extend((self._layout.lease(name),), (owner, ttl_ms))
        return replies.flag("extend", reply)

    def _queue_keys(self, name: str) -> tuple[str, str, str]:
        lease, _, queue, waiters = self._layout.lock_keys(name)
        return lease, queue, waiters

    def _handed_over(self, operation: str, name: str, result: object) -> bool:
        """Read a release/break reply; wake the next owner here if it waits in this process."""
        next_owner = replies.handed_over(operation, result)
        if next_owner is None:
            return False
        if next_owner:
            lanes.soon(self._signals.wake, name, next_owner)
        return True

    async def _release(self, name: str, owner: str) -> bool:
        args = (owner, self._layout.release_channel, name, self._client_id)
        result = await self._scripts.release(self._queue_keys(name), args)
        return self._handed_over("release", name, result)

    async def _is_held(self, name: str, owner: str) -> bool:
        holder = replies.value("is_held", await self._client.get(self._layout.lease(name)))
        return holder == owner

    async def _break(self, name: str) -> bool:
        args = (self._layout.release_channel, name, self._client_id)
        result = await self._scripts.breaks(self._queue_keys(name), args)
        return self._handed_over("break_lock", name, result)

    async def _leave_queue(self, name: str, owner: str) -> None:
        args = (owner, self._layout.release_channel, name, self._client_id)
        reply = await self._scripts.leave_queue(self._queue_keys(name), args)
        head = replies.text("leave_queue", reply, "the next owner")
        if head:
            self._signals.wake(name, head)

    async def _holder(self, name: str) -> LockInfo | None:
        layout = self._layout
        reply = await self._lock_info((layout.lease(name), layout.fence(name)), ())
        info = replies.lock_info("holder", reply)
        if info is None:
            return None
        owner, remaining, epoch, counter = info
        return LockInfo(name, owner, epoch << FENCING_EPOCH_SHIFT | counter, remaining)

    async def _list_held(self) -> list[LockInfo]:
        layout = self._layout
        held: list[LockInfo] = []
        batch: list[str] = []
        async for lease in self._keyspace.scan(
            layout.lease_pattern, count=SCAN_COUNT, kind="string", timeout=self._timeout
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
        calls = [(lease, layout.fence(layout.lock_name(lease))) for lease in leases]
        results = await self._keyspace.evals(lua.LOCK_INFO, calls)
        infos = []
        for lease, reply in zip(leases, results, strict=True):
            info = replies.lock_info("list_held", reply)
            if info is not None:
                owner, remaining, epoch, counter = info
                token = epoch << FENCING_EPOCH_SHIFT | counter
                infos.append(LockInfo(layout.lock_name(lease), owner, token, remaining))
        return infos


def _attempt(result: object, wait_ms: int | None) -> AcquireAttempt:
    """The acquire script's reply: ``[epoch, counter]`` when taken, else the retry delay."""
    reply = replies.acquired("acquire", result)
    if isinstance(reply, int):
        return AcquireAttempt(None, max(reply, 0), queued=bool(wait_ms))
    epoch, counter = reply
    return AcquireAttempt(epoch << FENCING_EPOCH_SHIFT | counter)
