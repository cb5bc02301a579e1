"""What Lockyard emits on a real Redis server is exactly what docs/telemetry.md says.

One scenario makes every instrument record (store calls, a failing call, a contended lock, a
timeout, a lost hold, a broken lock, a dropped guard); the SDK's in-memory reader and span
exporter then hold what was emitted, and the documented tables are compared with it: names,
kinds, units, attribute keys, and the values the scenario implies.
"""

from __future__ import annotations

import asyncio
import gc
import re
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import Histogram, Sum
from opentelemetry.trace import SpanKind, StatusCode
from telemetry_sdk import PASSWORD, Sdk

import lockyard
from lockyard_dev.servers.redis import RedisServer

pytestmark = pytest.mark.redis

SECRET_VALUE = "top-secret-value"
BACKEND_ATTRIBUTES = {"lockyard.backend", "db.system.name", "server.address", "server.port"}
KINDS = {"histogram": Histogram, "counter": Sum, "updowncounter": Sum}


def documented_rows(request: pytest.FixtureRequest, first_header: str) -> list[list[str]]:
    text = (request.config.rootpath / Path("docs/telemetry.md")).read_text()
    rows, inside = [], False
    for line in text.splitlines():
        if line.startswith(f"| {first_header} |"):
            inside = True
            continue
        if inside and line.startswith("|---"):
            continue
        if inside and line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif inside:
            break
    assert rows, f"no table starting with '| {first_header} |' in docs/telemetry.md"
    return rows


def ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


async def scenario(ly: lockyard.Connection) -> dict[str, int]:
    """Every kind of event once or more; returns what the counters must show."""
    k = "ns:acme:state:k"
    await ly.store.set(k, SECRET_VALUE, ttl=60)
    assert await ly.store.get(k) == SECRET_VALUE
    with pytest.raises(lockyard.SerializationError):
        await ly.store.increment(k, 1)  # not a counter: a failing round trip

    plain = await ly.locks.acquire("plain", 30, timeout=1)
    assert await ly.locks.try_acquire("plain", 30) is None  # busy
    with pytest.raises(lockyard.LockTimeoutError):
        await ly.locks.acquire("plain", 30, timeout=0.2)  # timeout
    await plain.release()

    holder = await ly.locks.acquire("contended", 30, timeout=1)
    waiter = asyncio.create_task(ly.locks.acquire("contended", 30, timeout=10))
    await asyncio.sleep(0.2)
    await holder.release()
    await (await waiter).release()

    with pytest.raises(lockyard.LockLostError):
        async with ly.locks.hold("lost", 0.6):
            await ly.store.get(k)  # inside the hold span
            assert await ly.locks.break_lock("lost")
            await asyncio.sleep(5)  # cancelled when the loss is found

    dropped = await ly.locks.acquire("dropped", 30, timeout=1)
    del dropped
    gc.collect()
    await ly.locks.break_lock("dropped")  # the lock itself: gone too
    return {
        "lockyard.lock.acquisitions": 5,  # plain, holder, waiter, lost, dropped
        "lockyard.lock.timeouts": 1,
        "lockyard.lock.losses": 1,
        "lockyard.lock.breaks": 2,
        "lockyard.backend.errors": 1,
        "lockyard.lock.held": 0,
    }


