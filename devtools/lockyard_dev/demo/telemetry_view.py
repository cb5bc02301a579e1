"""The demo's telemetry view: what Lockyard emits through OpenTelemetry, and the operator's
per-store gauges, printed as a short table every few seconds.

    async with showing_telemetry(metrics_url, namespace, store, every=6.0):
        ...  # the workload runs in this process

An OpenTelemetry SDK ``MeterProvider`` with an in-memory reader is handed to Lockyard alone
(``lockyard.telemetry.configure``: the process's global providers stay untouched). Each table
reads it (lock acquisitions and contentions, wait p50, locks held, round-trip p50 by operation)
and scrapes the operator's ``/metrics`` for the store's ``lockyard_operator_*`` gauges. The SDK
is a dependency of ``lockyard-dev`` only, never of the ``lockyard`` wheel.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterable
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from lockyard import telemetry
from lockyard._tasks import stop_task
from lockyard.telemetry import names

#: The operator's series shown for the demo's store.
OPERATOR_GAUGES = (
    "lockyard_operator_locks_held",
    "lockyard_operator_lease_mirror_lag_seconds",
    "lockyard_operator_locks_unmirrored",
)
#: Round trips shown, in this order, when they happened.
OPERATIONS = ("acquire", "try_acquire", "extend", "release")


def quantile(point: HistogramDataPoint, q: float) -> float | None:
    """The ``q`` quantile of a histogram point, interpolated inside its bucket (the SDK keeps
    bucket counts, not samples); the outer buckets end at the observed min and max."""
    if not point.count:
        return None
    rank = q * point.count
    bounds = [point.min, *point.explicit_bounds, point.max]
    seen = 0
    for index, count in enumerate(point.bucket_counts):
        if count and seen + count >= rank:
            low = max(bounds[index], point.min)
            high = min(bounds[index + 1], point.max)
            return low + (high - low) * (rank - seen) / count
        seen += count
    return float(point.max)


def merged(points: Iterable[HistogramDataPoint]) -> HistogramDataPoint | None:
    """One histogram point summing ``points`` (same buckets: one instrument's attribute sets)."""
    points = list(points)
    if not points:
        return None
    first = points[0]
    return HistogramDataPoint(
        attributes={},
        start_time_unix_nano=min(p.start_time_unix_nano for p in points),
        time_unix_nano=max(p.time_unix_nano for p in points),
        count=sum(p.count for p in points),
        sum=sum(p.sum for p in points),
        bucket_counts=[sum(c) for c in zip(*(p.bucket_counts for p in points), strict=True)],
        explicit_bounds=first.explicit_bounds,
        min=min(p.min for p in points),
        max=max(p.max for p in points),
    )


def milliseconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


class TelemetryView:
    """The SDK's reader, and the table built from it and from the operator's scrape."""

    def __init__(self, operator_metrics_url: str | None, namespace: str, store: str) -> None:
        self.operator_metrics_url = operator_metrics_url
        self.namespace = namespace
        self.store = store
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])

    def start(self) -> None:
        telemetry.configure(meter_provider=self.provider)

    def stop(self) -> None:
        telemetry.configure()
        self.provider.shutdown()

    def points(self) -> dict[str, list[Any]]:
        """Every data point, by instrument name (cumulative since ``start``)."""
        found: dict[str, list[Any]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found

    def library_rows(self) -> list[tuple[str, str]]:
        points = self.points()

        def total(name: str) -> str:
            return f"{sum(p.value for p in points.get(name, [])):g}"

        waits = merged(points.get(names.LOCK_WAIT_DURATION, []))
        wait = "-" if waits is None else f"{milliseconds(quantile(waits, 0.5))} (n={waits.count})"
        by_operation: dict[str, list[HistogramDataPoint]] = {}
        for point in points.get(names.OPERATION_DURATION, []):
            operation = str(point.attributes.get(names.DB_OPERATION_NAME))
            by_operation.setdefault(operation, []).append(point)
        latency = ", ".join(
            f"{operation} {milliseconds(quantile(point, 0.5))}"
            for operation in OPERATIONS
            if (point := merged(by_operation.get(operation, []))) is not None
        )
        return [
            (names.LOCK_ACQUISITIONS, total(names.LOCK_ACQUISITIONS)),
            (names.LOCK_CONTENTIONS, total(names.LOCK_CONTENTIONS)),
            (f"{names.LOCK_WAIT_DURATION} p50", wait),
            (names.LOCKS_HELD, total(names.LOCKS_HELD)),
            (f"{names.OPERATION_DURATION} p50", latency or "-"),
        ]

    async def operator_lines(self) -> list[str]:
        """The store's gauge lines from the operator's ``/metrics``, or why there are none."""
        if self.operator_metrics_url is None:
            return ["(the operator's metrics endpoint is off)"]
        try:
            text = await asyncio.to_thread(_get, self.operator_metrics_url)
        except (OSError, urllib.error.URLError) as exc:
            return [f"(scraping {self.operator_metrics_url} failed: {exc})"]
        labels = f'{{namespace="{self.namespace}",name="{self.store}"}}'
        lines = [
            line
            for line in text.splitlines()
            if any(line.startswith(gauge + labels) for gauge in OPERATOR_GAUGES)
        ]
        return lines or ["(no series yet: the operator's first probe and reaper pass are due)"]

    async def table(self, title: str) -> str:
        rows = self.library_rows()
        width = max(len(name) for name, _ in rows)
        lines = [f"{title}: Lockyard's OpenTelemetry metrics (SDK, in-memory reader)"]
        lines += [f"  {name:<{width}}  {value}" for name, value in rows]
        lines.append(f"the operator's /metrics for {self.namespace}/{self.store}:")
        lines += [f"  {line}" for line in await self.operator_lines()]
        return "\n".join(lines)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


@contextlib.asynccontextmanager
async def showing_telemetry(
    operator_metrics_url: str | None, namespace: str, store: str, *, every: float
) -> AsyncIterator[TelemetryView]:
    """Print the table every ``every`` seconds while the block runs, and once at its end."""
    view = TelemetryView(operator_metrics_url, namespace, store)
    view.start()

    async def show_every() -> None:
        while True:
            await asyncio.sleep(every)
            print("\n" + await view.table("telemetry"), flush=True)

    task = asyncio.create_task(show_every(), name="demo-telemetry-view")
    try:
        yield view
    finally:
        await stop_task(task)  # not suppress(CancelledError): a Ctrl-C meanwhile would be lost
        print("\n" + await view.table("telemetry at the end"), flush=True)
        view.stop()
