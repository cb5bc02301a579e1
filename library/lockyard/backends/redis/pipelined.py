"""One Redis connection shared by concurrent operations: requests written in batches, replies
matched to them in order (auto-pipelining; :mod:`.autopipeline` decides which connection).

Each operation is still one command: :meth:`PipelinedConnection.send` queues its bytes and
returns a future; everything queued while the event loop runs one round of ready tasks is
written with one ``write`` at the end of that round, or sooner in parts (:data:`EARLY_WRITE`),
and each reply resolves the oldest outstanding future. The connection is an
``asyncio.Protocol``, so a reply reaches its caller with no reader task in between (the same
single wake-up as a caller reading its own socket).

What a failure costs:

- The socket fails: every operation written to it or queued for it fails with redis-py's
  ``ConnectionError`` (``BackendConnectionError``); the pool's generation moves on, so pooled
  connections opened before are retired too (:class:`.pool.Generations`).
- An operation is cancelled (its timeout fired): its reply is read and dropped when it comes;
  one not yet written is not sent. If the server has sent nothing for ``stale_after`` seconds
  while a request waited, the connection is *retired*: it takes no new operation, and closes
  once nothing it carries is awaited any more.
- An error reply fails only its own operation; ``READONLY`` (a demoted master) also retires
  the connection and moves the generation on.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import hiredis
from redis import exceptions as rx
from redis._parsers.base import BaseParser

from .packing import pack

log = logging.getLogger(__name__)

#: A request of at least this many bytes, or a reply arriving in pieces past it, makes its
#: connection *heavy*: new operations go to another connection instead of queuing behind it.
LARGE_BYTES = 16 * 1024

#: A round's batch is written before the round ends once it holds this many commands and at
#: least as many as the server still has to answer: the server then works on one part while the
#: client prepares the next. Written only at the round's end, the two took turns (64 tasks' ``set``
#: scripts: about 370 us of the server's time per batch, then 640 us of the client's). One handle,
#: one server, old against new in 3 alternating runs: 16 tasks ``set`` 42,000-47,000 ->
#: 64,000-76,000/s, lock cycles 13,800-16,800 -> 22,000-27,000/s; 64 tasks ``set`` 51,000-73,000
#: -> 81,000-100,000/s, ``get`` 88,000-106,000 -> 117,000-131,000/s. At 256 tasks replies already
#: arrive while the next batch forms, and the rule hardly fires (435-453 writes per 21,516
#: commands, 446-467 before); a fixed 8 fired there too and lost 10-17%, each write a syscall.
EARLY_WRITE = 8

#: Reports a connection found dead (or a master found demoted) with the error that showed it.
DeathReport = Callable[["PipelinedConnection", BaseException], None]


def reader() -> hiredis.Reader:
    # The same reader redis-py's hiredis parser makes for ``decode_responses=True``: error
    # replies become redis-py's exception classes (NoScriptError, ReadOnlyError, ...).
    return hiredis.Reader(
        protocolError=rx.InvalidResponse,
        replyError=BaseParser.parse_error,
        encoding="utf-8",
        errors="strict",
    )


class PipelinedConnection(asyncio.Protocol):
    """One socket to one server, carrying the requests of many callers."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        generation: int,
        stale_after: float,
        on_death: DeathReport,
    ) -> None:
        self._loop = loop
        #: The pool generation this connection was opened in (see :class:`.pool.Generations`).
        self.generation = generation
        self._stale_after = stale_after
        self._on_death = on_death
        self._transport: asyncio.Transport | None = None
        self._reader = reader()
        #: Futures of the requests written, oldest first: the next reply is the first's.
        self._pending: deque[asyncio.Future[Any]] = deque()
        #: The requests written that are large, oldest first (a subsequence of ``_pending``).
        self._large: deque[asyncio.Future[Any]] = deque()
        #: Requests queued since the last write, and their futures.
        self._batch: list[bytes] = []
        self._batch_futures: list[asyncio.Future[Any]] = []
        self._flush_scheduled = False
        #: Bytes of a reply still arriving (0 when the last data completed a reply).
        self._partial = 0
        #: Loop time of the last reply, or of the write that made an idle connection busy.
        self._progress_at = 0.0
        self._handshake: list[asyncio.Future[Any]] = []
        self._opened: asyncio.Future[None] = loop.create_future()
        #: Done when asyncio reports the socket closed (``connection_lost``).
        self._lost: asyncio.Future[None] = loop.create_future()
        #: Requests written and batches written (``requests / writes`` is the batching).
        self.requests = 0
        self.writes = 0
        #: The server's address and the fencing epoch that came with it (set when opening).
        self.address: tuple[str, int] | None = None
        self.fencing_epoch = 0
        #: Handshake done: queued requests are written from now on.
        self.ready = False
        #: Takes no new request (dead, closed, or retired).
        self.retired = False
        self.closed = False
        self._closing = False
        #: Why the connection failed (``None`` while it works, or after a clean close).
        self.failure: BaseException | None = None

    @property
    def finished(self) -> bool:
        """Closed, and its socket too (asyncio closes a socket a loop round after ``close()``,
        and a TLS socket only once the server answered its close_notify)."""
        return self.closed and self._transport is None

    # -- choosing -------------------------------------------------------------------------
    @property
    def heavy(self) -> bool:
        """A large request or reply is in flight: small requests are better sent elsewhere."""
        return bool(self._large) or self._partial >= LARGE_BYTES

    @property
    def outstanding(self) -> int:
        """Requests sent or queued and not yet answered."""
        return len(self._pending) + len(self._batch)

    # -- sending --------------------------------------------------------------------------
    def send(self, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Queue one command; its future gets the reply (or the error reply, as an exception)."""
        data = pack(args)
        future: asyncio.Future[Any] = self._loop.create_future()
        if self.closed:  # only a caller that waited for this connection gets here after its end
            future.set_exception(_copy(self.failure or rx.ConnectionError("connection closed")))
            return future
        self._batch.append(data)
        self._batch_futures.append(future)
        if len(data) >= LARGE_BYTES:
            # Marked now, so requests queued in this same round already avoid this connection.
            self._large.append(future)
        if self.ready:
            if len(self._batch) >= max(EARLY_WRITE, len(self._pending)):
                self._write_batch()
            elif not self._flush_scheduled:
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        """The end of a round: write what was queued in it (and not written early)."""
        self._flush_scheduled = False
        self._write_batch()

    def _write_batch(self) -> None:
        batch, futures = self._batch, self._batch_futures
        transport = self._transport
        if not batch or transport is None or self.closed:
            return
        self._batch, self._batch_futures = [], []
        if not self._pending:
            self._progress_at = self._loop.time()
        self._pending.extend(futures)
        transport.write(batch[0] if len(batch) == 1 else b"".join(batch))
        self.requests += len(batch)
        self.writes += 1

    def abandon(self, future: asyncio.Future[Any]) -> None:
        """The caller of ``future`` was cancelled (its timeout fired, or it was cancelled)."""
        futures = self._batch_futures
        if future in futures:  # not written yet: never sent
            index = futures.index(future)
            del futures[index]
            del self._batch[index]
            if future in self._large:
                self._large.remove(future)
        elif (
            self._pending
            and not self.retired
            and self._loop.time() - self._progress_at >= self._stale_after
        ):
            log.debug(
                "redis: no reply for %.1fs: retiring a pipelined connection", self._stale_after
            )
            self.retire()
        self._close_if_idle()

    # -- the connection's life ------------------------------------------------------------
    def start_handshake(self, commands: Sequence[tuple[Any, ...]]) -> list[asyncio.Future[Any]]:
        """Write the connection's set-up commands (AUTH, SELECT, ...) ahead of everything."""
        transport = self._transport
        assert transport is not None
        futures = [self._loop.create_future() for _ in commands]
        self._handshake = futures
        if futures:
            self._progress_at = self._loop.time()
            self._pending.extend(futures)
            transport.write(b"".join(pack(command) for command in commands))
        return futures

    def opened(self) -> None:
        """The handshake succeeded: write what was queued meanwhile."""
        self._handshake = []
        self.ready = True
        if not self._opened.done():
            self._opened.set_result(None)
        if self._batch and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def failed(self, error: BaseException, *, server_gone: bool) -> None:
        """Opening failed: fail what was queued, close, and report a dead server."""
        for future in self._handshake:
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: the opener reported the first error already
        self._handshake = []
        self._die(error, report=server_gone)
        self._close_transport()

    async def wait_opened(self) -> None:
        """Until the handshake is done; the opening error if it failed."""
        if not self.ready:
            await asyncio.shield(self._opened)
            if self.failure is not None:
                raise _copy(self.failure)
            if not self.ready:
                raise rx.ConnectionError("the connection closed before it was ready")

    def retire(self) -> None:
        """Take no new request; close once nothing in flight is awaited."""
        self.retired = True
        self._close_if_idle()

    def close(self) -> None:
        """Close now: whatever is in flight fails with ``ConnectionError``."""
        self._closing = True
        self._die(rx.ConnectionError("the Redis handle was closed"), report=False)
        self._close_transport()

    async def wait_closed(self, grace: float) -> None:
        """Until the socket is closed, after :meth:`close`; a server that does not answer the
        close within ``grace`` seconds has its socket dropped. A loop that ends before would
        leave the socket open (a ResourceWarning wherever it is collected)."""
        lost = self._lost
        if self._transport is None:
            return
        await asyncio.wait((lost,), timeout=grace)
        transport = self._transport
        if transport is not None:
            transport.abort()
            await asyncio.wait((lost,), timeout=grace)

    def _close_if_idle(self) -> None:
        if not self.retired or self.closed or self._batch_futures:
            return
        if all(future.done() for future in self._pending):
            self._closing = True
            self._die(rx.ConnectionError("a retired connection closed"), report=False)
            self._close_transport()

    def _close_transport(self) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def _die(self, error: BaseException, *, report: bool) -> None:
        """Fail everything in flight with ``error`` (a copy each); report it if asked."""
        if self.closed:
            return
        self.closed = self.retired = True
        if not self._closing:
            self.failure = error
        pending, self._pending = self._pending, deque()
        futures, self._batch_futures = self._batch_futures, []
        self._batch = []
        self._large.clear()
        for future in (*pending, *futures):
            if not future.done():
                future.set_exception(_copy(error))
        if not self._opened.done():
            self._opened.set_result(None)
        if report:
            self._on_death(self, error)

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # As redis-py's socket_keepalive: a peer that vanished without a FIN is found.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        pending = self._pending
        large = self._large
        answered = False
        try:
            while (reply := reader.gets()) is not False:
                answered = True
                future = pending.popleft()
                if large and large[0] is future:
                    large.popleft()
                if future.done():  # its caller gave up (timeout, cancellation)
                    continue
                # Every error reply, not only ResponseError: LOADING parses to BusyLoadingError,
                # a ConnectionError, which must fail its operation, not be its result.
                if isinstance(reply, rx.RedisError):
                    future.set_exception(reply)
                    if isinstance(reply, rx.ReadOnlyError):
                        self._demoted(reply)
                else:
                    future.set_result(reply)
        except (rx.InvalidResponse, IndexError) as exc:
            # A protocol error, or a reply nobody asked for: the stream cannot be trusted. The
            # reply that failed to parse is the oldest outstanding one's: that caller learns
            # its reply was unreadable (UnexpectedReplyError); the others lost the connection.
            if isinstance(exc, rx.InvalidResponse) and pending:
                head = pending.popleft()
                if not head.done():
                    head.set_exception(rx.InvalidResponse(f"unreadable reply: {exc}"))
            self._die(rx.ConnectionError(f"unreadable reply stream: {exc!r}"), report=True)
            self._close_transport()
            return
        if answered:
            self._partial = 0
            self._progress_at = self._loop.time()
            if self.retired:
                self._close_if_idle()
        else:
            self._partial += len(data)

    def _demoted(self, reply: rx.ReadOnlyError) -> None:
        """A write reached a replica (a failover demoted this master): stop using it."""
        if not self.retired:
            self.retired = True
            self._on_death(self, reply)
        self._close_if_idle()

    def eof_received(self) -> bool | None:
        return None  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        address = "%s:%s" % self.address if self.address else "the server"  # noqa: UP031
        if exc is None:
            error = rx.ConnectionError(f"Connection closed by server ({address}).")
        else:
            error = rx.ConnectionError(f"Error while reading from {address}: {exc}")
        self._die(error, report=not self._closing)
        self._transport = None
        if not self._lost.done():
            self._lost.set_result(None)


def _copy(error: BaseException) -> BaseException:
    """A fresh exception like ``error`` for each caller (one instance raised in many tasks
    would collect all their tracebacks)."""
    try:
        fresh = type(error)(*error.args)
    except Exception:  # an exception class with an unusual constructor: share it
        return error
    fresh.__cause__ = error.__cause__
    return fresh
