"""The blocking handle: ``lockyard.sync.connect(url)`` and ``lockyard.sync.connect_store(name)``.

One handle owns one event loop thread (:mod:`.portal`) and, on it, one async
:class:`lockyard.Connection`, opened at ``connect`` and again lazily in a forked child. Share
one handle between all the threads of a process, as one would share a connection pool.
"""

from __future__ import annotations

import asyncio
import itertools
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

from lockyard.config.backends import CommonSettings
from lockyard.connection import Connection as AsyncConnection
from lockyard.connection import open_connection
from lockyard.guarantees import Guarantees
from lockyard.keys import KeyLike
from lockyard.sync.bridge import Bridged, blocking
from lockyard.sync.elections import Elections
from lockyard.sync.locks import DistributedLock
from lockyard.sync.permits import ReadWriteLocks, Semaphores
from lockyard.sync.portal import EXIT_CLOSE_TIMEOUT_S, Portal, abandon
from lockyard.sync.store import StateStore

R = TypeVar("R")

Opener = Callable[[], Coroutine[Any, Any, AsyncConnection]]

_numbers = itertools.count(1)


class _Slot:
    """The handle's async connection, apart from the handle so a finalizer can close it."""

    __slots__ = ("connection", "opening")

    def __init__(self) -> None:
        self.connection: AsyncConnection | None = None
        self.opening: asyncio.Lock | None = None

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()

    def forget_parent(self) -> None:
        """In a forked child: the parent's connection is the parent's. Never close it here."""
        if self.connection is not None:
            abandon(self.connection)
        self.connection = None
        self.opening = None


class Connection(Bridged):
    """A blocking handle: ``.store``, ``.locks``, ``.elections``, ``.guarantees``, ``close()``.

    Safe to share between threads; usable in a forked child (it reconnects there); closed at
    interpreter exit if still open.
    """

    def __init__(self, opener: Opener, description: str) -> None:
        self._description = description
        self._opener = opener
        self._slot = _Slot()
        self._about: tuple[str, Guarantees, str] | None = None
        self.__portal = Portal(f"lockyard-sync-{next(_numbers)}")
        # Neither this callback nor the finalizer may hold the handle, or it would never be freed.
        self.__portal.on_fork(self._slot.forget_parent)
        #: Shared state: the same operations as ``lockyard.StateStore``, blocking.
        self.store = StateStore(self)
        #: Locks: the same operations as ``lockyard.DistributedLock``, blocking.
        self.locks = DistributedLock(self)
        #: Leader elections: as ``lockyard.Elections``, blocking.
        self.elections = Elections(self)
        #: Counting semaphores and read-write locks, blocking.
        self.semaphores = Semaphores(self)
        self.rwlocks = ReadWriteLocks(self)
        # Dropped without close(), or still open at interpreter exit (finalizers run then too):
        # close the backend and stop the loop thread all the same.
        weakref.finalize(self, _close_dropped, self.__portal, self._slot)

    @property
    def _portal(self) -> Portal:
        return self.__portal

    async def _current(self) -> AsyncConnection:
        """The open async connection (on the loop); opens it on first use in this process."""
        slot = self._slot
        if slot.connection is not None:
            return slot.connection
        if slot.opening is None:
            slot.opening = asyncio.Lock()
        async with slot.opening:
            if slot.connection is None:
                connection = await self._opener()
                slot.connection = connection
                self._about = (connection.backend, connection.guarantees, connection.prefix)
        return slot.connection

    def _target_now(self) -> AsyncConnection | None:
        return self._slot.connection

    async def _target(self) -> AsyncConnection:
        return await self._current()

    def _open(self) -> None:
        self._portal.call(self._current)

    def _described(self) -> tuple[str, Guarantees, str]:
        if self._about is None:
            self._open()
        assert self._about is not None
        return self._about

    # -- the async Connection's surface ----------------------------------------------------------
    @property
    def backend(self) -> str:
        """The backend's name: ``memory``, ``redis``, ``redis-sentinel``, ``postgresql``, ..."""
        return self._described()[0]

    @property
    def guarantees(self) -> Guarantees:
        return self._described()[1]

    @property
    def prefix(self) -> str:
        return self._described()[2]

    @property
    def closed(self) -> bool:
        return self._portal.closed

    def colocated_name(self, name: str, key: KeyLike, *, guard: str = "lock") -> str:
        """As :meth:`lockyard.Connection.colocated_name` (pure: computed from the backend's key
        placement, no round trip)."""
        self._open()
        connection = self._target_now()
        assert connection is not None
        return connection.colocated_name(name, key, guard=guard)

    ping = blocking(AsyncConnection.ping)
    server_version = blocking(AsyncConnection.server_version)

    def run(self, fn: Callable[[AsyncConnection], Awaitable[R]]) -> R:
        """``fn(connection)`` awaited on the handle's loop, with its async connection: the way
        to reach an async-only API from a thread (its objects belong to that loop)."""
        result: R = self._portal.call(self._run_on_loop, fn)
        return result

    async def _run_on_loop(self, fn: Callable[[AsyncConnection], Awaitable[R]]) -> R:
        return await fn(await self._current())

    def close(self, timeout: float | None = None) -> None:
        """Close the backend's connections and stop the loop thread; idempotent.

        A ``hold()`` block still running loses its lock (it is released).
        """
        self._portal.close(self._slot.close, timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<lockyard.sync.Connection {self._description}>"


def _close_dropped(portal: Portal, slot: _Slot) -> None:
    if portal.closed or portal.in_loop_thread():
        return
    try:
        portal.close(slot.close, timeout=EXIT_CLOSE_TIMEOUT_S)
    except Exception:  # a finalizer cannot report: the backend's sockets close with the process
        return


def _describe(target: str | CommonSettings | Mapping[str, Any]) -> str:
    if isinstance(target, str):
        return f"backend={target.split(':', 1)[0]}"  # never the URL: it may hold a password
    backend = getattr(target, "backend", None) if isinstance(target, CommonSettings) else None
    if isinstance(target, Mapping):
        backend = target.get("backend")
    return f"backend={backend}"


def connect(url_or_config: str | CommonSettings | Mapping[str, Any]) -> Connection:
    """Open a backend, blocking: ``with lockyard.sync.connect(url) as ly:``.

    Takes what :func:`lockyard.connect` takes; raises what it raises, here and now.
    """

    async def open_() -> AsyncConnection:
        return await open_connection(url_or_config)

    handle = Connection(open_, _describe(url_or_config))
    try:
        handle._open()
    except BaseException:
        handle.close()
        raise
    return handle


def connect_store(name: str, namespace: str | None = None) -> Connection:
    """The blocking :func:`lockyard.connect_store`: the StateStore ``name`` from its binding."""

    async def open_() -> AsyncConnection:
        from lockyard.workloads import connect_store as open_store

        return await open_store(name, namespace)

    handle = Connection(open_, f"store={name!r}")
    try:
        handle._open()
    except BaseException:
        handle.close()
        raise
    return handle
