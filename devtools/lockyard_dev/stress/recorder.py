"""What a stress or chaos run saw: every operation's latency and outcome, errors, violations.

Every call the workload makes goes through :meth:`Recorder.call` (or :meth:`Recorder.measure`
for ``hold`` blocks). A ``StateError`` the caller did not expect is counted by type and raised
again as :class:`OpFailed`, which tells the workload that the operation's effect is unknown. An
exception outside the ``StateError`` tree, or a failure that took longer than the operation's
bound (the operation timeout plus a slack), is itself a violation: the contract promises both.
"""

from __future__ import annotations

import contextlib
import time
from array import array
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

from lockyard.errors import StateError

T = TypeVar("T")

#: Violations kept with their full message (the count is always exact).
MAX_KEPT_MESSAGES = 50
#: Operations left out of the per-second timeline (the reads after the run).
UNTIMED = frozenset({"verify"})


class OpFailed(Exception):
    """An operation failed with an unexpected error; its effect on the backend is unknown."""

    def __init__(self, op: str, error: BaseException) -> None:
        super().__init__(f"{op}: {type(error).__name__}: {error}")
        self.op = op
        self.error = error


@dataclass
class OpStats:
    """One operation kind: how often it ran, failed, and how long it took."""

    ok: int = 0
    failed: int = 0
    latencies: array[float] = field(default_factory=lambda: array("d"))
    max_failed_s: float = 0.0

    @property
    def count(self) -> int:
        return self.ok + self.failed

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass(frozen=True)
class Failure:
    """One failed operation, for the chaos timeline."""

    op: str
    started: float
    ended: float
    error: str


@dataclass
class Check:
    """One invariant: how much it covered and how often it was broken."""

    title: str
    checked: Counter[str] = field(default_factory=Counter)
    violations: int = 0
    #: Anomalies that only a server losing acknowledged writes explains (reported, and a
    #: violation unless the scenario says the server may lose writes).
    loss_anomalies: int = 0


class Recorder:
    """Collects the figures of one run against one backend."""

    def __init__(self, operation_timeout: float, slack: float, writes_may_be_lost: bool) -> None:
        self.operation_timeout = operation_timeout
        self.slack = slack
        self.writes_may_be_lost = writes_may_be_lost
        self.ops: dict[str, OpStats] = {}
        self.errors: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.failures: list[Failure] = []
        self.checks: dict[str, Check] = {}
        self.messages: list[str] = []
        self.lost_messages: list[str] = []
        #: Acknowledged writes the server no longer has (lower bounds): what -> (lost, of).
        self.lost_acknowledged: dict[str, tuple[int, int]] = {}
        self.last_ok: dict[str, float] = {}
        #: (whole second since ``origin``, succeeded) -> operations that ended then.
        self.origin = time.monotonic()
        self.timeline: Counter[tuple[int, bool]] = Counter()

    # -- operations ------------------------------------------------------------------------
    def bound(self, extra: float = 0.0) -> float:
        """The longest a failing operation may take: its own waiting + timeout + slack."""
        return extra + self.operation_timeout + self.slack

    async def call(
        self,
        op: str,
        awaitable: Awaitable[T],
        *,
        expected: tuple[type[StateError], ...] = (),
        extra: float = 0.0,
    ) -> T:
        """Await ``awaitable`` as operation ``op``; see the module docstring."""
        async with self.measure(op, expected=expected, extra=extra):
            return await awaitable
        raise AssertionError("measure() never swallows an exception")

    @contextlib.asynccontextmanager
    async def measure(
        self, op: str, *, expected: tuple[type[StateError], ...] = (), extra: float = 0.0
    ) -> AsyncIterator[None]:
        stats = self.ops.get(op)
        if stats is None:
            stats = self.ops[op] = OpStats()
        started = time.monotonic()
        try:
            yield
        except expected as exc:
            ended = time.monotonic()
            stats.ok += 1
            stats.latencies.append(ended - started)
            self.last_ok[op] = ended
            self._tick(op, ended, ok=True)
            self.outcomes[f"{op}: {type(exc).__name__}"] += 1
            raise
        except StateError as exc:
            self._failed(op, stats, started, exc, extra)
            raise OpFailed(op, exc) from exc
        except Exception as exc:
            self._failed(op, stats, started, exc, extra)
            self.violation(
                "errors",
                f"{op} raised {type(exc).__module__}.{type(exc).__name__}, which is not a "
                f"StateError: {exc}",
            )
            raise OpFailed(op, exc) from exc
        else:
            ended = time.monotonic()
            stats.ok += 1
            stats.latencies.append(ended - started)
            self.last_ok[op] = ended
            self._tick(op, ended, ok=True)

    def _failed(
        self, op: str, stats: OpStats, started: float, exc: BaseException, extra: float
    ) -> None:
        ended = time.monotonic()
        took = ended - started
        stats.failed += 1
        stats.max_failed_s = max(stats.max_failed_s, took)
        name = type(exc).__name__
        self.errors[name] += 1
        self.failures.append(Failure(op, started, ended, name))
        self._tick(op, ended, ok=False)
        self.check("errors").checked["failures"] += 1
        if took > self.bound(extra):
            self.violation(
                "errors",
                f"{op} failed with {name} after {took:.3f}s, beyond its bound of "
                f"{self.bound(extra):.3f}s (operation timeout {self.operation_timeout:g}s + "
                f"{extra:g}s of waiting + {self.slack:g}s slack)",
            )

    def _tick(self, op: str, ended: float, *, ok: bool) -> None:
        if op not in UNTIMED:
            self.timeline[int(ended - self.origin), ok] += 1

    def outcome(self, what: str) -> None:
        """A normal result worth counting (a CAS conflict, a busy lock)."""
        self.outcomes[what] += 1

    # -- invariants ------------------------------------------------------------------------
    def check(self, name: str, title: str = "") -> Check:
        found = self.checks.get(name)
        if found is None:
            found = self.checks[name] = Check(title or name)
        elif title and not found.title:
            found.title = title
        return found

    def covered(self, name: str, what: str, amount: int = 1) -> None:
        self.check(name).checked[what] += amount

    def violation(self, name: str, message: str) -> None:
        self.check(name).violations += 1
        if len(self.messages) < MAX_KEPT_MESSAGES:
            self.messages.append(f"[{name}] {message}")

    def lost(self, name: str, message: str) -> None:
        """An anomaly explained only by the server losing acknowledged writes."""
        if not self.writes_may_be_lost:
            self.violation(name, message)
            return
        self.check(name).loss_anomalies += 1
        if len(self.lost_messages) < MAX_KEPT_MESSAGES:
            self.lost_messages.append(f"[{name}] {message}")

    def count_lost(self, what: str, lost: int, of: int) -> None:
        before = self.lost_acknowledged.get(what, (0, 0))
        self.lost_acknowledged[what] = (before[0] + max(0, lost), before[1] + of)

    # -- totals ----------------------------------------------------------------------------
    @property
    def total_ops(self) -> int:
        return sum(stats.count for stats in self.ops.values())

    @property
    def total_failed(self) -> int:
        return sum(stats.failed for stats in self.ops.values())

    @property
    def violations(self) -> int:
        return sum(check.violations for check in self.checks.values())

    @property
    def loss_anomalies(self) -> int:
        return sum(check.loss_anomalies for check in self.checks.values())
