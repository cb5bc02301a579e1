"""Scenarios: variants of one Lockyard connection that are benchmarked side by side.

Every scenario runs the same store-operation and lock-cycle benchmarks on its own connection, so
the report can show, for instance, lock cycles with Kubernetes Lease mirroring on and off. A
scenario prepares the open connection (attach an observer, start a helper) in ``setup``, an
async context manager that undoes its work on exit. The default scenario changes nothing.

A scenario may also bring a ``probe``: a measurement of its own, run once per pass after the
lock cycles and reported in its own table (``mirroring-on`` times how long a Lease takes to
appear after its acquisition).

To add one, append to ``SCENARIOS``; ``--scenarios`` selects by name and the report labels
Lockyard's rows ``lockyard`` (default) or ``lockyard[NAME]``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from lockyard.connection import Connection
from lockyard_dev.bench.results import LOCKYARD

Setup = Callable[[Connection], AbstractAsyncContextManager[None]]
Probe = Callable[[Connection], Awaitable[dict[str, float]]]


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
    #: A measurement of the scenario's own, run once per pass (its metrics go in one record).
    probe: Probe | None = None
    #: Whether store operations are measured too (not when the scenario only touches locks).
    store_ops: bool = True

    @property
    def subject(self) -> str:
        """How the report labels Lockyard's rows under this scenario."""
        return LOCKYARD if self.name == DEFAULT.name else f"{LOCKYARD}[{self.name}]"

    def applies_to(self, backend: str) -> bool:
        return not self.backends or backend in self.backends


@contextlib.asynccontextmanager
async def _mirroring_on(connection: Connection) -> AsyncIterator[None]:
    # Imported on use: the mirror needs the `kubernetes` extra, the other scenarios do not.
    from lockyard_dev.bench.mirroring import mirroring_on

    async with mirroring_on(connection):
        yield


async def _lease_visibility(connection: Connection) -> dict[str, float]:
    from lockyard_dev.bench.mirroring import lease_visibility

    return await lease_visibility(connection)


@contextlib.asynccontextmanager
async def _pooled(connection: Connection) -> AsyncIterator[None]:
    # The Redis client's auto-pipeline, set aside: every command checks out a connection.
    client = connection._backend.client  # type: ignore[attr-defined]
    pipeline = client.auto_pipeline
    client.auto_pipeline = None
    try:
        yield
    finally:
        client.auto_pipeline = pipeline


DEFAULT = Scenario("default", "Lockyard as configured by the URL, nothing attached")
POOLED = Scenario(
    "pooled",
    "Redis without auto-pipelining: each command on a pooled connection of its own (how every "
    "command ran before auto-pipelining; the same-run reference for its sequential cost)",
    setup=_pooled,
    backends=("redis",),
)
MIRRORING = Scenario(
    "mirroring-on",
    "every held lock mirrored into a Kubernetes Lease (needs $KUBECONFIG; `make bench` sets it)",
    setup=_mirroring_on,
    probe=_lease_visibility,
    store_ops=False,  # the mirror observes locks only
)


async def _election_handover(connection: Connection) -> dict[str, float]:
    from lockyard_dev.bench.elections import probe

    return await probe(connection)


ELECTIONS = Scenario(
    "elections",
    "leader elections: hand-over after resign() and after a leader's death, observe latency",
    probe=_election_handover,
    store_ops=False,  # what is new here is the probe; the lock cycles are the default's
)


async def _fenced_writes(connection: Connection) -> dict[str, float]:
    from lockyard_dev.bench.fenced import probe

    return await probe(connection)


FENCED = Scenario(
    "fenced",
    "fenced writes (fence=guard) against the same writes unfenced, interleaved: p50/p99 and "
    "the p50 ratio (goal: at most 1.15 on Redis and PostgreSQL)",
    probe=_fenced_writes,
    store_ops=False,  # the probe measures both forms itself, side by side
)


async def _permit_cycles(connection: Connection) -> dict[str, float]:
    from lockyard_dev.bench.permits import probe

    return await probe(connection)


PERMITS = Scenario(
    "permits",
    "semaphore and read-write lock cycles, uncontended and 16 workers contending, beside "
    "asyncio.Semaphore as the in-process reference",
    probe=_permit_cycles,
    store_ops=False,
)

#: Every known scenario, in report order.
SCENARIOS: list[Scenario] = [DEFAULT, MIRRORING, POOLED, ELECTIONS, FENCED, PERMITS]


def by_name(names: list[str]) -> list[Scenario]:
    """The scenarios called ``names``, in the given order; ``KeyError`` names an unknown one."""
    known = {scenario.name: scenario for scenario in SCENARIOS}
    return [known[name] for name in names]
