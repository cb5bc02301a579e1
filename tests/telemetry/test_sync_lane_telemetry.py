"""Telemetry of blocking calls, in their calling thread (``lockyard.sync``'s direct lane) or on
the handle's loop thread.

An uncontended ``acquire``, a ``release`` and store operations run in the calling thread on
Redis; a contended ``acquire`` starts there and waits on the handle's loop; a ``hold()`` runs
on the loop. All must emit what the async API emits (issue 19, item 3), and their spans must be
children of the caller's own span, whichever thread the call ran in.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from typing import Any

import pytest
from opentelemetry import context, trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from telemetry_sdk import Sdk

import lockyard.sync
from lockyard_dev.servers.redis import RedisServer

pytestmark = pytest.mark.redis

PARENT = SpanContext(
    trace_id=0x5EED_0000_0000_0000_0000_0000_0000_0001,
    span_id=0x0000_0000_0000_0A11,
    is_remote=False,
    trace_flags=TraceFlags(TraceFlags.SAMPLED),
)


def totals(sdk: Sdk, name: str) -> float:
    return sum(point.value for point in sdk.points(name))


def test_blocking_calls_emit_what_async_ones_do_under_the_callers_span(
    sdk: Sdk, redis_server: RedisServer
) -> None:
    prefix = f"lane{uuid.uuid4().hex[:8]}"
    key = f"ns:{prefix}:state:1"
    waiter_got: list[int] = []
    with lockyard.sync.connect(redis_server.url(prefix)) as ly:
        token = context.attach(trace.set_span_in_context(NonRecordingSpan(PARENT)))
        try:
            ly.store.set(key, "v")
            assert ly.store.get(key) == "v"
            guard = ly.locks.acquire("lane", 30, timeout=5)

            def waiter() -> None:
                contended = ly.locks.acquire("lane", 30, timeout=20)
                waiter_got.append(contended.fencing_token)
                contended.release()

            thread = threading.Thread(target=waiter)
            thread.start()
            # The waiter's first attempt (in its thread) is refused; it then queues on the loop.
            deadline = time.monotonic() + 20
            while not ly.run(_queued) and time.monotonic() < deadline:
                time.sleep(0.02)
            guard.release()
            thread.join(30)
            assert not thread.is_alive()
            with ly.locks.hold("held-on-the-loop", 30):  # not in the lane: on the loop thread
                pass
        finally:
            context.detach(token)
            ly.store.purge()
    assert waiter_got == [guard.fencing_token + 1]

    assert totals(sdk, "lockyard.lock.acquisitions") == 3
    assert totals(sdk, "lockyard.lock.contentions") == 1
    assert totals(sdk, "lockyard.lock.held") == 0
    ends: dict[str, int] = defaultdict(int)
    for point in sdk.points("lockyard.lock.hold.duration"):
        ends[point.attributes["lockyard.lock.end"]] += point.count
    assert ends == {"released": 3}

    spans = list(sdk.spans.get_finished_spans())
    by_id = {span.context.span_id: span for span in spans}
    acquires = [span for span in spans if span.name == "lockyard.lock.acquire"]
    assert len(acquires) == 3
    (theirs,) = [span for span in acquires if span.parent is None]  # the waiter's thread
    # The caller's span is the parent of what its thread did, in the lane or on the loop
    # (the hold), store operations included.
    mine = [span for span in acquires if span is not theirs]
    assert {span.attributes["lockyard.lock.name"] for span in mine} == {"lane", "held-on-the-loop"}
    for span in mine:
        assert span.parent is not None
        assert span.parent.span_id == PARENT.span_id
    for name in ("set", "get", "release"):
        ops = [span for span in spans if span.name == name and span.parent is not None]
        assert any(op.parent.span_id == PARENT.span_id for op in ops if op.parent), name
    # The waiter's attempts, in its thread and then on the loop, all nest in its acquire span.
    attempts = [
        span
        for span in spans
        if span.name == "acquire"
        and span.parent is not None
        and span.parent.span_id == theirs.context.span_id
    ]
    assert len(attempts) >= 2
    assert all(span.context.trace_id == theirs.context.trace_id for span in attempts)
    assert by_id.get(theirs.context.span_id) is theirs


async def _queued(connection: Any) -> bool:
    """Whether a waiter has queued for lock ``lane`` (its queue exists on the server)."""
    locks = connection.locks
    queue = locks._layout.lock_keys("lane")[2]
    return bool(await locks._client.exists(queue))
