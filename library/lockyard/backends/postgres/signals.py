"""Release signals of the PostgreSQL backend: one LISTEN connection that wakes waiting acquires.

Release and break send ``pg_notify(channel, "<name>\\n<head owner>")`` in the same statement
(:mod:`.sql.locks`); this listener hands each payload to :class:`lockyard.signals.ReleaseListener`,
which wakes only the waiter it names and does the reconnecting. While it is disconnected,
waiters fall back to the polling of :mod:`lockyard.locks`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Awaitable, Callable

import asyncpg

from lockyard import signals

from .sql import PING

#: The LISTEN connection: the cap of its reconnect backoff, and how often an idle one is checked.
LISTEN_RETRY_MAX_S = 2.0
LISTEN_KEEPALIVE_S = 15.0


def release_channel(schema: str, prefix: str) -> str:
    """The NOTIFY channel of one store: short (identifiers stop at 63 bytes) and per prefix."""
    digest = hashlib.sha256(f"{schema}\0{prefix}".encode()).hexdigest()[:32]
    return f"lockyard_{digest}"


class ReleaseListener(signals.ReleaseListener):
    """One dedicated LISTEN connection per backend, started by the first waiter."""

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], channel: str) -> None:
        super().__init__("lockyard-pg-listen", retry_max_s=LISTEN_RETRY_MAX_S)
        self._connect = connect
        self.channel = channel
        #: The server process of the current LISTEN connection (tests terminate it).
        self.backend_pid: int | None = None

    async def listen(self) -> None:
        connection = await self._connect()
        try:
            lost = asyncio.Event()
            connection.add_termination_listener(lambda _connection: lost.set())
            await connection.add_listener(self.channel, self._on_notification)
            self.backend_pid = connection.get_server_pid()
            self.listening()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(LISTEN_KEEPALIVE_S):
                        await lost.wait()
                if not lost.is_set():
                    # An idle socket may be dead without a FIN (a partition): probe it.
                    async with asyncio.timeout(LISTEN_KEEPALIVE_S):
                        await connection.execute(PING)
        finally:
            connection.terminate()

    def _on_notification(self, connection: object, pid: int, channel: str, payload: object) -> None:
        self.deliver(str(payload))
