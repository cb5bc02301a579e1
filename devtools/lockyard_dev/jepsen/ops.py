"""Running one recorded operation: invoke, await, then ok / fail / info by what came back.

An error whose operation may have reached the backend is ``info`` (unknown outcome): timeouts,
lost or reset connections, and server refusals alike, since Lockyard cannot tell a reply lost
after the server applied the command from a request never sent. Exceptions outside the
client's contract (the ``StateError`` tree; ``KubeApiError`` for Lockyard's Kubernetes client)
are recorded as ``info`` too (the op may have run) and counted, with their type, in the
worker's notes.
"""

from __future__ import annotations

import asyncio
import json
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from lockyard.errors import StateError
from lockyard_dev.jepsen.history import INFO, OK, HistoryWriter

T = TypeVar("T")
#: What an exception that is really an answer records: (OK, result) or (FAIL, None).
Answer = tuple[str, dict[str, Any] | None]


class NotRecorded(Exception):
    """Raised by :meth:`Recorder.perform` after an unknown or failed outcome was recorded."""

    def __init__(self, kind: str, cause: BaseException) -> None:
        super().__init__(f"{kind}: {cause!r}")
        self.kind = kind
        self.cause = cause


@dataclass
class Tally:
    """What one worker saw, for the run's report."""

    ok: int = 0
    fail: int = 0
    info: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    #: Exceptions outside lockyard's StateError tree: contract violations.
    foreign: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "fail": self.fail,
            "info": self.info,
            "errors": dict(self.errors),
            "foreign": dict(self.foreign),
        }


class Notes:
    """Facts beside the history (lock beliefs, fenced writes, loss timings), as JSON lines."""

    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("a", encoding="utf-8")

    def write(self, kind: str, **fields: Any) -> None:
        self._file.write(json.dumps({"note": kind, **fields}, separators=(",", ":")) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class Process:
    """A Jepsen process: one sequential stream of operations with its own number."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.number = recorder.history.new_process()

    def crashed(self) -> None:
        """After an unknown outcome: go on as a new process (the old op may still run)."""
        self.number = self.recorder.history.new_process()


class Recorder:
    """Wraps operations of one worker with history events and a tally."""

    def __init__(
        self,
        history: HistoryWriter,
        notes: Notes,
        contract: tuple[type[BaseException], ...] = (StateError,),
    ) -> None:
        self.history = history
        self.notes = notes
        #: The exception types the client under test promises (anything else is a breach).
        self.contract = contract
        self.tally = Tally()

    def foreign(self, f: str, exc: BaseException) -> None:
        """Note an exception outside the contract, with where it came from."""
        self.notes.write(
            "foreign",
            f=f,
            error=repr(exc),
            traceback="".join(traceback.format_exception(exc)[-6:]),
            time=time.monotonic_ns(),
        )

    async def perform(
        self,
        process: Process,
        key: str,
        model: str,
        f: str,
        args: dict[str, Any],
        action: Callable[[], Awaitable[T]],
        encode: Callable[[T], dict[str, Any]],
        definite: Callable[[BaseException], Answer | None] = lambda exc: None,
    ) -> T:
        """Record ``f(args)`` on ``key``; return its value, or raise :class:`NotRecorded`.

        ``definite`` maps an exception that is in fact an answer (a ``SerializationError`` from
        ``increment``, ``LockExpiredError`` from ``extend``: ``(OK, result)``; a
        ``LockTimeoutError``, which changed nothing: ``(FAIL, None)``) to what to record; it
        returns None for every other exception.
        """
        op_id = self.history.invoke(process.number, key, model, f, args)
        try:
            value = await action()
        except asyncio.CancelledError:
            self.history.complete(op_id, process.number, INFO)
            process.crashed()
            raise
        except Exception as exc:
            answer = definite(exc)
            if answer is not None:
                kind, result = answer
                self.history.complete(op_id, process.number, kind, result)
                if kind == OK:
                    self.tally.ok += 1
                else:
                    self.tally.fail += 1
                raise NotRecorded(kind, exc) from exc
            self.history.complete(op_id, process.number, INFO)
            self.tally.info += 1
            self.tally.errors[type(exc).__name__] += 1
            if not isinstance(exc, self.contract):
                self.tally.foreign[f"{type(exc).__module__}.{type(exc).__qualname__}"] += 1
                self.foreign(f, exc)
            process.crashed()
            raise NotRecorded(INFO, exc) from exc
        self.history.complete(op_id, process.number, OK, encode(value))
        self.tally.ok += 1
        return value
