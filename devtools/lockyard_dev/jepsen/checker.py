"""Running the linearizability checker (``tools/porcupine``) on a merged history."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lockyard_dev.jepsen.tools import porcupine_checker

#: The verdicts: every key linearizable; some key not; some key undecided within the budget.
OK, ILLEGAL, UNKNOWN = "ok", "illegal", "unknown"


@dataclass(frozen=True)
class Violation:
    key: str
    model: str
    operations: int
    #: the minimal failing sub-history, one line per operation, for a person
    text: str
    html: str | None


@dataclass(frozen=True)
class Verdict:
    verdict: str
    operations: int
    unknown_outcomes: int
    failed: int
    keys: list[dict[str, Any]]
    violations: list[Violation] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def undecided_keys(self) -> list[str]:
        return [k["key"] for k in self.keys if k["verdict"] == UNKNOWN]


class CheckerError(RuntimeError):
    """The checker could not read the history; the message has its error output."""


def check_history(
    history: Path, out_dir: Path, *, timeout_s: float = 120.0, minimize_s: float = 60.0
) -> Verdict:
    """Check ``history``; HTML drawings of violations go to ``out_dir``."""
    binary = porcupine_checker()
    argv = [
        str(binary),
        "-out",
        str(out_dir),
        "-timeout",
        f"{timeout_s:g}s",
        "-minimize",
        f"{minimize_s:g}s",
        str(history),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise CheckerError(f"{binary.name} exited {done.returncode}: {done.stderr.strip()}")
    raw = json.loads(done.stdout)
    return Verdict(
        verdict=raw["verdict"],
        operations=raw["operations"],
        unknown_outcomes=raw["unknown_outcomes"],
        failed=raw["failed"],
        keys=raw["keys"],
        violations=[
            Violation(v["key"], v["model"], v["operations"], v["text"], v.get("html"))
            for v in raw["violations"]
        ],
        seconds=raw["seconds"],
    )
