"""The memory backend beside the backend under test, and how to compare what each returns.

An outcome is ``("ok", result)`` with the result normalised (scans and due lists as sorted
lists, a CAS result as a tuple, a lock guard as ``"guard"``), ``("rejected", type, message)``
for argument errors the core raises before any round trip (identical text everywhere), or
``("error", type)`` for any other ``StateError`` (backends word those differently).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import lockyard
from lockyard import CasResult, InvalidKeyError, LockGuard, StateError

T = TypeVar("T")
Outcome = tuple[Any, ...]
Operation = Callable[[lockyard.Connection], Awaitable[Any]]


def normalise(result: object) -> object:
    if isinstance(result, list):
        return sorted(normalise(item) for item in result)  # type: ignore[type-var]
    if isinstance(result, CasResult):
        return ("cas", result.ok, result.current_value, result.current_version)
    if isinstance(result, LockGuard):
        return "guard"
    if isinstance(result, tuple):
        # Several reads returned together: each normalised (a due list inside one too, since
        # the contract leaves its order open and a planner may pick another index under load).
        return tuple(normalise(item) for item in result)
    return result


async def outcome(operation: Operation, side: lockyard.Connection) -> Outcome:
    try:
        result = await operation(side)
    except InvalidKeyError as exc:
        return ("rejected", "InvalidKeyError", str(exc))
    except StateError as exc:
        return ("error", type(exc).__name__)
    except (ValueError, TypeError) as exc:
        return ("rejected", type(exc).__name__, str(exc))
    return ("ok", normalise(result))


class Pair:
    """The memory backend (the executable contract) and the backend under test, side by side."""

    def __init__(
        self, runner: asyncio.Runner, model: lockyard.Connection, real: lockyard.Connection
    ) -> None:
        self._runner = runner
        self.model = model
        self.real = real

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coroutine)

    def reset(self) -> None:
        """Empty both stores and free every lock (a fresh start for the next example)."""
        for side in (self.model, self.real):
            self.run(side.store.purge())
            for info in self.run(side.locks.list_held()):
                self.run(side.locks.break_lock(info.name))

    def compare(self, operation: Operation) -> Outcome:
        """Run ``operation`` on both sides; the outcomes must be equal. Returns it."""
        model = self.run(outcome(operation, self.model))
        real = self.run(outcome(operation, self.real))
        assert real == model, f"the backend gave {real!r}, the memory model {model!r}"
        return real
