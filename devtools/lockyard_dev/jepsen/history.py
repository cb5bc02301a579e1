"""Recording a history: every operation's invocation and completion, per process, as JSON lines.

The format is the one ``tools/porcupine`` reads (see its ``history.go``)::

    {"type": "invoke", "process": 3, "id": "w1-17", "key": K, "model": "kv", "f": "set",
     "args": {"value": "a"}, "time": NS}
    {"type": "ok" | "fail" | "info", "process": 3, "id": "w1-17", "result": {...}, "time": NS}
    {"type": "nemesis", "what": "latency 1500±500 ms on all clients", "time": NS}

``time`` is ``time.monotonic_ns()``: CLOCK_MONOTONIC, one clock for every process on the host, so
the histories of several worker processes merge into one. As in Jepsen, ``fail`` means the
operation certainly had no effect, and ``info`` that its outcome is unknown (a timeout, a lost
connection): it may take effect at any later time, or never. A process is a sequential stream of
operations; after an ``info`` the stream goes on under a new process number, since the old
operation may still be in flight.

Each line is flushed as it is written, so a worker that dies leaves a history the checker can
still read (an invocation without a completion counts as ``info``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

INVOKE, OK, FAIL, INFO, NEMESIS = "invoke", "ok", "fail", "info", "nemesis"


class HistoryWriter:
    """One worker's events, appended to ``path``; operation ids are ``w<worker>-<n>``."""

    def __init__(self, path: Path, worker: int) -> None:
        self.worker = worker
        self._file: IO[str] = path.open("a", encoding="utf-8")
        self._next = 0
        self._next_process = 0

    def new_process(self) -> int:
        """A process number no other worker uses (renumbered densely when histories merge)."""
        number = self.worker * 100_000 + self._next_process
        self._next_process += 1
        return number

    def _write(self, event: dict[str, Any]) -> None:
        self._file.write(json.dumps(event, separators=(",", ":")) + "\n")
        self._file.flush()

    def invoke(
        self,
        process: int,
        key: str,
        model: str,
        f: str,
        args: dict[str, Any],
        at: int | None = None,
    ) -> str:
        op_id = f"w{self.worker}-{self._next}"
        self._next += 1
        self._write(
            {
                "type": INVOKE,
                "process": process,
                "id": op_id,
                "key": key,
                "model": model,
                "f": f,
                "args": args,
                "time": time.monotonic_ns() if at is None else at,
            }
        )
        return op_id

    def complete(
        self,
        op_id: str,
        process: int,
        kind: str,
        result: dict[str, Any] | None = None,
        at: int | None = None,
    ) -> None:
        event: dict[str, Any] = {"type": kind, "process": process, "id": op_id}
        if result is not None:
            event["result"] = result
        event["time"] = time.monotonic_ns() if at is None else at
        self._write(event)

    def nemesis(self, what: str) -> None:
        self._write({"type": NEMESIS, "what": what, "time": time.monotonic_ns()})

    def close(self) -> None:
        self._file.close()


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as file:
        for line in file:
            if line.strip():
                event: dict[str, Any] = json.loads(line)
                yield event


def merge(paths: Iterable[Path], into: Path) -> list[dict[str, Any]]:
    """Merge worker histories by time into one file, numbering processes 0, 1, 2, ...

    Dense numbers keep porcupine's drawing compact (one row per process).
    """
    events = [event for path in paths if path.exists() for event in read_events(path)]
    events.sort(key=lambda e: e["time"])
    numbers: dict[int, int] = {}
    with into.open("w", encoding="utf-8") as out:
        for event in events:
            if "process" in event:
                event["process"] = numbers.setdefault(event["process"], len(numbers))
            out.write(json.dumps(event, separators=(",", ":")) + "\n")
    return events
