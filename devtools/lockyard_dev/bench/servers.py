"""Start each backend's real server for the benchmark, through :mod:`lockyard_dev.servers.launch`.

``started_server(backend)`` yields a Lockyard URL for a server started on a free loopback port
and stops it afterwards (start and stop run in a worker thread: they block). A backend whose
Lockyard module, driver or server launcher is missing, or whose server fails to start here,
raises ``BackendUnavailable`` with the reason, and the benchmark goes on without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from lockyard_dev.servers.launch import launch

BACKENDS = ("memory", "redis", "redis-cluster", "postgresql", "dynamodb")

#: backend -> its Lockyard module (checked before a server is started for nothing).
_BACKEND_MODULES = {
    "redis": "lockyard.backends.redis",
    "redis-cluster": "lockyard.backends.redis",
    "postgresql": "lockyard.backends.postgres",
    "dynamodb": "lockyard.backends.dynamodb",
}


class BackendUnavailable(RuntimeError):
    """This backend cannot be benchmarked here; the message says why."""


# The benchmark's URLs: the backend's default operation timeout (moto's excepted, below), and
# its own prefix (PostgreSQL: the default one, which the raw baselines share) and DynamoDB table.
def _redis_url(server: Any) -> str:
    url: str = server.url("bench")
    return url


def _postgres_url(server: Any) -> str:
    url: str = server.url(sslmode="disable")
    return url


#: moto serves one request at a time, so 64 concurrent 20-item scans queue for longer than the
#: default 5 s operation timeout (each pass of the 2026-12-07 report lost its concurrent scans to
#: it). The bench measures throughput and latency; the queue is moto's, and the report says so.
MOTO_OPERATION_TIMEOUT_S = 60


def _dynamodb_url(server: Any) -> str:
    url: str = server.url(
        "lockyard-bench", "bench", operation_timeout=f"{MOTO_OPERATION_TIMEOUT_S}"
    )
    return url


_URLS: dict[str, Callable[[Any], str]] = {
    "redis": _redis_url,
    "redis-cluster": _redis_url,
    "postgresql": _postgres_url,
    "dynamodb": _dynamodb_url,
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
        launched = await asyncio.to_thread(launch, backend)
    except ImportError as exc:
        raise BackendUnavailable(f"its server launcher does not import: {exc}") from exc
    except Exception as exc:
        raise BackendUnavailable(f"its server did not start: {type(exc).__name__}: {exc}") from exc
    try:
        yield _URLS[backend](launched.server)
    finally:
        await asyncio.to_thread(launched.close)
