"""Redis permit tables (semaphores, read-write locks): one script per operation.

Scripts and key layout: :mod:`.permit_scripts`. An acquisition runs on a connection whose
server is known, as a lock's does, so the fencing token carries that server's epoch (Sentinel's
config epoch; the cluster's on Redis Cluster); :func:`eval_with_epoch` does that on each kind
of client.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis import exceptions as rx
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from lockyard.clock import SYSTEM_CLOCK, Clock
from lockyard.operations import OperationRunner
from lockyard.permits import HolderInfo, PermitAttempt, PermitTable
from lockyard.rwlocks import ReadWriteLocks
from lockyard.semaphores import Semaphores
from lockyard.signals import ReleaseSignals

from . import replies
from .keys import KeyLayout, glob_escape
from .keyspace import Keyspace, ServerKeyspace
from .locks import FENCING_EPOCH_SHIFT
from .permit_scripts import PERMIT_LIST, PERMIT_SCRIPTS
from .pool import command
from .scripts import LuaScript
from .store import PURGE_BATCH, SCAN_COUNT


class PermitKeys:
    """The keys of one space's names (see :mod:`.permit_scripts`)."""

    def __init__(self, layout: KeyLayout, space: str) -> None:
        self._base = f"{layout.tag}{space}:"
        #: ``SCAN`` pattern of every name's holders zset.
        self.holders_pattern = glob_escape(self._base) + "*}:holders"

    def of(self, name: str) -> tuple[str, str, str, str, str]:
        """(meta, holders, info, queue, waiters) of ``name``: one hash slot."""
        base = f"{self._base}{name}}}"
        return base + ":meta", base + ":holders", base + ":info", base + ":queue", base + ":waiters"

    def holders(self, name: str) -> str:
        return f"{self._base}{name}}}:holders"

    def name_of(self, holders_key: str) -> str:
        return holders_key[len(self._base) : -len("}:holders")]


async def eval_with_epoch(
    client: Redis, script: LuaScript, keys: Sequence[str], args: Sequence[str | int]
) -> Any:
    """``EVALSHA`` with the fencing epoch of the server that runs it appended to ``args``.

    The auto-pipeline knows the epoch of its connection; otherwise the script runs on a
    connection taken for it (on Redis Cluster, one to the master of ``keys[0]``'s slot).
    """
    pipeline = getattr(client, "auto_pipeline", None)
    if pipeline is not None:

        def evalsha(epoch: int) -> tuple[Any, ...]:
            return ("EVALSHA", script.sha, len(keys), *keys, *args, epoch)

        try:
            return await pipeline.call_with_epoch(evalsha)
        except rx.NoScriptError:
            await pipeline.call(("SCRIPT", "LOAD", script.script))
            return await pipeline.call_with_epoch(evalsha)

    async def run(connection: AbstractConnection) -> Any:
        epoch = getattr(connection, "fencing_epoch", 0)
        call = ("EVALSHA", script.sha, len(keys), *keys, *args, epoch)
        try:
            return await command(connection, *call)
        except rx.NoScriptError:
            await command(connection, "SCRIPT", "LOAD", script.script)
            return await command(connection, *call)

    on_own_connection: Callable[..., Awaitable[Any]] | None = getattr(
        client, "on_own_connection", None
    )
    if on_own_connection is not None:
        return await on_own_connection(keys[0], run)
    pool = client.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        return await run(connection)
    finally:
        await pool.release(connection)


def _token(epoch: int, counter: int) -> int:
    return epoch << FENCING_EPOCH_SHIFT | counter


