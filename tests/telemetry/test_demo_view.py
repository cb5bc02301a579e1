"""The demo's telemetry view reads what Lockyard emits through the SDK and the operator's gauges
from a real metrics endpoint (devtools/lockyard_dev/demo/telemetry_view.py)."""

from __future__ import annotations

import asyncio

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

import lockyard
from lockyard_dev.demo.telemetry_view import TelemetryView, merged, quantile, showing_telemetry
from lockyard_dev.servers.process import free_port
from lockyard_operator.metrics import Metrics, MetricsServer


def histogram(values: list[float], bounds: tuple[float, ...]) -> HistogramDataPoint:
    """The SDK's own histogram point for ``values`` (buckets ``bounds``)."""
    reader = InMemoryMetricReader()
    view = View(instrument_name="h", aggregation=ExplicitBucketHistogramAggregation(bounds))
    provider = MeterProvider(metric_readers=[reader], views=[view])
    recorder = provider.get_meter("test").create_histogram("h")
    for value in values:
        recorder.record(value)
    data = reader.get_metrics_data()
    assert data is not None
    point = data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0]
    provider.shutdown()
    assert isinstance(point, HistogramDataPoint)
    return point


def test_quantile_interpolates_inside_the_bucket_and_stays_within_min_and_max() -> None:
    bounds = (1.0, 2.0, 4.0, 8.0)
    # 10 values in (2, 4]: the median is half way through that bucket, at 3.
    point = histogram([1.5] * 5 + [3.0] * 10 + [5.0] * 5, bounds)
    assert quantile(point, 0.5) == pytest.approx(3.0)
    # The outer buckets end at the observed extremes, not at 0 or infinity.
    assert quantile(histogram([0.5, 0.6], bounds), 0.0) == pytest.approx(0.5)
    assert quantile(histogram([20.0, 30.0], bounds), 1.0) == pytest.approx(30.0)
    one = histogram([3.0], bounds)
    assert quantile(one, 0.5) == pytest.approx(3.0)
    both = merged([one, histogram([5.0, 6.0], bounds)])
    assert both is not None
    assert (both.count, both.min, both.max) == (3, 3.0, 6.0)
    assert merged([]) is None


async def test_the_table_shows_the_workloads_metrics_and_the_operators_gauges() -> None:
    metrics = Metrics()
    metrics.locks_held.set("ns", "orders", value=2)
    metrics.mirror_pass("ns", "orders", unmirrored=0, lag=0.004)
    metrics.locks_held.set("ns", "other", value=9)
    metrics.mirror_pass("ns", "other", unmirrored=9, lag=9.0)
    port = free_port()
    server = MetricsServer(metrics, port, host="127.0.0.1")
    await server.start()
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        async with (
            showing_telemetry(url, "ns", "orders", every=3600) as view,
            lockyard.connect("memory://") as ly,
        ):
            first = await ly.locks.acquire("a", 30, timeout=1)
            waiter = asyncio.create_task(ly.locks.acquire("a", 30, timeout=5))
            await asyncio.sleep(0.05)
            await first.release()
            second = await waiter
            held = await ly.locks.acquire("b", 30, timeout=1)
            rows = dict(view.library_rows())
            table = await view.table("now")
            await second.release()
            await held.release()
    finally:
        await server.stop()
    assert rows["lockyard.lock.acquisitions"] == "3"
    assert rows["lockyard.lock.contentions"] == "1"
    assert rows["lockyard.lock.held"] == "2"
    assert rows["lockyard.lock.wait.duration p50"].endswith("(n=3)")
    assert rows["lockyard.operation.duration p50"].startswith("acquire ")
    assert "release " in rows["lockyard.operation.duration p50"]
    assert 'lockyard_operator_locks_held{namespace="ns",name="orders"} 2' in table
    assert 'lockyard_operator_lease_mirror_lag_seconds{namespace="ns",name="orders"} 0.004' in table
    assert 'name="other"' not in table


async def test_an_unreachable_operator_is_said_not_raised() -> None:
    view = TelemetryView(f"http://127.0.0.1:{free_port()}/metrics", "ns", "orders")
    view.start()
    try:
        lines = await view.operator_lines()
    finally:
        view.stop()
    assert len(lines) == 1
    assert lines[0].startswith("(scraping http://127.0.0.1:")
    assert "failed" in lines[0]
