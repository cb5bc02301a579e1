"""A calling thread's own blocking socket to the server: the I/O of ``lockyard.sync``'s direct
lane (:mod:`lockyard.lanes`).

What the auto-pipelined connections do, for one caller at a time:

- the same bytes (:func:`.packing.pack`), the same reply reader (:func:`.pipelined.reader`, so
  error replies are redis-py's exception classes), the same handshake;
- the same errors: a socket that fails raises redis-py's ``ConnectionError``
  (``BackendConnectionError`` once translated); a read that times out raises the built-in
  ``TimeoutError``, which the runner reports as the operation timeout, word for word as on the
  loop;
- after any failure the socket is closed (a late reply must never answer the next request) and
  the next call opens a new one, so a server restart costs each thread at most one failed call.

The socket's timeouts are the operation timeout (:meth:`BlockingConnection._bound`): they
bound each call, as the runner's watchdog does on the loop (a lane runs no task, so no
watchdog).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from redis import exceptions as rx

from .packing import pack
from .pipelined import reader

if TYPE_CHECKING:
    from .autopipeline import ConnectSettings

#: Bytes asked of the socket per read (a reply larger than this takes several).
READ_SIZE = 64 * 1024


class BlockingConnection:
    """One socket of one thread; see the module docstring."""

    __slots__ = (
        "__weakref__",
        "_address",
        "_ended",
        "_finalizer",
        "_reader",
        "_settings",
        "_socket",
    )

    def __init__(self, settings: ConnectSettings, address: tuple[str, int]) -> None:
        self._settings = settings
        self._address = address
        self._socket: socket.socket | None = None
        self._reader = reader()
        self._finalizer: weakref.finalize[Any, BlockingConnection] | None = None
        self._ended = False

    def call(self, args: tuple[Any, ...]) -> Any:
        """Send one command and return its reply (an error reply raised)."""
        sock = self._socket or self._connect()
        try:
            sock.sendall(pack(args))
            reply = self._read(sock)
        except BaseException as exc:  # whatever it was, the reply stream is no longer known
            self.close()
            failure = self._failure(exc)
            if failure is exc:
                raise
            raise failure from exc
        if isinstance(reply, rx.RedisError):
            raise reply
        return reply

    def _read(self, sock: socket.socket) -> Any:
        read = self._reader
        reply = read.gets()
        if reply is not False:
            return reply
        timeout = self._settings.connect_timeout
        # The socket's timeout bounds each read; a reply in several reads gets what is left of
        # the operation timeout for the later ones (setting it costs a system call: only then).
        deadline = None
        while True:
            data = sock.recv(READ_SIZE)
            if not data:
                raise ConnectionResetError("Connection closed by server.")
            read.feed(data)
            reply = read.gets()
            if reply is not False:
                break
            if deadline is None:
                deadline = time.monotonic() + timeout
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            self._bound(sock, remaining)
        if deadline is not None:
            self._bound(sock, timeout)
        return reply

    def _bound(self, sock: socket.socket, seconds: float) -> None:
        """Make every send and read on ``sock`` fail after ``seconds``.

        A plain socket stays blocking, its timeouts kept by the kernel (``SO_RCVTIMEO``,
        ``SO_SNDTIMEO``): Python's own socket timeout polls before every send and read, a system
        call more per round trip. TLS keeps Python's (OpenSSL reads a kernel timeout as
        "want read").
        """
        if self._settings.tls is not None:
            sock.settimeout(seconds)
            return
        sock.settimeout(None)
        micros = max(round(seconds * 1e6), 1)  # 0 would mean no timeout at all
        timeval = struct.pack("ll", micros // 1_000_000, micros % 1_000_000)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)

    def _failure(self, exc: BaseException) -> BaseException:
        host, port = self._address
        if isinstance(exc, TimeoutError):
            return exc  # the operation timeout, which the runner reports as on the loop
        if isinstance(exc, BlockingIOError):  # the kernel's timeout (_bound): the same
            return TimeoutError(f"no reply from {host}:{port} within the operation timeout")
        if isinstance(exc, OSError):
            return rx.ConnectionError(f"Error while reading from {host}:{port}: {exc}")
        return exc  # an interrupt (KeyboardInterrupt), or the reader's InvalidResponse

    def _connect(self) -> socket.socket:
        if self._ended:
            raise rx.ConnectionError("the Redis handle was closed")
        settings = self._settings
        host, port = self._address
        try:
            sock = socket.create_connection(self._address, timeout=settings.connect_timeout)
        except TimeoutError:
            raise rx.TimeoutError(f"Timeout connecting to {host}:{port}") from None
        except OSError as exc:
            error = rx.ConnectionError(f"Error {exc.errno} connecting to {host}:{port}. {exc}.")
            raise error from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if settings.tls is not None:
                server_hostname = host if settings.check_hostname else None
                sock = settings.tls.wrap_socket(sock, server_hostname=server_hostname)
            self._bound(sock, settings.connect_timeout)
            self._socket = sock
            self._finalizer = weakref.finalize(self, sock.close)
            self._handshake(sock)
        except BaseException as exc:
            self.close()
            failure = self._failure(exc)
            if failure is exc:
                raise
            raise failure from exc
        return sock

    def _handshake(self, sock: socket.socket) -> None:
        commands = self._settings.handshake()
        if not commands:
            return
        sock.sendall(b"".join(pack(command) for command in commands))
        replies = [self._read(sock) for _ in commands]
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply

    def end(self) -> None:
        """Close for good (the handle closed): a later call fails instead of reconnecting."""
        self._ended = True
        self.close()

    def close(self) -> None:
        sock, self._socket = self._socket, None
        self._reader = reader()
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if sock is not None:
            # shutdown() first: a thread blocked reading this socket wakes (close() alone
            # would leave it blocked when another thread closes the handle).
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class ThreadConnections:
    """The blocking connections of one handle's pipeline, one per calling thread.

    A thread's connection is closed when the handle closes, or when the thread ends (it is then
    collected). In a forked child the parent's are left alone: a new handle opens its own.
    """

    def __init__(self, settings: ConnectSettings, address: tuple[str, int]) -> None:
        self._settings = settings
        self._address = address
        self._local = threading.local()
        self._pid = os.getpid()
        self._all: weakref.WeakSet[BlockingConnection] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = False

    def mine(self) -> BlockingConnection:
        """The calling thread's connection (created on its first call)."""
        try:
            connection: BlockingConnection = self._local.connection
        except AttributeError:
            connection = self._new()
        return connection

    def _new(self) -> BlockingConnection:
        if self._closed or os.getpid() != self._pid:
            raise rx.ConnectionError("the Redis handle was closed")
        connection = BlockingConnection(self._settings, self._address)
        with self._lock:
            self._all.add(connection)
        self._local.connection = connection
        return connection

    def close(self) -> None:
        """Close every thread's connection (a call in flight on one fails)."""
        self._closed = True
        with self._lock:
            connections = list(self._all)
        for connection in connections:
            connection.end()
