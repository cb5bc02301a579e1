"""What telemetry costs: Redis lock cycles and store ``get`` with the hooks absent, present
without an SDK, and present with one (issue 19, item 4: no SDK must run at >= 0.97x).

``absent`` is the core with its telemetry hooks taken out, in the same process: every hooked
method is swapped for the function it wraps (``__wrapped__``; the runner's ``_call``), which
is the code as it was before the hooks. ``off`` is Lockyard as shipped with no provider
installed. ``sdk`` installs the OpenTelemetry SDK (an in-memory metric reader and a batch span
processor whose exporter drops the spans: the cost of recording, not of shipping).

The variants run in short rounds, in a rotating order, on one connection to one server, and each
round's rates are compared with the same round's ``absent`` rate, so drifting machine load hits
both sides of a ratio alike. Prints a Markdown table; ``--json`` writes the raw figures.

    python -m lockyard_dev.bench.telemetry_cost            # starts its own redis-server
    python -m lockyard_dev.bench.telemetry_cost --url redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import lockyard
import lockyard.telemetry
from lockyard.locks import DistributedLock, LockGuard, LockHold
from lockyard.operations import OperationRunner

VARIANTS = ("absent", "off", "sdk")
#: (class, attribute) of every telemetry hook in the core.
HOOKED: tuple[tuple[type, str], ...] = (
    (DistributedLock, "try_acquire"),
    (DistributedLock, "acquire"),
    (DistributedLock, "break_lock"),
    (LockGuard, "extend"),
    (LockGuard, "release"),
    (LockHold, "__aenter__"),
    (LockHold, "__aexit__"),
)


class _Dropping(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


@contextlib.contextmanager
def hooks_absent() -> Iterator[None]:
    """The core as if the hooks had never been written (see the module docstring)."""
    saved: list[tuple[type, str, Any]] = []
    for cls, name in HOOKED:
        hooked = cls.__dict__[name]
        saved.append((cls, name, hooked))
        setattr(cls, name, hooked.__wrapped__)
    saved.append((OperationRunner, "__call__", OperationRunner.__dict__["__call__"]))
    OperationRunner.__call__ = OperationRunner._call  # type: ignore[method-assign]
    try:
        yield
    finally:
        for cls, name, hooked in saved:
            setattr(cls, name, hooked)


@contextlib.contextmanager
def variant(name: str, sdk: tuple[MeterProvider, TracerProvider]) -> Iterator[None]:
    if name == "absent":
        with hooks_absent():
            yield
    elif name == "sdk":
        lockyard.telemetry.configure(*sdk)
        try:
            yield
        finally:
            lockyard.telemetry.configure()
    else:
        yield


async def _rate(op: Callable[[], Awaitable[object]], n: int) -> tuple[float, float]:
    """Operations per second, and this process's CPU microseconds per operation."""
    cpu, started = time.process_time(), time.perf_counter()
    for _ in range(n):
        await op()
    return n / (time.perf_counter() - started), (time.process_time() - cpu) / n * 1e6


Rates = dict[str, dict[str, list[tuple[float, float]]]]


async def measure(url: str, rounds: int, n: int) -> Rates:
    """``{workload: {variant: [(ops/s, CPU us/op) per round]}}``."""
    reader = InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(_Dropping()))
    sdk = (MeterProvider(metric_readers=[reader]), tracer_provider)
    rates: Rates = {
        "lock cycle": {v: [] for v in VARIANTS},
        "store get": {v: [] for v in VARIANTS},
    }
    async with lockyard.connect(url) as ly:
        key = "bench:telemetry:state:k"
        await ly.store.set(key, "v")
        lock = f"telemetry-{uuid.uuid4().hex[:6]}"

        async def cycle() -> None:
            guard = await ly.locks.acquire(lock, 30, 30)
            await guard.release()

        async def get() -> object:
            return await ly.store.get(key)

        workloads = {"lock cycle": cycle, "store get": get}
        for _, op in workloads.items():  # warm up every path once
            for name in VARIANTS:
                with variant(name, sdk):
                    await _rate(op, max(10, n // 10))
        for number in range(rounds):
            order = VARIANTS[number % 3 :] + VARIANTS[: number % 3]
            for workload, op in workloads.items():
                for name in order:
                    with variant(name, sdk):
                        rates[workload][name].append(await _rate(op, n))
        await ly.store.purge()
    tracer_provider.shutdown()
    sdk[0].shutdown()
    return rates


def summary(rates: Rates) -> str:
    """Wall-clock rates and their per-round ratios to ``absent``; the client's CPU per
    operation, and the rate ``absent`` would have with only that CPU difference added (the
    hooks cost CPU in the calling task, on the critical path of a sequential loop)."""
    lines = [
        "| workload | variant | ops/s (median) | ratio to absent, per round (median, p25-p75) "
        "| client CPU us/op (median) | rate from the CPU difference |",
        "|---|---|---|---|---|---|",
    ]
    for workload, by_variant in rates.items():
        base_rates = [rate for rate, _ in by_variant["absent"]]
        base_rate = statistics.median(base_rates)
        base_cpu = statistics.median(cpu for _, cpu in by_variant["absent"])
        for name in VARIANTS:
            runs = by_variant[name]
            rate = statistics.median(r for r, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            ratios = sorted(r / b for (r, _), b in zip(runs, base_rates, strict=True))
            quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
            estimate = 1 / (1 + (cpu - base_cpu) * 1e-6 * base_rate)
            lines.append(
                f"| {workload} | {name} | {rate:,.0f} | {statistics.median(ratios):.3f}x "
                f"({quartiles[0]:.3f}-{quartiles[-1]:.3f}) | {cpu:.1f} | {estimate:.3f}x |"
            )
    return "\n".join([*lines, "", *goals(rates)])


#: Issue 19, item 4: with no SDK configured, at least this fraction of the hooks-absent rate.
FREE_WHEN_UNUSED = 0.97


def goals(rates: Rates) -> list[str]:
    """One line per workload: the no-SDK rate against the hooks-absent rate, met or MISSED."""
    lines = []
    for workload, by_variant in rates.items():
        ratios = [
            off / absent
            for (off, _), (absent, _) in zip(by_variant["off"], by_variant["absent"], strict=True)
        ]
        ratio = statistics.median(ratios)
        status = "met" if ratio >= FREE_WHEN_UNUSED else "MISSED"
        lines.append(
            f"- **{status}** — {workload}: no SDK at {ratio:.3f}x the hooks-absent rate"
            f" (median of {len(ratios)} rounds; goal ≥ {FREE_WHEN_UNUSED}x)."
        )
    return lines


@contextlib.asynccontextmanager
async def _target(url: str | None) -> AsyncIterator[str]:
    if url is not None:
        yield url
        return
    from lockyard_dev.servers.redis import RedisServer

    with RedisServer() as server:
        yield server.url(f"telemetry-{uuid.uuid4().hex[:6]}")


async def _main(args: argparse.Namespace) -> Rates:
    async with _target(args.url) as url:
        return await measure(url, args.rounds, args.n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a redis:// URL (default: start a redis-server)")
    parser.add_argument("--rounds", type=int, default=15, help="rounds per variant (15)")
    parser.add_argument("--n", type=int, default=300, help="operations per round (300)")
    parser.add_argument("--json", help="write the per-round rates here")
    args = parser.parse_args()
    rates = asyncio.run(_main(args))
    load = os.getloadavg()
    print(
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {args.rounds} rounds of {args.n}"
    )
    print(summary(rates))
    if args.json is not None:
        Path(args.json).write_text(json.dumps(rates, indent=2))


if __name__ == "__main__":
    main()
