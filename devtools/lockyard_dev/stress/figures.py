"""The JSON figures file and exit code of ``lockyard_dev.stress`` and ``lockyard_dev.chaos``."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol


class Judged(Protocol):
    @property
    def violations(self) -> int: ...

    def to_json(self) -> dict[str, Any]: ...


def write_figures(
    path: Path,
    command: str,
    key: str,
    results: Sequence[Judged],
    skipped: dict[str, str],
    **extra: object,
) -> None:
    """Write what a run measured, with the command that reproduces it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figures = {
        "command": command,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **extra,
        key: [result.to_json() for result in results],
        "skipped": skipped,
    }
    path.write_text(json.dumps(figures, indent=2) + "\n")


def exit_code(results: Sequence[Judged], skipped: dict[str, str]) -> int:
    """1 on any invariant violation, 3 when something could not run, else 0."""
    if any(result.violations for result in results):
        return 1
    return 3 if skipped else 0