@pytest.fixture
async def emitted(sdk: Sdk, redis_server: RedisServer) -> tuple[dict[str, Any], list[Any], str]:
    url = redis_server.url(f"tel{uuid.uuid4().hex[:8]}")
    async with lockyard.connect(url) as ly:
        try:
            expected = await scenario(ly)
        finally:
            await ly.store.purge()
    metrics = {
        metric.name: metric
        for resource in sdk.metrics.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    spans = list(sdk.spans.get_finished_spans())
    return {"metrics": metrics, "expected": expected}, spans, url


async def test_metrics_are_the_documented_ones(
    emitted: tuple[dict[str, Any], list[Any], str],
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
) -> None:
    found, _, _ = emitted
    metrics = found["metrics"]
    rows = documented_rows(request, "instrument")
    documented = {ticked(row[0])[0]: row for row in rows}
    assert set(metrics) == set(documented)
    for name, (_, kind, unit, attributes, _) in documented.items():
        metric = metrics[name]
        assert metric.unit == ticked(unit)[0], name
        assert isinstance(metric.data, KINDS[kind]), name
        if kind != "histogram":
            assert metric.data.is_monotonic == (kind == "counter"), name
        allowed = BACKEND_ATTRIBUTES | set(ticked(attributes))
        for point in metric.data.data_points:
            keys = set(point.attributes)
            assert keys <= allowed, (name, keys - allowed)
            assert point.attributes["db.system.name"] == "redis"
            assert point.attributes["lockyard.backend"] == "redis"
            assert point.attributes.get("server.address") == "127.0.0.1", (name, point)
            assert point.attributes["server.port"] == redis_server.port


async def test_the_counts_are_what_happened(emitted: tuple[dict[str, Any], list[Any], str]) -> None:
    found, _, _ = emitted
    metrics, expected = found["metrics"], found["expected"]
    for name, value in expected.items():
        total = sum(point.value for point in metrics[name].data.data_points)
        assert total == value, name
    contentions = metrics["lockyard.lock.contentions"].data.data_points
    assert sum(point.value for point in contentions) == 3  # busy, timeout, the waiter
    errors = metrics["lockyard.backend.errors"].data.data_points
    assert {(p.attributes["db.operation.name"], p.attributes["error.type"]) for p in errors} == {
        ("increment", "SerializationError")
    }
    losses = metrics["lockyard.lock.losses"].data.data_points
    assert {p.attributes["lockyard.lock.detected_by"] for p in losses} <= {"extend", "hold"}
    ends: dict[str, int] = defaultdict(int)
    for point in metrics["lockyard.lock.hold.duration"].data.data_points:
        ends[point.attributes["lockyard.lock.end"]] += point.count
    assert ends == {"released": 3, "lost": 1, "dropped": 1}
    waits: dict[str, int] = defaultdict(int)
    for point in metrics["lockyard.lock.wait.duration"].data.data_points:
        waits[point.attributes["lockyard.outcome"]] += point.count
    assert waits == {"acquired": 5, "busy": 1, "timeout": 1}
    operations = {
        point.attributes["db.operation.name"]
        for point in metrics["lockyard.operation.duration"].data.data_points
    }
    assert {"set", "get", "increment", "acquire", "try_acquire", "release", "extend"} <= operations


async def test_spans_are_the_documented_ones(
    emitted: tuple[dict[str, Any], list[Any], str],
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
) -> None:
    _, spans, _ = emitted
    rows = documented_rows(request, "span")
    documented = {ticked(row[0])[0]: row for row in rows}
    kinds = {"client": SpanKind.CLIENT, "internal": SpanKind.INTERNAL}
    seen = set()
    for span in spans:
        key = span.name if span.name in documented else "{db.operation.name}"
        seen.add(key)
        _, kind, attributes, _ = documented[key]
        assert span.kind == kinds[kind], span.name
        allowed = BACKEND_ATTRIBUTES | set(ticked(attributes))
        assert set(span.attributes) <= allowed, (span.name, set(span.attributes) - allowed)
        assert span.attributes["db.system.name"] == "redis"
        assert span.attributes["server.address"] == "127.0.0.1"
        assert span.attributes["server.port"] == redis_server.port
        if key == "{db.operation.name}":
            assert span.attributes["db.operation.name"] == span.name
            assert span.attributes["db.namespace"] == "0"
    assert seen == set(documented)


async def test_lock_spans_carry_name_and_token_and_nest_the_block(
    emitted: tuple[dict[str, Any], list[Any], str],
) -> None:
    _, spans, _ = emitted
    holds = {s.attributes["lockyard.lock.name"]: s for s in spans if s.name == "lockyard.lock.hold"}
    lost = holds["lost"]
    assert lost.attributes["lockyard.lock.end"] == "lost"
    assert lost.status.status_code == StatusCode.ERROR
    assert isinstance(lost.attributes["lockyard.lock.fencing_token"], int)
    inside = [s for s in spans if s.parent is not None and s.parent.span_id == lost.context.span_id]
    assert {s.name for s in inside} >= {"get", "break_lock"}
    acquired = [
        s
        for s in spans
        if s.name == "lockyard.lock.acquire" and s.attributes["lockyard.outcome"] == "acquired"
    ]
    assert len(acquired) == 5
    for span in acquired:
        children = [
            s for s in spans if s.parent is not None and s.parent.span_id == span.context.span_id
        ]
        assert children
        assert all(child.name == "acquire" for child in children)


async def test_nothing_emitted_repeats_a_value_a_password_or_the_url(
    emitted: tuple[dict[str, Any], list[Any], str],
) -> None:
    found, spans, url = emitted
    texts = [
        str(value)
        for metric in found["metrics"].values()
        for point in metric.data.data_points
        for value in point.attributes.values()
    ]
    for span in spans:
        texts += [str(value) for value in span.attributes.values()]
        texts += [str(event.attributes) for event in span.events]
    for secret in (SECRET_VALUE, PASSWORD, url, "redis://", "lockyard-app"):
        assert not [text for text in texts if secret in text], secret
