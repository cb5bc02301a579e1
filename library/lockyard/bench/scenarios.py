"""Scenarios: variants of one Lockyard connection that are benchmarked side by side.

Every scenario runs the same store-operation and lock-cycle benchmarks on its own connection, so
the report can show, for instance, lock cycles with Kubernetes Lease mirroring on and off. A
scenario prepares the open connection (attach an observer, start a helper) in ``setup``, an
async context manager that undoes its work on exit. The default scenario changes nothing.

To add one, append to ``SCENARIOS``; ``--scenarios`` selects by name and the report labels
Lockyard's rows ``lockyard`` (default) or ``lockyard[NAME]``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from lockyard.bench.results import LOCKYARD
from lockyard.connection import Connection

Setup = Callable[[Connection], AbstractAsyncContextManager[None]]


@contextlib.asynccontextmanager
async def _as_is(connection: Connection) -> AsyncIterator[None]:
    yield


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    setup: Setup = _as_is
    #: Backends this scenario applies to; empty means all.
    backends: tuple[str, ...] = ()

    @property
    def subject(self) -> str:
        """How the report labels Lockyard's rows under this scenario."""
        return LOCKYARD if self.name == DEFAULT.name else f"{LOCKYARD}[{self.name}]"

    def applies_to(self, backend: str) -> bool:
        return not self.backends or backend in self.backends


DEFAULT = Scenario("default", "Lockyard as configured by the URL, nothing attached")

#: Every known scenario, in report order. Lease mirroring adds "mirroring-on" here.
SCENARIOS: list[Scenario] = [DEFAULT]


def by_name(names: list[str]) -> list[Scenario]:
    """The scenarios called ``names``, in the given order; ``KeyError`` names an unknown one."""
    known = {scenario.name: scenario for scenario in SCENARIOS}
    return [known[name] for name in names]
