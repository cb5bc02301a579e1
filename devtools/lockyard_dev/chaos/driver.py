"""Run one chaos scenario: workload, fault, recovery, verification, figures.

Timeline of a scenario: the server starts; the workload runs ``warmup_s``; the fault is
injected (``fault_at``); after ``outage_s`` the server is brought back (``back_at``; a failover
needs no restore); the workload goes on ``after_s`` seconds and then until every operation kind
that failed has succeeded again (at most ``RECOVERY_GRACE_S`` more); it stops and everything is
read back on the same connections, which were never reopened.

Figures: operations attempted and failed (by error type); how long callers saw errors (from the
fault to the end of the last failed operation: the time to recover); operations that succeeded
after the last failure; the slowest failure against its bound (operation timeout + slack, plus
the wait of ``acquire``/``hold``); lock overlaps; anomalies explained by lost writes; and the
violations of every invariant.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from lockyard.connection import connect
from lockyard_dev.chaos.scenarios import Scenario
from lockyard_dev.servers.launch import launch
from lockyard_dev.stress.run import RunResult, RunSettings, Session
from lockyard_dev.stress.workload import Generation, WorkloadSettings

#: After ``after_s``: how much longer to wait for every failed operation kind to succeed again.
RECOVERY_GRACE_S = 20.0
VERIFY = "verify"


class ScenarioUnavailable(RuntimeError):
    """The scenario's server could not be started here; the message says why."""


@dataclass(frozen=True)
class ChaosSettings:
    tasks: int = 16
    connections: int = 4
    warmup_s: float = 3.0
    outage_s: float = 2.0
    after_s: float = 8.0
    operation_timeout_s: float = 2.0
    slack_s: float = 0.5
    hold_ms: float = 20.0
    seed: int = 0


@dataclass
class ChaosResult:
    scenario: Scenario
    settings: ChaosSettings
    run: RunResult
    #: Seconds from the fault until the server was back (failover: until it completed).
    downtime_s: float
    attempted: int
    failed: int
    errors: dict[str, int]
    #: From the fault to the end of the last failed operation (0 when nothing failed).
    recover_s: float
    first_failure_s: float | None
    ok_after_recovery: int
    unrecovered: list[str]
    slowest_failure: tuple[str, float, float] | None  # (operation, seconds, its bound)
    #: (second relative to the fault, operations ok, operations failed)
    timeline: list[tuple[int, int, int]]
    notes: list[str] = field(default_factory=list)

    @property
    def recovered(self) -> bool:
        reads = self.run.rec.checks.get("recovery")
        return not self.unrecovered and (reads is None or reads.violations == 0)

    @property
    def violations(self) -> int:
        return self.run.violations + (0 if self.recovered else 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.name,
            "description": self.scenario.description,
            "tasks": self.settings.tasks,
            "operation_timeout_s": self.settings.operation_timeout_s,
            "slack_s": self.settings.slack_s,
            "downtime_s": round(self.downtime_s, 3),
            "attempted": self.attempted,
            "failed": self.failed,
            "errors": self.errors,
            "recover_s": round(self.recover_s, 3),
            "first_failure_s": None
            if self.first_failure_s is None
            else round(self.first_failure_s, 3),
            "ok_after_recovery": self.ok_after_recovery,
            "recovered": self.recovered,
            "unrecovered": self.unrecovered,
            "slowest_failure": None
            if self.slowest_failure is None
            else {
                "op": self.slowest_failure[0],
                "seconds": round(self.slowest_failure[1], 3),
                "bound_s": round(self.slowest_failure[2], 3),
            },
            "lock_holds": self.run.lock_holds,
            "lock_overlaps": self.run.lock_overlaps,
            "stale_holders": self.run.stale_holders,
            "stale_window_s": round(self.run.stale_window_s, 3),
            "loss_anomalies": self.run.rec.loss_anomalies,
            "violations": self.violations,
            "timeline": self.timeline,
            "notes": self.notes,
            "run": self.run.to_json(),
        }


def _bound_extra(op: str, settings: ChaosSettings, workload: WorkloadSettings) -> float:
    """The waiting an operation may add to its timeout (see ``Workload._lock``/``_hold``)."""
    if op == "acquire":
        return workload.acquire_timeout_s
    if op == "hold":
        return workload.acquire_timeout_s + settings.operation_timeout_s
    return 0.0


def _acknowledged(generation: Generation) -> str:
    increments = sum(len(r) for r in generation.counters.returns.values())
    wins = sum(len(w) for w in generation.cas.wins.values())
    winners = sum(len(w) for w in generation.dedup.winners.values())
    return f"{increments} increments, {wins} CAS wins, {winners} dedup winners"


