"""Helpers the PostgreSQL backend's own tests share (fixtures are in conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import lockyard
from lockyard.backends import postgres as pg


def backend_of(ly: lockyard.Connection) -> pg.PostgresBackend:
    """The PostgreSQL backend under a handle, for tests that look at its statements or pool."""
    backend = ly._backend
    assert isinstance(backend, pg.PostgresBackend)
    return backend


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Poll ``check`` (state in the server or another task, with no event to wait on)."""
    for _ in range(int(timeout / 0.01)):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not true after {timeout}s: {check}")
