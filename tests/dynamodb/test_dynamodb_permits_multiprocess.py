"""Semaphores and read-write locks across processes, on DynamoDB (moto): 32 tasks in 3
processes never hold more than N permits at once, and a writer never holds beside anyone.

moto serves one request at a time, about a hundred a second here, so each hold lasts 250 ms:
long enough for holds to overlap where the contract lets them."""

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
from lockyard_dev.servers.moto import MotoServer

pytestmark = pytest.mark.dynamodb


async def test_semaphore_of_three_under_32_tasks_in_3_processes(
    moto_server: MotoServer, shared_table: str
) -> None:
    url = moto_server.url(shared_table, f"mp{uuid.uuid4().hex[:8]}")
    # moto answers one request at a time: holds long enough for permits to overlap.
    holds = await asyncio.to_thread(
        contend, url, "semaphore", "workers", limit=3, duration_s=8, hold_s=0.25
    )
    check_semaphore(holds, 3)
    assert len(holds) >= 16
    # The permits really are shared, not handed out one by one. (Not "all 3 at once": moto
    # serves the waiters' polls one at a time, and on a loaded machine three grants may not
    # fall within one 0.25 s hold; it was 2 once, beside a benchmark.)
    assert max_overlap(holds) >= 2


async def test_rwlock_under_32_tasks_in_3_processes(
    moto_server: MotoServer, shared_table: str
) -> None:
    url = moto_server.url(shared_table, f"mp{uuid.uuid4().hex[:8]}")
    holds = await asyncio.to_thread(contend, url, "rwlock", "document", duration_s=8, hold_s=0.25)
    check_rwlock(holds)
    assert {h.mode for h in holds} == {"read", "write"}
    assert max_overlap([h for h in holds if h.mode == "read"]) > 1


async def test_a_paused_holder_writes_nothing_after_a_take_over(
    moto_server: MotoServer, shared_table: str
) -> None:
    """SIGSTOP a holder doing fenced increments past its lease, take the lock over, SIGCONT it:
    it learns it lost the lock, and none of its writes lands after the take-over."""
    url = moto_server.url(shared_table, f"mp{uuid.uuid4().hex[:8]}")
    taken_over, final, lines = await asyncio.to_thread(
        pause_fenced_holder, url, "paused", "ns:acme:counter:paused"
    )
    assert taken_over >= 3
    assert final == taken_over
    assert lines[-1] == "lost:FenceLostError", lines