class RedisPermits(PermitTable):
    def __init__(
        self,
        runner: OperationRunner,
        space: str,
        client: Redis,
        layout: KeyLayout,
        signals: ReleaseSignals,
        *,
        keyspace: Keyspace | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        super().__init__(runner, space, clock, signals)
        self._client = client
        self._keys = PermitKeys(layout, space)
        self._channel = layout.release_channel
        self._signals = signals
        self._keyspace: Keyspace = keyspace or ServerKeyspace(client)
        self._timeout = runner.timeout
        self._scripts = {name: LuaScript(client, text) for name, text in PERMIT_SCRIPTS.items()}
        #: Tags this client's queue entries: a release whose waiter waits here wakes it
        #: directly instead of publishing to ourselves.
        self._client_id = secrets.token_hex(8)

    def keys_of(self, name: str) -> tuple[str, str, str, str, str]:
        return self._keys.of(name)

    def holders_key(self, name: str) -> str:
        return self._keys.holders(name)

    async def _acquire(
        self,
        name: str,
        owner: str,
        weight: int,
        limit: int,
        ttl_ms: int,
        wait_ms: int | None,
        count_queue: bool,
    ) -> PermitAttempt:
        args = (
            owner,
            weight,
            limit,
            ttl_ms,
            "" if wait_ms is None else wait_ms,
            "1" if count_queue else "",
            self._client_id,
        )
        script = self._scripts["permit_acquire"]
        reply = await eval_with_epoch(self._client, script, self._keys.of(name), args)
        result = replies.permit_attempt("permit_acquire", reply)
        if isinstance(result, replies.LimitConflict):
            return PermitAttempt(None, limit_conflict=result.limit)
        if isinstance(result, tuple):
            return PermitAttempt(_token(*result))
        return PermitAttempt(None, result, queued=wait_ms is not None)

    async def _extend(self, name: str, owner: str, ttl_ms: int) -> bool:
        script = self._scripts["permit_extend"]
        return replies.flag(
            "permit_extend", await script((self._keys.holders(name),), (owner, ttl_ms))
        )

    async def _is_held(self, name: str, owner: str) -> bool:
        script = self._scripts["permit_is_held"]
        return replies.flag("permit_is_held", await script((self._keys.holders(name),), (owner,)))

    def _wake(self, name: str, owners: Sequence[str]) -> None:
        for owner in owners:
            self._signals.wake(self.signal_name(name), owner)

    async def _release(self, name: str, owner: str) -> bool:
        args = (owner, self._channel, self.signal_name(name), self._client_id)
        reply = await self._scripts["permit_release"](self._keys.of(name), args)
        owners = replies.permit_released("permit_release", reply)
        if owners is None:
            return False
        self._wake(name, owners)
        return True

    async def _leave_queue(self, name: str, owner: str) -> None:
        args = (owner, self._channel, self.signal_name(name), self._client_id)
        reply = await self._scripts["permit_leave_queue"](self._keys.of(name), args)
        self._wake(name, replies.texts("permit_leave_queue", reply))

    async def _list_held(self) -> list[HolderInfo]:
        held: list[HolderInfo] = []
        batch: list[str] = []
        async for holders in self._keyspace.scan(
            self._keys.holders_pattern, count=SCAN_COUNT, kind="zset", timeout=self._timeout
        ):
            batch.append(holders)
            if len(batch) >= PURGE_BATCH:
                held += await self._infos(batch)
                batch = []
        return held + await self._infos(batch)

    async def _infos(self, holders_keys: Sequence[str]) -> list[HolderInfo]:
        names = [self._keys.name_of(key) for key in holders_keys]
        calls = [self._keys.of(name)[:3] for name in names]
        infos: list[HolderInfo] = []
        for name, reply in zip(names, await self._keyspace.evals(PERMIT_LIST, calls), strict=True):
            limit, holders = replies.permit_holders("list_held", reply)
            for owner, left, weight, epoch, counter in holders:
                infos.append(HolderInfo(name, owner, _token(epoch, counter), left, weight, limit))
        return infos


def permit_managers(
    runner: OperationRunner,
    client: Redis,
    layout: KeyLayout,
    signals: ReleaseSignals,
    *,
    keyspace: Keyspace | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> tuple[Semaphores, ReadWriteLocks]:
    """``ly.semaphores`` and ``ly.rwlocks`` of a Redis backend."""

    def table(space: str) -> RedisPermits:
        return RedisPermits(runner, space, client, layout, signals, keyspace=keyspace, clock=clock)

    return Semaphores(table("semaphore")), ReadWriteLocks(table("rwlock"))
