"""One run of the workload against one backend: connections, workload, verification, figures.

:class:`Session` is shared by ``make stress`` (start, wait the duration, stop, verify) and the
chaos scenarios (which inject a fault while the workload runs). Every task uses one of a few
connections (separate pools and release listeners, like several processes); ``memory://`` gets
one, since each connection to it is a separate in-process store.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from lockyard._resource import AsyncResource
from lockyard.config import redact
from lockyard.connection import Connection, connect
from lockyard_dev.stress.recorder import Recorder
from lockyard_dev.stress.workload import Workload, WorkloadSettings


@dataclass(frozen=True)
class RunSettings:
    duration_s: float = 60.0
    connections: int = 4
    operation_timeout_s: float = 5.0
    #: How much longer than its bound a failing operation may take (event-loop lag).
    slack_s: float = 0.5
    seed: int = 0
    workload: WorkloadSettings = field(default_factory=WorkloadSettings)


@dataclass
class RunResult:
    """The figures of one run (printed by :mod:`lockyard_dev.stress.report`)."""

    backend: str
    url: str
    seconds: float
    settings: RunSettings
    rec: Recorder
    lock_holds: int
    lock_overlaps: int
    overlap_messages: list[str]
    #: Holders whose token was below one the resource had already seen (rejected by fencing),
    #: and the seconds from the first to the last of them.
    stale_holders: int = 0
    stale_window_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def violations(self) -> int:
        return self.rec.violations

    def to_json(self) -> dict[str, Any]:
        rec = self.rec
        return {
            "backend": self.backend,
            "url": self.url,
            "seconds": round(self.seconds, 3),
            "tasks": self.settings.workload.tasks,
            "connections": self.settings.connections,
            "operation_timeout_s": self.settings.operation_timeout_s,
            "seed": self.settings.seed,
            "total_ops": rec.total_ops,
            "ops_per_s": round(rec.total_ops / self.seconds, 1) if self.seconds else 0.0,
            "operations": {
                op: {
                    "ok": stats.ok,
                    "failed": stats.failed,
                    "p50_ms": round(stats.percentile(0.5) * 1000, 3),
                    "p99_ms": round(stats.percentile(0.99) * 1000, 3),
                    "max_ms": round(max(stats.latencies, default=0.0) * 1000, 3),
                    "max_failed_ms": round(stats.max_failed_s * 1000, 3),
                }
                for op, stats in sorted(rec.ops.items())
            },
            "errors": dict(rec.errors),
            "outcomes": dict(rec.outcomes),
            "invariants": {
                name: {
                    "title": check.title,
                    "checked": dict(check.checked),
                    "violations": check.violations,
                    "loss_anomalies": check.loss_anomalies,
                }
                for name, check in rec.checks.items()
            },
            "violations": rec.violations,
            "loss_anomalies": rec.loss_anomalies,
            "lost_acknowledged": {
                what: {"lost": lost, "of": of} for what, (lost, of) in rec.lost_acknowledged.items()
            },
            "lock_holds": self.lock_holds,
            "lock_overlaps": self.lock_overlaps,
            "stale_holders": self.stale_holders,
            "stale_window_s": round(self.stale_window_s, 3),
            "messages": rec.messages,
            "lost_messages": rec.lost_messages,
            "overlap_messages": self.overlap_messages,
            "notes": self.notes,
        }


class Session(AsyncResource):
    """Connections, a recorder and a workload on one backend URL."""

    def __init__(
        self,
        backend: str,
        url: str,
        settings: RunSettings,
        *,
        writes_may_be_lost: bool = False,
    ) -> None:
        self.backend = backend
        self.url = url
        self.settings = settings
        self.rec = Recorder(settings.operation_timeout_s, settings.slack_s, writes_may_be_lost)
        self.connections: list[Connection] = []
        self.workload: Workload | None = None
        self.started_at = 0.0
        self.stopped_at = 0.0
        self.notes: list[str] = []

    async def __aenter__(self) -> Session:
        count = 1 if self.backend == "memory" else self.settings.connections
        try:
            for _ in range(count):
                self.connections.append(await connect(self.url))
        except BaseException:
            await self.close()
            raise
        self.workload = Workload(
            self.connections, self.settings.workload, self.rec, self.settings.seed
        )
        return self

    async def close(self) -> None:
        if self.workload is not None and self.stopped_at == 0.0 and self.started_at:
            await self.stop()
        while self.connections:
            await self.connections.pop().close()

    def start(self) -> None:
        assert self.workload is not None
        self.started_at = time.monotonic()
        self.workload.start()

    async def stop(self) -> None:
        assert self.workload is not None
        await self.workload.stop()
        self.stopped_at = time.monotonic()

    async def verify(self) -> None:
        assert self.workload is not None
        await self.workload.verify(self.connections[0])

    def result(self) -> RunResult:
        assert self.workload is not None
        generations = [self.workload.gen, *(g for g, _ in self.workload.retired)]
        overlaps = [m for g in generations for m in g.resource.overlap_messages]
        spans = [g.resource.stale_span for g in generations if g.resource.stale_span is not None]
        return RunResult(
            backend=self.backend,
            url=redact(self.url),
            seconds=self.stopped_at - self.started_at,
            settings=self.settings,
            rec=self.rec,
            lock_holds=sum(g.resource.holds for g in generations),
            lock_overlaps=sum(g.resource.overlaps for g in generations),
            overlap_messages=overlaps,
            stale_holders=sum(g.resource.stale for g in generations),
            stale_window_s=max((last - first for first, last in spans), default=0.0),
            notes=self.notes
            + [f"generation {g.number} retired: {why}" for g, why in self.workload.retired],
        )


async def run_stress(backend: str, url: str, settings: RunSettings) -> RunResult:
    """Drive ``url`` for ``settings.duration_s`` seconds, then verify; the figures."""
    async with Session(backend, url, settings) as session:
        session.start()
        await asyncio.sleep(settings.duration_s)
        await session.stop()
        await session.verify()
        return session.result()