async def run_scenario(scenario: Scenario, settings: ChaosSettings) -> ChaosResult:
    """Launch the scenario's server, run it (see the module docstring), stop the server."""
    try:
        launched = await asyncio.to_thread(launch, scenario.backend, durable=scenario.durable)
    except Exception as exc:
        raise ScenarioUnavailable(f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc
    try:
        url = launched.url(f"chaos{secrets.token_hex(3)}", settings.operation_timeout_s)
        workload = WorkloadSettings(
            tasks=settings.tasks,
            hold_ms=settings.hold_ms,
            overlaps_expected=scenario.overlaps_expected,
        )
        run_settings = RunSettings(
            duration_s=0.0,
            connections=settings.connections,
            operation_timeout_s=settings.operation_timeout_s,
            slack_s=settings.slack_s,
            seed=settings.seed,
            workload=workload,
        )
        notes: list[str] = []
        async with Session(
            scenario.backend,
            url,
            run_settings,
            writes_may_be_lost=scenario.writes_may_be_lost,
        ) as session:
            assert session.workload is not None
            session.start()
            await asyncio.sleep(settings.warmup_s)
            fault_at = time.monotonic()
            lost_generation = session.workload.gen
            if scenario.server_loses_data:
                session.workload.new_generation(
                    "moto keeps its data in memory: the restart lost the table and everything "
                    f"in it ({_acknowledged(lost_generation)} acknowledged before the fault)"
                )
            await asyncio.to_thread(scenario.fault, launched)
            if scenario.restore is not None:
                await asyncio.sleep(settings.outage_s)
                await asyncio.to_thread(scenario.restore, launched)
            back_at = time.monotonic()
            if scenario.server_loses_data:
                async with connect(url):  # the URL says create_table=true
                    pass
                notes.append(
                    f"table re-created with create_table=true "
                    f"{time.monotonic() - back_at:.2f} s after the endpoint was back"
                )
            await asyncio.sleep(settings.after_s)
            await _wait_recovered(session, fault_at, RECOVERY_GRACE_S)
            await session.stop()
            await session.verify()
            run = session.result()
    finally:
        await asyncio.to_thread(launched.close)
    run.notes.extend(notes)
    return _figures(scenario, settings, workload, run, session, fault_at, back_at)


def _unrecovered(session: Session, since: float) -> list[str]:
    rec = session.rec
    last_failed: dict[str, float] = {}
    for failure in rec.failures:
        if failure.op != VERIFY and failure.ended >= since:
            last_failed[failure.op] = max(last_failed.get(failure.op, 0.0), failure.ended)
    return sorted(op for op, at in last_failed.items() if rec.last_ok.get(op, 0.0) <= at)


async def _wait_recovered(session: Session, since: float, grace_s: float) -> None:
    """Give every failed operation kind up to ``grace_s`` to succeed again (checked 5x/s: the
    condition is the workload's own bookkeeping, which signals nothing)."""
    for _ in range(int(grace_s / 0.2)):
        if not _unrecovered(session, since):
            return
        await asyncio.sleep(0.2)


def _figures(
    scenario: Scenario,
    settings: ChaosSettings,
    workload: WorkloadSettings,
    run: RunResult,
    session: Session,
    fault_at: float,
    back_at: float,
) -> ChaosResult:
    rec = run.rec
    failures = [f for f in rec.failures if f.op != VERIFY]
    after = [f for f in failures if f.ended >= fault_at]
    last_end = max((f.ended for f in after), default=fault_at)
    slowest = None
    for f in failures:
        took = f.ended - f.started
        if slowest is None or took > slowest[1]:
            bound = rec.bound(_bound_extra(f.op, settings, workload))
            slowest = (f.op, took, bound)
    errors: dict[str, int] = {}
    for f in failures:
        errors[f.error] = errors.get(f.error, 0) + 1
    verify_ops = rec.ops[VERIFY].count if VERIFY in rec.ops else 0
    fault_second = int(fault_at - rec.origin)
    seconds = sorted({second for second, _ in rec.timeline})
    timeline = [
        (second - fault_second, rec.timeline[second, True], rec.timeline[second, False])
        for second in range(max(0, fault_second - 2), (seconds[-1] if seconds else 0) + 1)
    ]
    ok_after = sum(
        n for (second, ok), n in rec.timeline.items() if ok and second > int(last_end - rec.origin)
    )
    return ChaosResult(
        scenario=scenario,
        settings=settings,
        run=run,
        downtime_s=back_at - fault_at,
        attempted=rec.total_ops - verify_ops,
        failed=len(failures),
        errors=errors,
        recover_s=last_end - fault_at,
        first_failure_s=min(f.started for f in after) - fault_at if after else None,
        ok_after_recovery=ok_after,
        unrecovered=_unrecovered(session, fault_at),
        slowest_failure=slowest,
        timeline=timeline,
        notes=run.notes,
    )
