"""The probe: does a store's backend let a new workload in, and does it answer?

Two parts, run at every probe interval (``probeIntervalSeconds``):

1. :meth:`Prober.login`: a fresh login with the binding's credentials and TLS settings
   (:mod:`~lockyard_operator.fresh_login`), because the operator's kept connection authenticated
   long ago and would go on working after a password change;
2. :meth:`Prober.inspect`: on the kept connection, ping (latency), server version and locks
   held, for the status.

Either part raises :class:`BackendProblem`, classified; :meth:`Prober.failed` records it
(``BackendReachable=False``, a Warning Event on the transition, metrics).
"""

from __future__ import annotations

import asyncio
from typing import Literal

from lockyard.config.resource import BackendStatus
from lockyard.connection import Connection
from lockyard_operator import reasons
from lockyard_operator.classify import Problem, classify, scrub
from lockyard_operator.fresh_login import LoginCheck
from lockyard_operator.metrics import Metrics
from lockyard_operator.state import EventSink, Failed, StoreRef, StoreState

Stage = Literal["login", "connection"]


class BackendProblem(Exception):
    """A probe part failed: ``stage`` says whether the new login or the kept connection did."""

    def __init__(self, problem: Problem, stage: Stage) -> None:
        super().__init__(problem.message)
        self.problem = problem
        self.stage = stage


class Prober:
    """Runs the probe's parts and records BackendReachable, Events and metrics."""

    def __init__(self, metrics: Metrics, emit: EventSink) -> None:
        self._metrics = metrics
        self._emit = emit

    async def check(
        self,
        ref: StoreRef,
        store: StoreState,
        connection: Connection,
        login: LoginCheck | None,
        timeout: float,
    ) -> None:
        """Both parts: the fresh login, then the kept connection's answers."""
        await self.login(login, timeout)
        await self.inspect(ref, store, connection, timeout)

    async def login(self, check: LoginCheck | None, timeout: float) -> None:
        """A fresh login (``check`` is ``None`` only for a connection opened just now)."""
        if check is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await check.check()
        except Exception as exc:
            raise BackendProblem(classify(exc), "login") from exc

    async def inspect(
        self, ref: StoreRef, store: StoreState, connection: Connection, timeout: float
    ) -> None:
        """Ping, version and locks held on the kept connection; records success."""
        try:
            async with asyncio.timeout(timeout):
                latency = await connection.ping()
                version = await connection.server_version()
                held = len(await connection.locks.list_held())
        except Exception as exc:
            raise BackendProblem(classify(exc), "connection") from exc
        book = store.book
        book.backend = BackendStatus(
            name=connection.backend, version=version, latency_ms=round(latency * 1000, 3)
        )
        book.set_guarantees(connection.guarantees)
        book.locks_held = held
        self._set_reachable(
            ref,
            store,
            True,
            reasons.PROBE_SUCCEEDED,
            f"{connection.backend} {version} answered in {latency * 1000:.1f} ms",
        )
        self._metrics.probe_latency.set(ref.namespace, ref.name, value=latency)
        self._metrics.backend_up.set(ref.namespace, ref.name, value=1)
        self._metrics.locks_held.set(ref.namespace, ref.name, value=held)

    def failed(self, ref: StoreRef, store: StoreState, problem: Problem) -> Failed:
        """Record ``problem`` (BackendReachable false); the failure that ends the call."""
        message = scrub(problem.message, store.secret_values)
        self._set_reachable(ref, store, False, problem.reason, message)
        self._metrics.probes.inc(ref.namespace, ref.name, problem.reason)
        self._metrics.backend_up.set(ref.namespace, ref.name, value=0)
        return Failed(problem.reason, message)

    def _set_reachable(
        self, ref: StoreRef, store: StoreState, ok: bool, reason: str, message: str
    ) -> None:
        previous = store.book.condition(reasons.BACKEND_REACHABLE)
        changed = store.book.set(reasons.BACKEND_REACHABLE, ok, reason, message, ref.generation)
        if not changed:
            return
        if not ok:
            self._emit(ref, "Warning", reason, message)
        elif previous is not None and previous.status == "False":
            self._emit(ref, "Normal", reasons.BACKEND_RECOVERED, message)
