"""The whole contract on the memory backend, on virtual time: TTLs, leases and timeouts in
microseconds, so the executable specification runs in the fast tier (`make unit`)."""

from __future__ import annotations

import asyncio
import time

import pytest

from lockyard.backends.memory import MemoryBackend
from lockyard.config import parse_url
from lockyard.connection import Connection
from lockyard.testing import Conformance, ConnectFactory
from lockyard.testing.virtual_time import LoopClock


class TestMemoryConformanceOnVirtualTime(Conformance):
    @pytest.fixture
    def lockyard_connect(self) -> ConnectFactory:
        async def connect(prefix: str) -> Connection:
            config = parse_url(f"memory://?prefix={prefix}")
            return Connection(MemoryBackend(config, clock=LoopClock()), config)  # type: ignore[arg-type]

        return connect


async def test_the_loop_is_virtual_so_a_long_lease_expires_without_waiting() -> None:
    config = parse_url("memory://?prefix=virtual")
    ly = Connection(MemoryBackend(config, clock=LoopClock()), config)  # type: ignore[arg-type]
    try:
        started_real = time.perf_counter()
        guard = await ly.locks.acquire("long", ttl=3600, timeout=1)
        await asyncio.sleep(3601)
        assert await ly.locks.try_acquire("long", ttl=5) is not None
        assert not await guard.is_held()
        assert time.perf_counter() - started_real < 5
    finally:
        await ly.close()
