"""The PostgreSQL backend's connections: asyncpg connections handed out first come, first served.

Why not ``asyncpg.Pool``: two of its costs showed in the benchmark. Its release runs in a
shielded task (a loop iteration, about 60 us per statement on a loaded machine, two per lock
cycle); and its waiters queue on an ``asyncio.Queue``, where a connection put back wakes the
oldest waiter but any caller arriving before that waiter runs takes the connection, and the
woken waiter queues again at the back: with 64 tasks on 10 connections some waited for most of
a run (the 100 ms p99 of ``make bench``). Here a returned connection goes straight to the
oldest waiter, nobody takes a free connection while anyone waits, and returning is a plain
call. Nothing else is needed: connections never change session state (no ``SET``, ``LISTEN``
or advisory locks), so nothing is reset between uses.

:meth:`LeanPool.expire_connections` retires every connection opened so far (asyncpg's method of
the same name): idle ones close at once, busy ones when returned.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from types import TracebackType
from typing import Any

import asyncpg
from asyncpg import exceptions as pg_errors


class LeanPool:
    """Up to ``max_size`` asyncpg connections, opened when needed and kept while they work."""

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], max_size: int) -> None:
        self._connect = connect
        self._max = max_size
        self._idle: list[asyncpg.Connection] = []
        #: Every open connection, idle or in use, and the generation it was opened in.
        self._born: dict[asyncpg.Connection, int] = {}
        #: Connections being opened (each holds a place counted against ``max_size``).
        self._opening = 0
        self._generation = 0
        #: Callers waiting, oldest first: each gets a connection, or ``None`` to open one.
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._closing = False

    @property
    def size(self) -> int:
        """Open connections, and connections being opened."""
        return len(self._born) + self._opening

    def acquire(self) -> _Acquire:
        """``await pool.acquire()`` (then :meth:`release`), or ``async with pool.acquire()``."""
        return _Acquire(self)

    def acquire_idle(self) -> asyncpg.Connection | None:
        """An idle connection at once, or ``None`` (then ``await`` :meth:`acquire`): what most
        statements find, without the cost of a coroutine. ``None`` while callers wait for a
        connection: the oldest of them gets the next one."""
        if self._waiters or self._closing:
            return None
        idle = self._idle
        while idle:
            connection = idle.pop()  # the most recently used: warm, and its socket known alive
            if connection.is_closed() or self._born.get(connection) != self._generation:
                self._discard(connection)
                continue
            return connection
        return None

    async def _acquire(self) -> asyncpg.Connection:
        if self._closing:
            raise pg_errors.InterfaceError("pool is closing")
        if not self._waiters:
            connection = self.acquire_idle()
            if connection is not None:
                return connection
            if self.size < self._max:
                return await self._open(reserved=False)
        return await self._wait()

    async def _open(self, *, reserved: bool) -> asyncpg.Connection:
        if not reserved:
            self._opening += 1
        generation = self._generation
        try:
            connection = await self._connect()
        except BaseException:
            self._opening -= 1
            self._place_freed()
            raise
        self._opening -= 1
        self._born[connection] = generation
        if self._closing:
            self._discard(connection)
            raise pg_errors.InterfaceError("pool is closing")
        return connection

    async def _wait(self) -> asyncpg.Connection:
        waiter: asyncio.Future[asyncpg.Connection | None]
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            connection = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed something just as we were cancelled: pass it on.
                handed = waiter.result()
                if handed is None:
                    self._opening -= 1
                    self._place_freed()
                else:
                    self.release(handed)
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise
        if connection is None:  # a place freed up for us: open a connection in it
            return await self._open(reserved=True)
        return connection

    def release(self, connection: asyncpg.Connection) -> None:
        """Take a connection back: to the oldest waiter, or to the idle ones."""
        if (
            self._closing
            or connection.is_closed()
            or self._born.get(connection) != self._generation
        ):
            self._discard(connection)
            return
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append(connection)

    def _discard(self, connection: asyncpg.Connection) -> None:
        if self._born.pop(connection, None) is None:
            return
        if not connection.is_closed():
            connection.terminate()
        self._place_freed()

    def _place_freed(self) -> None:
        """A connection closed (or failed to open): the oldest waiter may open one instead."""
        waiters = self._waiters
        while waiters and not self._closing:
            waiter = waiters.popleft()
            if not waiter.done():
                self._opening += 1  # the place is the waiter's, whoever asks meanwhile
                waiter.set_result(None)
                return

    def expire_connections(self) -> None:
        """Retire every connection opened so far: idle ones now, busy ones when returned."""
        self._generation += 1
        idle, self._idle = self._idle, []
        for connection in idle:
            self._discard(connection)

    async def fetchval(self, query: str, *args: object) -> Any:
        """One statement's first value, on a connection of the pool (tests and diagnostics)."""
        async with self.acquire() as connection:
            return await connection.fetchval(query, *args)

    async def close(self) -> None:
        """Close gracefully: idle connections now, busy ones when they are returned."""
        self._closing = True
        self._fail_waiters()
        idle, self._idle = self._idle, []
        for connection in idle:
            self._born.pop(connection, None)
            await connection.close()

    def terminate(self) -> None:
        """Close every connection at once, busy or not."""
        self._closing = True
        self._fail_waiters()
        self._idle = []
        born, self._born = self._born, {}
        for connection in born:
            if not connection.is_closed():
                connection.terminate()

    def _fail_waiters(self) -> None:
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(pg_errors.InterfaceError("pool is closing"))


class _Acquire:
    """What :meth:`LeanPool.acquire` returns: awaitable, or an async context manager."""

    __slots__ = ("_connection", "_pool")

    def __init__(self, pool: LeanPool) -> None:
        self._pool = pool
        self._connection: asyncpg.Connection | None = None

    def __await__(self) -> Generator[Any, None, asyncpg.Connection]:
        return self._pool._acquire().__await__()

    async def __aenter__(self) -> asyncpg.Connection:
        self._connection = await self._pool._acquire()
        return self._connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            self._pool.release(connection)
