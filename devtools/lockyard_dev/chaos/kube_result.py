"""Settings, figures and report of the Kubernetes chaos scenarios.

A :class:`KubeChaosResult` carries the figures every ``make chaos`` scenario reports (operations
attempted and failed, how long the fault lasted, the time to recover, whether everything
recovered, violations) plus the scenario's own, and the :class:`Checks` it ran: each named check
counts what it covered and how often it was broken. Like the backend scenarios'
``ChaosResult`` it has ``violations`` and ``to_json()``, so ``lockyard_dev.stress.figures``
writes and judges both kinds alike.
"""

from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lockyard_dev.chaos.driver import ChaosSettings
from lockyard_dev.stress.report import counted, table

#: Violation messages kept per scenario (the counts are always exact).
MAX_MESSAGES = 40


@dataclass(frozen=True)
class KubeChaosSettings(ChaosSettings):
    """The backend scenarios' settings, plus the operator-kill burst."""

    #: StateStores created at once while the operator is killed.
    stores: int = 12
    #: SIGKILLs of the operator during the burst.
    kills: int = 3


class Checks:
    """Named checks: how much each covered, and how often it was broken (in first-use order)."""

    def __init__(self) -> None:
        self.covered: Counter[str] = Counter()
        self.broken: Counter[str] = Counter()
        self.order: list[str] = []
        self.messages: list[str] = []

    def check(self, name: str, ok: bool, message: str = "", amount: int = 1) -> bool:
        """Count ``amount`` things checked under ``name``; a violation (with ``message``) if
        not ``ok``. Returns ``ok``."""
        self._register(name)
        self.covered[name] += amount
        if not ok:
            self.violation(name, message)
        return ok

    def record(self, name: str, covered: int, violations: int, message: str = "") -> None:
        """Add counts checked elsewhere: ``covered`` things, ``violations`` of them broken."""
        self._register(name)
        self.covered[name] += covered
        if violations:
            self.violation(name, message, violations)

    def violation(self, name: str, message: str, count: int = 1) -> None:
        self._register(name)
        self.broken[name] += count
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(f"[{name}] {message}")

    def _register(self, name: str) -> None:
        if name not in self.order:
            self.order.append(name)

    @property
    def total(self) -> int:
        return sum(self.broken.values())

    def table(self) -> str:
        rows = [(name, self.covered[name], self.broken[name]) for name in self.order]
        return table(("check", "checked", "violations"), rows)

    def to_json(self) -> dict[str, dict[str, int]]:
        return {
            name: {"checked": self.covered[name], "violations": self.broken[name]}
            for name in self.order
        }


@dataclass
class KubeChaosResult:
    scenario: str
    description: str
    settings: KubeChaosSettings
    #: What was attempted (operations for apiserver-restart, StateStore changes for
    #: operator-kill) and how many of those failed.
    attempted: int = 0
    failed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    #: How long the faulty component was unavailable.
    downtime_s: float = 0.0
    #: From its return until everything had recovered (``None``: it never did).
    recover_s: float | None = None
    recovered: bool = False
    #: The scenario's own figures: printed as ``label: value`` lines, and in the JSON.
    lines: list[tuple[str, str]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    checks: Checks = field(default_factory=Checks)
    #: Extra tables printed after the figures (the stress invariants).
    details: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def violations(self) -> int:
        return self.checks.total + (0 if self.recovered else 1)

    def line(self, label: str, value: str) -> None:
        self.lines.append((label, value))

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "description": self.description,
            "settings": asdict(self.settings),
            "attempted": self.attempted,
            "failed": self.failed,
            "errors": self.errors,
            "downtime_s": round(self.downtime_s, 3),
            "recover_s": None if self.recover_s is None else round(self.recover_s, 3),
            "recovered": self.recovered,
            "violations": self.violations,
            "checks": self.checks.to_json(),
            "messages": self.checks.messages,
            "figures": self.figures,
            "notes": self.notes,
        }


def format_result(result: KubeChaosResult) -> str:
    recover = "never" if result.recover_s is None else f"{result.recover_s:.2f} s"
    lines = [
        f"== {result.scenario}: {result.description}",
        f"attempted {result.attempted:,}, failed {result.failed:,} ({counted(result.errors)})",
        f"down {result.downtime_s:.2f} s; time to recover after it was back: {recover}; "
        f"recovered: {'yes' if result.recovered else 'NO'}",
        *(f"{label}: {value}" for label, value in result.lines),
        "",
        result.checks.table(),
        "",
        *(part + "\n" for part in result.details),
        f"violations: {result.violations}",
        *(f"  {message}" for message in result.checks.messages),
        *(f"note: {note}" for note in result.notes),
    ]
    return "\n".join(lines) + "\n"


def format_summary(results: Sequence[KubeChaosResult], skipped: dict[str, str]) -> str:
    rows: list[tuple[object, ...]] = [
        (
            r.scenario,
            r.attempted,
            r.failed,
            f"{r.downtime_s:.2f}",
            "-" if r.recover_s is None else f"{r.recover_s:.2f}",
            "yes" if r.recovered else "NO",
            r.violations,
        )
        for r in results
    ]
    rows += [(name, "-", "-", "-", "-", "-", f"not run: {why}") for name, why in skipped.items()]
    headers = ("scenario", "attempted", "failed", "down s", "recover s", "recovered", "violations")
    return table(headers, rows) + "\n"


def crashed(name: str, settings: KubeChaosSettings, exc: BaseException) -> KubeChaosResult:
    """The result of a scenario that raised instead of finishing: one violation, the traceback."""
    result = KubeChaosResult(name, "crashed before it finished", settings)
    lines = traceback.format_exception(exc)
    result.checks.violation("the scenario ran to its end", "".join(lines[-8:]).strip())
    return result
