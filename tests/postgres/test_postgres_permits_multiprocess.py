"""Semaphores and read-write locks across processes, on the real PostgreSQL server: 32 tasks in 3
processes never hold more than N permits at once, and a writer never holds beside anyone."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from lockyard.testing.multiprocess import (
    check_rwlock,
    check_semaphore,
    contend,
    max_overlap,
    pause_fenced_holder,
)
from lockyard_dev.servers.postgres import PostgresServer

pytestmark = pytest.mark.postgres


async def test_semaphore_of_three_under_32_tasks_in_3_processes(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.url(prefix=f"mp{uuid.uuid4().hex[:8]}", schema="multiprocess")
    holds = await asyncio.to_thread(contend, url, "semaphore", "workers", limit=3)
    check_semaphore(holds, 3)
    assert len(holds) >= 32
    assert max_overlap(holds) == 3  # the permits really are shared, not handed out one by one


async def test_rwlock_under_32_tasks_in_3_processes(postgres_server: PostgresServer) -> None:
    url = postgres_server.url(prefix=f"mp{uuid.uuid4().hex[:8]}", schema="multiprocess")
    holds = await asyncio.to_thread(contend, url, "rwlock", "document")
    check_rwlock(holds)
    assert {h.mode for h in holds} == {"read", "write"}
    assert max_overlap([h for h in holds if h.mode == "read"]) > 1


async def test_a_paused_holder_writes_nothing_after_a_take_over(
    postgres_server: PostgresServer,
) -> None:
    """SIGSTOP a holder doing fenced increments past its lease, take the lock over, SIGCONT it:
    it learns it lost the lock, and none of its writes lands after the take-over."""
    url = postgres_server.url(prefix=f"mp{uuid.uuid4().hex[:8]}", schema="multiprocess")
    taken_over, final, lines = await asyncio.to_thread(
        pause_fenced_holder, url, "paused", "ns:acme:counter:paused"
    )
    assert taken_over >= 3
    assert final == taken_over
    assert lines[-1] == "lost:FenceLostError", lines
