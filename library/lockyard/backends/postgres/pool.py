"""How the PostgreSQL backend's operations use its connections (:mod:`.lean_pool`).

Every store and lock operation is one statement on one pooled connection
(:class:`StatementPool`); asyncpg caches each prepared statement per connection, and the texts
never change, so the cache always hits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import asyncpg
from asyncpg import exceptions as pg_errors

from lockyard.config import PostgresConfig
from lockyard.errors import UnexpectedReplyError

from .errors import is_connection_error
from .lean_pool import LeanPool
from .tls import connect, connect_kwargs

T = TypeVar("T")

#: What asyncpg raises when a reply does not fit the statement's row description (a row with
#: another number of columns, a field of another size or encoding): its own ProtocolError, and
#: the errors its Cython decoders let escape (``BufferError`` for trailing bytes, an
#: ``AssertionError`` for missing ones, ``UnicodeDecodeError`` for text that is not UTF-8).
UNDECODABLE_REPLY = (pg_errors.ProtocolError, BufferError, AssertionError, UnicodeDecodeError)


def create_pool(config: PostgresConfig) -> LeanPool:
    """The pool of a backend: empty, connections opened as operations need them (so no task
    re-opens connections, and logs, while the server is away)."""
    kwargs = connect_kwargs(config)
    return LeanPool(lambda: connect(kwargs), config.pool_size)


async def close_pool(pool: LeanPool, timeout: float) -> None:
    """Close gracefully within ``timeout``, else drop every connection."""
    try:
        async with asyncio.timeout(timeout):
            await pool.close()
    except (TimeoutError, OSError, pg_errors.InterfaceError, pg_errors.PostgresError):
        pass
    pool.terminate()


def _drop(connection: asyncpg.Connection) -> None:
    """Close ``connection`` at once, unless it closed already (the pool then took it back)."""
    with contextlib.suppress(pg_errors.InterfaceError):
        connection.terminate()


class StatementPool:
    """Runs one statement on a pooled connection (what ``pool.fetchrow`` etc. do), in a way
    that bounds what a failure costs:

    - A cancelled statement (the operation timeout fired) terminates its connection at once.
      asyncpg would otherwise send the server a cancel request and keep the caller waiting until
      the server acknowledged it: unbounded when the server hangs. The server stops the
      statement by itself (``statement_timeout``), and the pool opens a fresh connection.
    - A reply asyncpg cannot decode (:data:`UNDECODABLE_REPLY`) also drops its connection (the
      rest of its stream cannot be trusted) and raises ``UnexpectedReplyError`` naming the
      statement's operation (:meth:`name_statements`).
    - Once a connection is found dead, the pool hands out no connection opened before it
      (``Pool.expire_connections()``): after a crash they are all dead, but a socket whose end
      the event loop has not processed yet still looks open, and each would fail one more
      operation. So after a crash, operations issued one after another fail at most once,
      whatever the scheduling (operations already in flight on dead connections fail with them).
    """

    def __init__(self, pool: LeanPool) -> None:
        self.pool = pool
        #: Bumped with every ``expire_connections()``. A connection acquired in an older epoch
        #: is expired already: its death says nothing about the connections opened since.
        self._epoch = 0
        #: Operation names by statement text, for the messages of undecodable replies.
        self._names: dict[str, str] = {}

    def name_statements(self, names: dict[str, str]) -> None:
        """Name statements (text to operation) for the errors of replies that cannot be read."""
        self._names.update(names)

    async def run(self, call: Callable[[asyncpg.Connection], Awaitable[T]], query: str = "") -> T:
        """``call`` on a pooled connection; the connection goes back to the pool afterwards.

        ``query`` is the statement ``call`` runs (it names the operation in errors)."""
        pool = self.pool
        epoch = self._epoch
        connection = pool.acquire_idle()
        if connection is None:
            try:
                connection = await pool.acquire()
            except BaseException as exc:
                # No new connection could be opened: the old ones predate the outage.
                if is_connection_error(exc):
                    await self._expire(epoch)
                raise
            # Read after the acquire, which may have waited: an epoch too new only expires more.
            epoch = self._epoch
        try:
            return await call(connection)
        except asyncio.CancelledError:
            _drop(connection)
            raise
        except UNDECODABLE_REPLY as exc:
            _drop(connection)
            operation = self._names.get(query, "statement")
            raise UnexpectedReplyError(
                f"postgresql {operation}: expected rows as the statement describes them, "
                f"received a reply that cannot be decoded ({type(exc).__name__}: {exc})"
            ) from exc
        except BaseException as exc:
            if is_connection_error(exc):
                _drop(connection)
                await self._expire(epoch)
            raise
        finally:
            pool.release(connection)

    async def _expire(self, epoch: int) -> None:
        if epoch == self._epoch:
            self._epoch += 1
            self.pool.expire_connections()

    # Each returns run()'s coroutine itself rather than awaiting it in one more frame: these
    # are the calls of every store and lock operation.
    def fetchval(self, query: str, *args: object) -> Coroutine[Any, Any, Any]:
        return self.run(lambda connection: connection.fetchval(query, *args), query)

    def fetchrow(self, query: str, *args: object) -> Coroutine[Any, Any, Any]:
        return self.run(lambda connection: connection.fetchrow(query, *args), query)

    def fetch(self, query: str, *args: object) -> Coroutine[Any, Any, Any]:
        return self.run(lambda connection: connection.fetch(query, *args), query)

    def execute(self, query: str, *args: object) -> Coroutine[Any, Any, Any]:
        return self.run(lambda connection: connection.execute(query, *args), query)
