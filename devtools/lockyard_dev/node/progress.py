"""Progress lines for the node's slow steps (``[node   12s] building ...``), like the Go builds'."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

Say = Callable[[str], None]


def progress(prefix: str = "node") -> Say:
    """A printer whose lines carry the seconds since it was made (on stderr, flushed)."""
    started = time.monotonic()

    def say(message: str) -> None:
        elapsed = time.monotonic() - started
        print(f"[{prefix} {elapsed:5.1f}s] {message}", file=sys.stderr, flush=True)

    return say


def quiet(message: str) -> None:
    """A printer that prints nothing."""
