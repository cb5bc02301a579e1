"""One benchmark target (a backend URL): every pass of store ops, lock cycles, baselines, peers.

Per pass, for every scenario's connection: each store operation runs sequentially on one task
and then with ``concurrency`` tasks, each immediately followed (or, on odd passes, preceded) by
its raw-driver baseline in the same mode, so drifting machine load hits both sides of a ratio
alike. Then Lockyard's lock cycles, on PostgreSQL the durable floor (:mod:`.floor`; also on a
server with ``fsync=on``, :mod:`.durable`), the
concurrent-throughput table (:mod:`.throughput`: Lockyard against the raw drivers' pools, on the
default scenario's connection), then every peer library's. A failure is recorded as a note
with its exact error and the benchmark goes on with the next measurement.
"""

from __future__ import annotations

import contextlib
import math
import traceback
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import lockyard
from lockyard.config import BackendConfig, PostgresConfig, RedisConfig, parse_url
from lockyard.connection import Connection
from lockyard.errors import LockTimeoutError, StateError
from lockyard.locks import DistributedLock, LockGuard
from lockyard_dev.bench.baselines import RawDriver, raw_driver_for
from lockyard_dev.bench.durable import DURABLE_LOCKYARD, DurableTarget, durable_target
from lockyard_dev.bench.floor import DURABLE_FLOOR, FLOOR, measure_floor
from lockyard_dev.bench.lock_cycles import (
    ACQUIRE_TIMEOUT_S,
    LOCK_TTL_S,
    ContendedPlan,
    contended_async,
    contended_sync,
    uncontended_async,
    uncontended_sync,
)
from lockyard_dev.bench.peers import AsyncHandles, Handles, Peer, peers_for
from lockyard_dev.bench.results import PROBE, Mode, Record, Results, Section
from lockyard_dev.bench.scenarios import Scenario
from lockyard_dev.bench.stats import (
    OPS_PER_S,
    Op,
    Sample,
    time_concurrent,
    time_interleaved,
    warm_up,
)
from lockyard_dev.bench.store_ops import STORE_OPS, OpContext, StoreOp
from lockyard_dev.bench.sync_peers import SYNC_PEER
from lockyard_dev.bench.sync_store import measure as measure_sync_store
from lockyard_dev.bench.throughput import (
    THROUGHPUT_TASKS,
    LockyardSubject,
    Subject,
    raw_subjects,
)
from lockyard_dev.bench.throughput import measure as measure_throughput

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Plan:
    """What to run, from the command line."""

    iterations: int
    passes: int
    concurrency: int
    lock_workers: int
    lock_cycles: int
    hold_ms: float
    max_seconds: float
    #: Peer ids to run; ``None`` runs every peer of the backend.
    peers: list[str] | None
    scenarios: list[Scenario]
    ops: list[str] | None = None
    #: Task counts of the concurrent-throughput table (empty: not measured).
    throughput_tasks: tuple[int, ...] = THROUGHPUT_TASKS

    @property
    def warmup(self) -> int:
        return min(50, max(5, self.iterations // 20))


def describe(exc: BaseException) -> str:
    """The exact error, as ``Type: message`` (the message's first line)."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


#: Seconds the final purge of the run's prefix may take.
PURGE_TIMEOUT_S = 300.0


def _only_state_errors(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_state_errors(inner) for inner in exc.exceptions)
    return isinstance(exc, StateError)


class LockyardHandle:
    """A worker's handle on one Lockyard lock name (``acquire`` waits, as a caller would)."""

    def __init__(self, locks: DistributedLock, name: str) -> None:
        self._locks = locks
        self._name = name
        self._guard: LockGuard | None = None

    async def acquire(self) -> bool:
        try:
            self._guard = await self._locks.acquire(self._name, LOCK_TTL_S, ACQUIRE_TIMEOUT_S)
        except LockTimeoutError:
            return False
        return True

    async def release(self) -> None:
        assert self._guard is not None
        guard, self._guard = self._guard, None
        await guard.release()


class TargetRun:
    """Benchmarks one backend URL into ``results``."""

    def __init__(self, url: str, plan: Plan, results: Results, progress: Progress) -> None:
        parsed = parse_url(url)
        # A private prefix: the run never touches data it did not write, and purges it after.
        prefix = f"bench-{uuid.uuid4().hex[:10]}"
        self.config: BackendConfig = parsed.model_copy(update={"prefix": prefix})
        self.backend = self.config.backend
        self.plan = plan
        self.results = results
        self.progress = progress
        self._failed: set[str] = set()
        #: The fastest store-operation throughput seen so far, per mode (sizes prepared data).
        self._rates: dict[Mode, float] = {}

    def _note(self, subject: str, text: str) -> None:
        if self.results.note(self.backend, subject, text):
            self.progress(f"[{self.backend}] note: {subject}: {text}")

    async def run(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            # Registered first, so it runs last: once every connection is closed.
            stack.push_async_callback(self._purge)
            connections: list[tuple[Scenario, Connection]] = []
            for scenario in self.plan.scenarios:
                if not scenario.applies_to(self.backend):
                    continue
                connection = await lockyard.connect(self.config)
                stack.push_async_callback(self._close, connection)
                await stack.enter_async_context(scenario.setup(connection))
                connections.append((scenario, connection))
            if connections:
                version = await connections[0][1].server_version()
                self.results.servers[self.backend] = version
            raw = await self._open_raw()
            if raw is not None:
                stack.push_async_callback(self._close_raw, raw)
            durable = None
            if isinstance(self.config, PostgresConfig):
                durable = await self._durable_target(stack)
            peers = self._usable_peers()
            subjects: list[Subject] = []
            if connections and self.plan.throughput_tasks:
                subjects = await self._throughput_subjects(stack, connections[0][1])
            for pass_no in range(self.plan.passes):
                label = f"[{self.backend}] pass {pass_no + 1}/{self.plan.passes}"
                for index, (scenario, connection) in enumerate(connections):
                    if scenario.store_ops:
                        self.progress(f"{label}: store ops ({scenario.subject})")
                        raw_here = raw if index == 0 else None
                        await self._store_ops(pass_no, scenario, connection, raw_here)
                # Scenarios' lock cycles back to back, in alternating order from pass to pass,
                # so a drift in the machine's load does not favour one of them.
                ordered = connections if pass_no % 2 == 0 else connections[::-1]
                for scenario, connection in ordered:
                    self.progress(f"{label}: lock cycles ({scenario.subject})")
                    await self._lockyard_cycles(pass_no, scenario, connection)
                for scenario, connection in connections:
                    if scenario.probe is not None:
                        await self._probe(pass_no, scenario, connection)
                if isinstance(self.config, PostgresConfig):
                    await self._floor(pass_no, self.config, durable)
                if subjects:
                    self.progress(f"{label}: concurrent throughput")
                    await self._throughput(pass_no, subjects)
                if self._blocking_store_measured(peers):
                    self.progress(f"{label}: blocking store operations (threads)")
                    await self._blocking_store(pass_no)
                for peer in peers:
                    if peer.id in self._failed:
                        continue
                    self.progress(
                        f"[{self.backend}] pass {pass_no + 1}/{self.plan.passes}: {peer.label}"
                    )
                    await self._peer_cycles(pass_no, peer)

    async def _close(self, connection: Connection) -> None:
        await connection.close()

    async def _purge(self) -> None:
        """Remove everything the run wrote, on a connection of its own with a long timeout:
        thousands of entries take moto longer than one operation's timeout."""
        config = self.config.model_copy(update={"operation_timeout": PURGE_TIMEOUT_S})
        try:
            async with lockyard.connect(config) as connection:
                await connection.store.purge()
        except Exception as exc:
            self._note("cleanup", f"purging the benchmark's prefix failed: {describe(exc)}")

    async def _close_raw(self, raw: RawDriver) -> None:
        try:
            await raw.close()
        except Exception as exc:
            self._note("cleanup", f"removing the {raw.driver} scratch data failed: {describe(exc)}")

    async def _open_raw(self) -> RawDriver | None:
        raw = raw_driver_for(self.config)
        if raw is None:
            return None
        try:
            await raw.prepare()
        except Exception as exc:
            self._note(f"raw {raw.driver}", f"baseline unavailable: {describe(exc)}")
            with contextlib.suppress(Exception):
                await raw.close()
            return None
        return raw

    async def _throughput_subjects(
        self, stack: contextlib.AsyncExitStack, connection: Connection
    ) -> list[Subject]:
        """Lockyard and the raw drivers, prepared (a driver that fails is noted and left out)."""
        subjects: list[Subject] = [LockyardSubject(connection), *raw_subjects(self.config)]
        ready: list[Subject] = []
        for subject in subjects:
            try:
                await subject.prepare()
            except Exception as exc:
                self._note(f"throughput {subject.name}", f"not measured: {describe(exc)}")
                with contextlib.suppress(Exception):
                    await subject.close()
                continue
            stack.push_async_callback(self._close_subject, subject)
            ready.append(subject)
        return ready

    async def _close_subject(self, subject: Subject) -> None:
        try:
            await subject.close()
        except Exception as exc:
            self._note(f"throughput {subject.name}", f"cleanup failed: {describe(exc)}")

    async def _throughput(self, pass_no: int, subjects: list[Subject]) -> None:
        try:
            await measure_throughput(
                self.results,
                self.backend,
                pass_no,
                subjects,
                iterations=self.plan.iterations,
                max_seconds=self.plan.max_seconds,
                tasks=self.plan.throughput_tasks,
            )
        except Exception as exc:
            self._failed_pass("concurrent throughput", pass_no, exc)

    def _blocking_store_measured(self, peers: list[Peer]) -> bool:
        """Beside lockyard.sync's lock cycles, on Redis: where redis-py's blocking client is."""
        return isinstance(self.config, RedisConfig) and any(
            peer.label == SYNC_PEER for peer in peers
        )

    async def _blocking_store(self, pass_no: int) -> None:
        assert isinstance(self.config, RedisConfig)
        try:
            await measure_sync_store(
                self.results, self.config, pass_no, self.plan.iterations, self.plan.max_seconds
            )
        except Exception as exc:
            self._failed_pass("blocking store operations", pass_no, exc)

    async def _durable_target(self, stack: contextlib.AsyncExitStack) -> DurableTarget | None:
        self.progress(f"[{self.backend}] starting a second server with fsync=on (durable floor)")
        try:
            return await stack.enter_async_context(durable_target())
        except Exception as exc:
            self._note(DURABLE_FLOOR, f"not measured: its server did not start: {describe(exc)}")
            return None

    async def _floor(
        self, pass_no: int, config: PostgresConfig, durable: DurableTarget | None
    ) -> None:
        iterations, max_seconds = self.plan.iterations, self.plan.max_seconds
        try:
            await measure_floor(self.results, config, pass_no, iterations, max_seconds)
        except Exception as exc:
            self._failed_pass(FLOOR, pass_no, exc)
        if durable is None:
            return
        self.progress(f"[{self.backend}] pass {pass_no + 1}/{self.plan.passes}: fsync=on server")
        handle = LockyardHandle(durable.connection.locks, f"bench-d-{uuid.uuid4().hex[:6]}")

        async def floor() -> None:
            await measure_floor(
                self.results, durable.config, pass_no, iterations, max_seconds, DURABLE_FLOOR
            )

        async def cycles() -> None:
            metrics = await uncontended_async(handle, iterations, max_seconds)
            self.results.add(
                Record(
                    self.backend,
                    "floor",
                    DURABLE_LOCKYARD,
                    "lock_cycle",
                    "uncontended",
                    pass_no,
                    metrics,
                )
            )

        # Back to back, in alternating order from pass to pass (a drift in load favours neither).
        steps = [(DURABLE_FLOOR, floor), (DURABLE_LOCKYARD, cycles)]
        for name, step in steps if pass_no % 2 == 0 else steps[::-1]:
            try:
                await step()
            except Exception as exc:
                self._failed_pass(name, pass_no, exc)

    def _usable_peers(self) -> list[Peer]:
        usable = []
        for peer in peers_for(self.backend, self.plan.peers):
            error = peer.check_import()
            if error is None:
                usable.append(peer)
            else:
                self._note(peer.label, f"skipped: `{peer.requirement}` does not import: {error}")
        return usable

    # -- store operations ------------------------------------------------------------------
    async def _store_ops(
        self, pass_no: int, scenario: Scenario, connection: Connection, raw: RawDriver | None
    ) -> None:
        store = connection.store
        selected = [op for op in STORE_OPS if self.plan.ops is None or op.name in self.plan.ops]
        for op in selected:
            for mode in ("sequential", "concurrent"):
                name = f"{scenario.subject} {op.name} ({mode})"
                tasks = 1 if mode == "sequential" else self.plan.concurrency
                n = self.plan.iterations
                if op.consumes and mode in self._rates:
                    # As many entries as the fastest rate seen so far could use before the cap.
                    n = min(n, math.ceil(self._rates[mode] * self.plan.max_seconds * 1.25) + 1)
                ctx = OpContext(f"p{pass_no}{mode[0]}{uuid.uuid4().hex[:6]}", n, tasks)
                try:
                    await op.prepare(store, ctx)
                    mine = _store_call(op, connection, ctx)
                    await self._store_op(pass_no, scenario, op.name, mode, mine, raw, ctx.n)
                    await op.cleanup(store, ctx)
                except Exception as exc:
                    # Noted, and tried again in the next pass: the other passes still count.
                    self._failed_pass(name, pass_no, exc)

    def _failed_pass(self, name: str, pass_no: int, exc: Exception) -> None:
        """Note a Lockyard measurement that failed; a traceback only for an unexpected error
        (a ``StateError``, such as a timeout under moto's load, is fully said by its message)."""
        self._note(name, f"failed in pass {pass_no + 1}: {describe(exc)}")
        if not _only_state_errors(exc):
            self.progress(traceback.format_exc(limit=4))

    async def _store_op(
        self,
        pass_no: int,
        scenario: Scenario,
        op_name: str,
        mode: Mode,
        mine: Op,
        raw: RawDriver | None,
        n: int,
    ) -> None:
        """Time one store operation and, when there is one, the raw call it is compared with.

        Sequentially the two take turns call by call (``time_interleaved``): the goal is judged
        on the ratio of their sequential p50s, which must not depend on which ran first.
        Concurrent runs are timed one after the other, the order alternating by pass."""
        subjects: list[tuple[str, Section, Op, str]] = [(scenario.subject, "store", mine, "")]
        if raw is not None:
            call = raw.call_for(op_name)
            subjects.append((f"{raw.driver} {call}", "raw", raw.op(call), call))
        if mode == "sequential":
            for _, _, op, _ in subjects:
                await warm_up(op, self.plan.warmup)
            ops = [op for _, _, op, _ in subjects]
            samples = await time_interleaved(ops, n, self.plan.max_seconds)
        else:
            if pass_no % 2:
                subjects.reverse()
            samples = [await self._concurrent(op, n) for _, _, op, _ in subjects]
        for (subject, section, _, detail), sample in zip(subjects, samples, strict=True):
            self._record(subject, section, op_name, mode, pass_no, sample, detail)

    async def _concurrent(self, op: Op, n: int) -> Sample:
        async def warm(i: int, task: int) -> object:
            return await op(-1 - i, task)

        plan = self.plan
        await time_concurrent(warm, plan.concurrency * 2, plan.concurrency, plan.max_seconds)
        return await time_concurrent(op, n, plan.concurrency, plan.max_seconds)

    def _record(
        self,
        subject: str,
        section: Section,
        op_name: str,
        mode: Mode,
        pass_no: int,
        sample: Sample,
        detail: str,
    ) -> None:
        figures = sample.figures()
        self._rates[mode] = max(self._rates.get(mode, 0.0), figures[OPS_PER_S])
        self.results.add(
            Record(self.backend, section, subject, op_name, mode, pass_no, figures, detail)
        )

    def _contended_plan(self) -> ContendedPlan:
        plan = self.plan
        return ContendedPlan(
            plan.lock_workers, plan.lock_cycles, plan.max_seconds, plan.hold_ms / 1000
        )

    async def _lockyard_cycles(
        self, pass_no: int, scenario: Scenario, connection: Connection
    ) -> None:
        locks = connection.locks
        subject = scenario.subject
        tag = uuid.uuid4().hex[:6]
        steps: list[tuple[Mode, Callable[[], Awaitable[dict[str, float]]]]] = [
            (
                "uncontended",
                lambda: uncontended_async(
                    LockyardHandle(locks, f"bench-u-{tag}"),
                    self.plan.iterations,
                    self.plan.max_seconds,
                ),
            ),
            (
                "contended",
                lambda: contended_async(
                    [
                        LockyardHandle(locks, f"bench-c-{tag}")
                        for _ in range(self.plan.lock_workers)
                    ],
                    self._contended_plan(),
                ),
            ),
        ]
        for mode, step in steps:
            name = f"{subject} lock cycle ({mode})"
            try:
                metrics = await step()
            except Exception as exc:
                # Noted, and tried again in the next pass (Lockyard is never dropped).
                self._failed_pass(name, pass_no, exc)
                continue
            self.results.add(
                Record(self.backend, "lock", subject, "lock_cycle", mode, pass_no, metrics)
            )

    async def _probe(self, pass_no: int, scenario: Scenario, connection: Connection) -> None:
        assert scenario.probe is not None
        self.progress(
            f"[{self.backend}] pass {pass_no + 1}/{self.plan.passes}: {scenario.name} probe"
        )
        try:
            metrics = await scenario.probe(connection)
        except Exception as exc:
            failure = f"failed in pass {pass_no + 1}: {describe(exc)}"
            self._note(f"{scenario.subject} probe", failure)
            return
        self.results.add(
            Record(self.backend, "lock", scenario.subject, PROBE, "uncontended", pass_no, metrics)
        )

    async def _peer_cycles(self, pass_no: int, peer: Peer) -> None:
        tag = uuid.uuid4().hex[:6]
        try:
            async with peer.open(self.config, f"bench-u-{tag}", 1) as handles:
                metrics = await _uncontended(handles, self.plan)
            self.results.add(
                Record(
                    self.backend, "peer", peer.label, "lock_cycle", "uncontended", pass_no, metrics
                )
            )
            async with peer.open(self.config, f"bench-c-{tag}", self.plan.lock_workers) as handles:
                metrics = await _contended(handles, self._contended_plan())
            self.results.add(
                Record(
                    self.backend, "peer", peer.label, "lock_cycle", "contended", pass_no, metrics
                )
            )
        except Exception as exc:
            self._failed.add(peer.id)
            self._note(peer.label, f"failed at run time, skipped: {describe(exc)}")
            self.progress(traceback.format_exc(limit=6))


def _store_call(op: StoreOp, connection: Connection, ctx: OpContext) -> Op:
    store, call = connection.store, op.call

    async def timed(i: int, task: int) -> object:
        return await call(store, ctx, i, task)

    return timed


async def _uncontended(handles: Handles, plan: Plan) -> dict[str, float]:
    if isinstance(handles, AsyncHandles):
        return await uncontended_async(handles.handles[0], plan.iterations, plan.max_seconds)
    return await uncontended_sync(handles.handles[0], plan.iterations, plan.max_seconds)


async def _contended(handles: Handles, plan: ContendedPlan) -> dict[str, float]:
    if isinstance(handles, AsyncHandles):
        return await contended_async(handles.handles, plan)
    return await contended_sync(handles.handles, plan)
