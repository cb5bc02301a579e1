"""A semaphore on DynamoDB keeps its limit when holders are SIGKILLed or SIGSTOPped past their
leases. (No restart here: moto keeps its tables in memory, so a restarted moto is an empty
DynamoDB; the real service's durability is AWS's.)"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from lockyard.testing.multiprocess import HolderFaults, check_semaphore, contend, max_overlap
from lockyard_dev.servers.moto import MotoServer

pytestmark = [pytest.mark.dynamodb, pytest.mark.slow]

TTL_S = 2.0


async def test_semaphore_keeps_its_limit_through_killed_and_paused_holders(
    moto_server: MotoServer, shared_table: str
) -> None:
    faults = HolderFaults(TTL_S)
    url = moto_server.url(shared_table, f"faults{uuid.uuid4().hex[:8]}", operation_timeout="2")
    holds = await asyncio.to_thread(
        contend, url, "semaphore", "workers", limit=3, tasks=9, duration_s=8.0,
        ttl_s=TTL_S, faults=faults,
    )  # fmt: skip
    check_semaphore(holds, 3)
    print(
        f"\n{len(holds)} permits held, at most {max_overlap(holds)} at once; "
        f"{sum(h.entered > faults.killed_at + TTL_S for h in holds)} after the killed "
        "holder's leases ran out"
    )
    # The killed holder's permits came back by expiry alone.
    assert [h for h in holds if h.entered > faults.killed_at + TTL_S]
