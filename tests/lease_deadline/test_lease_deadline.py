"""A holder never runs past its lease, whatever the operation timeout and however the backend
misbehaves (docs/contract.md, section 4: loss at the local deadline).

With the default 5 s operation timeout, a ``hold(ttl=2)`` whose server stops answering (SIGSTOP)
or whose traffic is delayed longer than the lease must set ``lost`` and cancel its block before
``guard.lease_deadline`` (the start of the last confirmed acquiring or renewing call plus the
TTL, on the holder's own clock), when another process could already hold the lock. Each
networked backend, on its real server; the delayed traffic goes through a real TCP relay.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from delaying_relay import DelayingRelay
from frozen_servers import ALL, RELAYED, Target

import lockyard
from lockyard import LockLostError
from lockyard.elections import Leadership
from lockyard.locks import LockGuard, loss_margin_s
from lockyard.testing.fixtures import unique_prefix

TTL_S = 2.0
#: Traffic delay beyond the lease: every renewal's answer arrives after the lease has ended.
DELAY_S = 2 * TTL_S


async def _run_past_the_lease(
    ly: lockyard.Connection, trouble: Callable[[], None]
) -> tuple[LockGuard, float, float]:
    """Hold a lock, cause ``trouble`` at once, and let the block try to run for 10 TTLs.

    Returns the guard, when the trouble began and when the block was cancelled.
    """
    name = f"deadline-{uuid.uuid4().hex[:8]}"
    began = cancelled_at = 0.0
    guard: LockGuard | None = None
    with pytest.raises(LockLostError):
        async with ly.locks.hold(name, ttl=TTL_S) as guard:
            trouble()
            began = time.monotonic()
            try:
                await asyncio.sleep(10 * TTL_S)
            finally:
                cancelled_at = time.monotonic()
    assert guard is not None
    return guard, began, cancelled_at


def _judge(label: str, guard: LockGuard, began: float, cancelled_at: float) -> None:
    before_deadline = guard.lease_deadline - cancelled_at
    print(
        f"\n[{label}] block cancelled {cancelled_at - began:.3f} s after the trouble began, "
        f"{before_deadline * 1000:.0f} ms before the local lease deadline "
        f"(margin {loss_margin_s(TTL_S) * 1000:.0f} ms)"
    )
    assert guard.lost.is_set()
    # Never past the lease: this is the point of the test.
    assert cancelled_at < guard.lease_deadline
    # And not needlessly early: at the margin, give or take a loaded machine's scheduling.
    assert before_deadline <= loss_margin_s(TTL_S) + 0.25


@pytest.mark.parametrize("target", ALL, indirect=True)
async def test_a_stopped_server_cannot_keep_a_block_past_its_lease(target: Target) -> None:
    server = target.server
    async with lockyard.connect(target.url(unique_prefix(), None)) as ly:
        assert ly.config.operation_timeout == 5  # the default the issue was found with
        frozen = False

        def freeze() -> None:
            nonlocal frozen
            server.freeze()
            frozen = True

        try:
            guard, began, cancelled_at = await _run_past_the_lease(ly, freeze)
        finally:
            if frozen:
                server.thaw()
        _judge(f"{ly.backend} SIGSTOP", guard, began, cancelled_at)
        # Once thawed, the lock is free again after its lease, for anyone.
        again = await ly.locks.acquire(guard.name, 5, timeout=2 * TTL_S)
        assert again.fencing_token > guard.fencing_token
        await again.release()


@pytest.fixture
def relay(target: Target) -> Iterator[DelayingRelay]:
    assert target.upstream_port is not None
    with DelayingRelay(target.upstream_port) as relay:
        yield relay


@pytest.mark.parametrize("target", RELAYED, indirect=True)
async def test_a_delayed_client_cannot_keep_a_block_past_its_lease(
    target: Target, relay: DelayingRelay
) -> None:
    async with lockyard.connect(target.url(unique_prefix(), relay.port)) as ly:
        assert ly.config.operation_timeout == 5

        def slow_down() -> None:
            relay.delay = DELAY_S

        try:
            guard, began, cancelled_at = await _run_past_the_lease(ly, slow_down)
        finally:
            relay.delay = 0.0
        _judge(f"{ly.backend} delayed {DELAY_S:g} s", guard, began, cancelled_at)


@pytest.mark.parametrize("target", ALL, indirect=True)
async def test_a_leader_whose_server_stops_loses_before_its_lease_ends(target: Target) -> None:
    """The same for a leadership: its block is cancelled before the lease ends, and once the
    server answers again the candidate that waited (on another connection) leads, with a
    higher term."""
    server = target.server
    prefix = unique_prefix()
    name = f"deadline-{uuid.uuid4().hex[:8]}"
    async with (
        lockyard.connect(target.url(prefix, None)) as ly,
        lockyard.connect(target.url(prefix, None)) as other,
    ):
        leadership: Leadership | None = None
        successor: asyncio.Future[Leadership] | None = None
        began = cancelled_at = 0.0
        frozen = False
        try:
            with pytest.raises(LockLostError):
                async with ly.elections.campaign(name, "stalled", ttl=TTL_S) as leadership:
                    successor = asyncio.ensure_future(other.elections.campaign(name, "next", 30))
                    await asyncio.sleep(0.2)  # the successor is queued
                    server.freeze()
                    frozen = True
                    began = time.monotonic()
                    try:
                        await asyncio.sleep(10 * TTL_S)
                    finally:
                        cancelled_at = time.monotonic()
        finally:
            if frozen:
                server.thaw()
        assert leadership is not None
        assert successor is not None
        _judge(f"{ly.backend} SIGSTOP, leader", leadership.guard, began, cancelled_at)
        after = await asyncio.wait_for(successor, 4 * TTL_S)
        assert after.term > leadership.term
        assert await after.resign()
