"""The benchmark's results as data: one ``Record`` per measurement per pass, and their spreads.

A record names what was measured (``backend``, ``section``, ``subject``, ``op``, ``mode``) and
in which pass; its ``metrics`` map metric names to numbers. Aggregation groups the passes of one
measurement and keeps the median, lowest and highest value of every metric. Ratios of Lockyard
to its raw-driver baseline are taken per pass (both were measured back to back) and then
aggregated the same way.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from lockyard_dev.bench.stats import P50_MS, Spread

Section = Literal["store", "raw", "lock", "peer", "throughput", "floor", "sync"]
Mode = Literal["sequential", "concurrent", "uncontended", "contended"]

#: The subject name of Lockyard itself; a scenario other than the default is appended.
LOCKYARD = "lockyard"
#: The ``op`` of a scenario's own measurement (``Scenario.probe``).
PROBE = "probe"


@dataclass(frozen=True, slots=True)
class Record:
    backend: str
    section: Section
    subject: str
    op: str
    mode: Mode
    pass_no: int
    metrics: dict[str, float]
    #: For a raw baseline: the driver call it made (``GET``, ``upsert``, ``GetItem``...).
    detail: str = ""


Key = tuple[str, Section, str, str, Mode]


def record_key(record: Record) -> Key:
    return (record.backend, record.section, record.subject, record.op, record.mode)


@dataclass
class Note:
    """Something the reader must know: a skipped backend or peer, with the exact error."""

    backend: str
    subject: str
    text: str


@dataclass
class Results:
    """Everything one benchmark run produced."""

    settings: dict[str, Any]
    environment: dict[str, str]
    records: list[Record] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    #: backend -> server version string, as the backend reports it.
    servers: dict[str, str] = field(default_factory=dict)

    def add(self, record: Record) -> None:
        self.records.append(record)

    def note(self, backend: str, subject: str, text: str) -> bool:
        """Record a note once; ``False`` if the same note was already there."""
        note = Note(backend, subject, text)
        if note in self.notes:
            return False
        self.notes.append(note)
        return True

    def backends(self) -> list[str]:
        seen: dict[str, None] = {}
        for record in self.records:
            seen.setdefault(record.backend, None)
        return list(seen)

    def aggregate(self) -> dict[Key, dict[str, Spread]]:
        """Every measurement's metrics as spreads across passes (insertion order kept)."""
        grouped: dict[Key, defaultdict[str, list[float]]] = {}
        for record in self.records:
            values = grouped.setdefault(record_key(record), defaultdict(list))
            for name, value in record.metrics.items():
                values[name].append(value)
        return {
            key: {name: Spread.of(values) for name, values in metrics.items()}
            for key, metrics in grouped.items()
        }

    def details(self) -> dict[Key, str]:
        return {record_key(r): r.detail for r in self.records if r.detail}

    def ratios(self, metric: str = P50_MS) -> dict[tuple[str, str, str, Mode], Spread]:
        """(backend, subject, op, mode) -> Lockyard's ``metric`` over the raw driver's, per pass."""
        raw: dict[tuple[str, str, Mode, int], float] = {}
        for record in self.records:
            if record.section == "raw":
                raw[(record.backend, record.op, record.mode, record.pass_no)] = record.metrics[
                    metric
                ]
        per_pass: defaultdict[tuple[str, str, str, Mode], list[float]] = defaultdict(list)
        for record in self.records:
            if record.section != "store":
                continue
            baseline = raw.get((record.backend, record.op, record.mode, record.pass_no))
            if baseline is None or not baseline > 0 or math.isnan(baseline):
                continue
            key = (record.backend, record.subject, record.op, record.mode)
            per_pass[key].append(record.metrics[metric] / baseline)
        return {key: Spread.of(values) for key, values in per_pass.items()}

    def scenario_ratio(self, backend: str, subject: str, mode: Mode, metric: str) -> Spread | None:
        """A scenario's lock-cycle ``metric`` over the default's, per pass (``None``: none)."""
        by_pass: dict[tuple[str, int], float] = {}
        for r in self.records:
            if (r.backend, r.section, r.op, r.mode) == (backend, "lock", "lock_cycle", mode) and (
                r.subject in (subject, LOCKYARD)
            ):
                by_pass[(r.subject, r.pass_no)] = r.metrics.get(metric, math.nan)
        values = [
            value / base
            for (name, pass_no), value in by_pass.items()
            if name == subject and (base := by_pass.get((LOCKYARD, pass_no), math.nan)) > 0
        ]
        return Spread.of(values) if values else None

    def to_json(self, path: Path) -> None:
        """A compact machine-readable copy: aggregated figures, ratios and notes."""
        figures = [
            {
                "backend": key[0],
                "section": key[1],
                "subject": key[2],
                "op": key[3],
                "mode": key[4],
                "metrics": {name: asdict(spread) for name, spread in metrics.items()},
            }
            for key, metrics in self.aggregate().items()
        ]
        ratios = [
            {"backend": k[0], "subject": k[1], "op": k[2], "mode": k[3], **asdict(spread)}
            for k, spread in self.ratios().items()
        ]
        document = {
            "settings": self.settings,
            "environment": self.environment,
            "servers": self.servers,
            "figures": figures,
            "ratios_p50": ratios,
            "notes": [asdict(note) for note in self.notes],
        }
        text = json.dumps(_finite(document), separators=(",", ":"), allow_nan=False)
        path.write_text(text + "\n")


def _finite(value: Any) -> Any:
    """``value`` with floats to 4 significant digits, NaN and infinities as ``None``."""
    if isinstance(value, float):
        return float(f"{value:.4g}") if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
