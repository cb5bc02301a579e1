"""Start each backend's real server for the benchmark, through ``lockyard.testing.servers``.

``started_server(backend)`` yields a Lockyard URL for a server started on a free loopback port
and stops it afterwards (start and stop run in a worker thread: they block). A backend whose
Lockyard module, driver or server launcher is missing, or whose server fails to start here,
raises ``BackendUnavailable`` with the reason, and the benchmark goes on without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import shutil
from collections.abc import AsyncIterator, Callable

BACKENDS = ("memory", "redis", "postgresql", "dynamodb")

#: backend -> its Lockyard module (checked before a server is started for nothing).
_BACKEND_MODULES = {
    "redis": "lockyard.backends.redis",
    "postgresql": "lockyard.backends.postgres",
    "dynamodb": "lockyard.backends.dynamodb",
}


class BackendUnavailable(RuntimeError):
    """This backend cannot be benchmarked here; the message says why."""


class _Server:
    """A started server: its Lockyard URL and how to stop it (and remove its files)."""

    def __init__(self, url: str, stop: Callable[[], None]) -> None:
        self.url = url
        self.stop = stop


def _start_redis() -> _Server:
    from lockyard.testing.servers.redis import RedisServer

    server = RedisServer().start()
    return _Server(server.url("bench"), server.remove)


def _start_postgres() -> _Server:
    from lockyard.testing.servers.postgres import PostgresServer

    server = PostgresServer()
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return _Server(server.url(sslmode="disable"), server.close)


def _start_moto() -> _Server:
    from lockyard.testing.servers.moto import MotoServer

    server = MotoServer()

    def stop() -> None:
        try:
            server.stop()
        finally:
            shutil.rmtree(server.workdir, ignore_errors=True)

    try:
        server.start()
    except BaseException:
        stop()
        raise
    return _Server(server.url("lockyard-bench", "bench"), stop)


_STARTERS: dict[str, Callable[[], _Server]] = {
    "redis": _start_redis,
    "postgresql": _start_postgres,
    "dynamodb": _start_moto,
}


@contextlib.asynccontextmanager
async def started_server(backend: str) -> AsyncIterator[str]:
    if backend == "memory":
        yield "memory://"
        return
    module = _BACKEND_MODULES[backend]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(f"{module} does not import: {exc}") from exc
    try:
        server = await asyncio.to_thread(_STARTERS[backend])
    except ImportError as exc:
        raise BackendUnavailable(f"its server launcher does not import: {exc}") from exc
    except Exception as exc:
        raise BackendUnavailable(f"its server did not start: {type(exc).__name__}: {exc}") from exc
    try:
        yield server.url
    finally:
        await asyncio.to_thread(server.stop)
