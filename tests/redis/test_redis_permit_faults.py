"""A semaphore on Redis keeps its limit when holders are SIGKILLed or SIGSTOPped past their
leases and when the server crashes and restarts (AOF with ``appendfsync always``, so an
acknowledged permit survives the crash)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from lockyard.testing.multiprocess import HolderFaults, check_semaphore, contend, max_overlap
from lockyard_dev.servers.redis import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

TTL_S = 2.0


async def test_semaphore_keeps_its_limit_through_killed_and_paused_holders_and_a_crash(
    tmp_path: Path,
) -> None:
    with RedisServer(
        tmp_path / "redis", extra_config=("appendonly yes", "appendfsync always")
    ) as redis:

        def crash_and_restart() -> None:
            redis.kill()
            redis.start()

        faults = HolderFaults(TTL_S, restart=crash_and_restart)
        url = redis.url(f"faults{uuid.uuid4().hex[:8]}", operation_timeout="1")
        holds = await asyncio.to_thread(
            contend, url, "semaphore", "workers", limit=3, tasks=12, duration_s=10.0,
            ttl_s=TTL_S, faults=faults,
        )  # fmt: skip
    check_semaphore(holds, 3)
    print(
        f"\n{len(holds)} permits held, at most {max_overlap(holds)} at once; "
        f"{sum(h.entered > faults.killed_at + TTL_S for h in holds)} after the killed "
        "holder's leases ran out"
    )
    # The killed holder's permits came back by expiry alone, and work went on after the crash.
    assert [h for h in holds if h.entered > faults.killed_at + TTL_S]
    assert [h for h in holds if h.entered > faults.restarted_at]
