"""``apiserver-restart``: kube-apiserver stopped and started again while the operator reconciles
a store and a workload takes locks through it with every held lock mirrored into a Lease.

Set-up, in a namespace of its own: a password-protected Redis server, the operator (its own
process, as its ServiceAccount), a ``StateStore`` on that Redis with ``leaseMirroring: true``,
and a workload ServiceAccount bound to the store's Role. The workload opens ``--connections``
handles with ``lockyard.connect_store`` (binding read through the API; the binding turns lease
mirroring on, each handle with its own mirror, like that many pods) and runs the stress workload
on them (:mod:`lockyard_dev.stress.workload`: every store and lock operation, the fenced resource,
the ledgers), plus marker locks held with ``hold()`` (renewed every ttl/3).

Timeline: the workload runs ``warmup_s``; kube-apiserver is stopped (SIGTERM; etcd and the
controller manager keep running); while it is down the ``before`` markers are released and the
``during`` markers taken; after ``outage_s`` it is started again on the same port. Then, at
once: the store's spec is changed (the operator must notice it through its re-established
watch), and the Leases are watched until they show the markers exactly as the backend holds
them. The workload goes on ``after_s`` seconds, stops, and everything is read back on the same
connections, which were never reopened.

Figures: operations attempted and failed (all of them, and lock operations before, during and
after the outage with their latency), how long the API was down, the mirrors' failed and retried
calls, the mirror catch-up time (markers), the operator's recovery time (spec change reconciled),
the oldest stale Lease and the final agreement between Leases and backend. Violations: any
stress invariant (overlapping holders, lost writes, a failure that is not a ``StateError`` within
the operation timeout), any lock operation failing during the outage, a marker hold failing, a
Lease left stale beyond its TTL + 10 s once the API was back, two Leases for one lock, Leases
disagreeing with the backend after the run, and an operator that died or never reconciled the
change.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import lockyard
from lockyard.connection import Connection
from lockyard.errors import ConfigError, StateError
from lockyard.kube.api import KubeApi, KubeApiError
from lockyard.kube.names import store_object_name
from lockyard.kube.paths import leases_path, secrets_path, stores_path
from lockyard.locks import DistributedLock, LockGuard
from lockyard.mirror import LeaseMirror, MirroredLease, mirror_of, store_selector
from lockyard_dev.chaos.cluster import (
    Cluster,
    decode,
    poll,
)
from lockyard_dev.chaos.kube_result import KubeChaosSettings
from lockyard_dev.chaos.kube_scenario import ScenarioRun
from lockyard_dev.cluster.operator_process import OperatorProcess
from lockyard_dev.servers.redis import RedisServer
from lockyard_dev.stress.recorder import OpFailed, Recorder
from lockyard_dev.stress.report import CHECKS
from lockyard_dev.stress.workload import LOCK_OPS, Workload, WorkloadSettings

NAME = "apiserver-restart"
STORE = "orders"
#: The store's defaultTtlSeconds, and what the change after the restart sets it to.
TTL_BEFORE, TTL_AFTER = 10, 12
MARKER_TTL_S = 6.0
SAMPLE_EVERY_S = 0.5
#: A Lease may stay stale at most its TTL plus this, counted once the API is back.
STALE_GRACE_S = 10.0
READY_TIMEOUT_S = 90.0
RECOVERY_TIMEOUT_S = 60.0
VERIFY = "verify"
#: Lock operations that never wait for a lock: their latency is the backend's and the client's.
QUICK_LOCK_OPS = ("try_acquire", "extend", "is_held", "release", "break_lock", "list_held")


class TimedRecorder(Recorder):
    """The stress recorder, also noting when each lock operation ran and how it ended."""

    def __init__(self, operation_timeout: float, slack: float) -> None:
        super().__init__(operation_timeout, slack, writes_may_be_lost=False)
        #: (operation, started, ended, error type or "" when it did not fail)
        self.lock_samples: list[tuple[str, float, float, str]] = []

    @contextlib.asynccontextmanager
    async def measure(
        self, op: str, *, expected: tuple[type[StateError], ...] = (), extra: float = 0.0
    ) -> AsyncIterator[None]:
        if op not in LOCK_OPS:
            async with super().measure(op, expected=expected, extra=extra):
                yield
            return
        started, error = time.monotonic(), ""
        try:
            async with super().measure(op, expected=expected, extra=extra):
                yield
        except OpFailed as exc:
            error = type(exc.error).__name__
            raise
        finally:
            self.lock_samples.append((op, started, time.monotonic(), error))


@dataclass
class Window:
    """Lock operations started within one stretch of the timeline."""

    name: str
    attempted: int = 0
    failed: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    #: Latencies of the lock operations that never wait (QUICK_LOCK_OPS) and succeeded.
    quick: list[float] = field(default_factory=list)

    def add(self, op: str, took: float, error: str) -> None:
        self.attempted += 1
        if error:
            self.failed += 1
            self.errors[error] += 1
        elif op in QUICK_LOCK_OPS:
            self.quick.append(took)

    def percentile_ms(self, fraction: float) -> float:
        if not self.quick:
            return 0.0
        ordered = sorted(self.quick)
        return 1000 * ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    def describe(self) -> str:
        errors = ", ".join(f"{k} {v}" for k, v in self.errors.items())
        errors = f" ({errors})" if errors else ""
        return (
            f"{self.attempted:,} attempted, {self.failed:,} failed{errors}; no-wait lock "
            f"operations p50 {self.percentile_ms(0.5):.1f} ms, p99 "
            f"{self.percentile_ms(0.99):.1f} ms, max {self.percentile_ms(1.0):.1f} ms"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "attempted": self.attempted,
            "failed": self.failed,
            "errors": dict(self.errors),
            "quick_p50_ms": round(self.percentile_ms(0.5), 3),
            "quick_p99_ms": round(self.percentile_ms(0.99), 3),
            "quick_max_ms": round(self.percentile_ms(1.0), 3),
        }


class Marker:
    """A lock held with ``hold()`` by a task of its own until :meth:`finish`."""

    def __init__(self, connection: Connection, name: str) -> None:
        self.connection = connection
        self.name = name
        self.guard: LockGuard | None = None
        self._held = asyncio.Event()
        self._done = asyncio.Event()
        self._task = asyncio.create_task(self._hold(), name=f"chaos-marker:{name}")

    async def _hold(self) -> None:
        async with self.connection.locks.hold(self.name, MARKER_TTL_S, timeout=10) as guard:
            self.guard = guard
            self._held.set()
            await self._done.wait()

    async def wait_held(self) -> bool:
        held = asyncio.create_task(self._held.wait())
        await asyncio.wait({held, self._task}, return_when=asyncio.FIRST_COMPLETED)
        held.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await held
        return self._held.is_set() and not self._task.done()

    async def finish(self) -> BaseException | None:
        """Release the lock; the exception the hold ended with, if any."""
        self._done.set()
        (outcome,) = await asyncio.gather(self._task, return_exceptions=True)
        return outcome if isinstance(outcome, BaseException) else None


async def read_leases(api: KubeApi, namespace: str) -> list[MirroredLease]:
    found = await api.get(leases_path(namespace), {"labelSelector": store_selector(STORE)})
    return [MirroredLease.from_object(item) for item in found.get("items") or []]


class LeaseSampler:
    """Every ``SAMPLE_EVERY_S``: the store's Leases, then the locks the backend holds (in that
    order, as the reaper reads them: a Lease whose acquisition the backend does not report at
    that very token is over). Keeps how long each stale Lease stayed stale, counted only while
    the API answers: from the later of its first sighting and the first answer after a sample
    went unanswered (nothing can fix a Lease while the API is away)."""

    def __init__(self, api: KubeApi, namespace: str, locks: DistributedLock) -> None:
        self.api = api
        self.namespace = namespace
        self.locks = locks
        #: When (monotonic, wall) the API answered again after an unanswered sample.
        self.resumed_at = 0.0
        self.resumed_wall = 0.0
        self._interrupted = False
        self.first_stale: dict[tuple[str, int | None], float] = {}
        self.seen: set[tuple[str, int | None]] = set()
        self.stale_seen: set[tuple[str, int | None]] = set()
        #: Stale beyond their bound: (lease name, token) -> the age seen, and the bound.
        self.too_old: dict[tuple[str, int | None], tuple[float, float]] = {}
        self.max_stale_s = 0.0
        self.worst = ""
        self.slowest_sample_s = 0.0
        self.samples = 0
        self.unanswered = 0
        self.duplicates = 0

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.sample()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SAMPLE_EVERY_S):
                    await stop.wait()

    async def sample(self) -> None:
        started = time.monotonic()
        try:
            leases = await read_leases(self.api, self.namespace)
            held = await self.locks.list_held()
        except (KubeApiError, StateError):
            self.unanswered += 1
            self._interrupted = True
            return
        now = time.monotonic()
        if self._interrupted:
            self._interrupted = False
            self.resumed_at, self.resumed_wall = now, time.time()
        self.slowest_sample_s = max(self.slowest_sample_s, now - started)
        self.samples += 1
        live = {(info.name, info.fencing_token) for info in held}
        per_lock = Counter(lease.lock for lease in leases)
        self.duplicates += sum(1 for count in per_lock.values() if count > 1)
        stale_now = set()
        for lease in leases:
            key = (lease.name, lease.fencing_token)
            self.seen.add(key)
            if (lease.lock, lease.fencing_token) in live:
                continue
            stale_now.add(key)
            self.stale_seen.add(key)
            age = now - max(self.first_stale.setdefault(key, now), self.resumed_at)
            if age > self.max_stale_s:
                self.max_stale_s = age
                self.worst = (
                    f"{lease.lock} token {lease.fencing_token}: acquired "
                    f"{(lease.acquire_time or 0) - self.resumed_wall:+.1f} s and its Lease "
                    f"created {(lease.created or 0) - self.resumed_wall:+.1f} s from the API's "
                    "first answer"
                )
            ttl = lease.lease_ms / 1000 if lease.lease_ms else float(lease.duration_s or 0)
            bound = ttl + STALE_GRACE_S
            if age > bound:
                self.too_old[key] = (age, bound)
        for key in set(self.first_stale) - stale_now:
            del self.first_stale[key]


class ApiserverRestart(ScenarioRun):
    """One run of the scenario (see the module docstring)."""

    name = NAME

    @staticmethod
    def describe(settings: KubeChaosSettings) -> str:
        return (
            f"kube-apiserver stopped for {settings.outage_s:g} s and started again while the "
            f"operator reconciles and {settings.connections} lease-mirrored handles take locks"
        )

    def __init__(
        self, cluster: Cluster, settings: KubeChaosSettings, stack: contextlib.AsyncExitStack
    ) -> None:
        super().__init__(cluster, settings, stack)
        self.operator: OperatorProcess | None = None
        self.connections: list[Connection] = []
        self.mirrors: list[LeaseMirror] = []
        self.rec = TimedRecorder(settings.operation_timeout_s, settings.slack_s)
        self.workload: Workload | None = None
        self.workload_running = False

    # -- set-up ----------------------------------------------------------------------------
    async def set_up(self) -> bool:
        cluster, result = self.cluster, self.result
        self.namespace = namespace = await cluster.create_namespace("chaos-apiserver")
        self.stack.push_async_callback(cluster.delete_namespace, namespace)
        password = secrets.token_urlsafe(12)
        redis = RedisServer(password=password)
        await asyncio.to_thread(redis.start)
        self.stack.push_async_callback(asyncio.to_thread, redis.remove)
        await cluster.create_secret(namespace, "auth", {"password": password})
        operator = self.operator = cluster.operator(namespace, self.folder / "operator.log")
        operator.start()
        self.stack.push_async_callback(asyncio.to_thread, operator.stop)
        if await operator.wait_healthy() is None:
            self.checks.violation("set-up", f"the operator never got healthy:\n{operator.tail()}")
            return False
        spec = {
            "redis": {
                "host": "127.0.0.1",
                "port": redis.port,
                "passwordSecretRef": {"name": "auth", "key": "password"},
            },
            "locks": {"defaultTtlSeconds": TTL_BEFORE, "leaseMirroring": True},
            "operationTimeoutSeconds": self.settings.operation_timeout_s,
            "probeIntervalSeconds": 2,
        }
        created = time.monotonic()
        await cluster.create_store(namespace, STORE, spec)
        if await cluster.wait_ready(namespace, STORE, READY_TIMEOUT_S) is None:
            self.checks.violation("set-up", f"{STORE} never became Ready:\n{operator.tail()}")
            return False
        result.line(
            "set-up",
            f"namespace {namespace}, Redis on port {redis.port}, operator pid {operator.pid}; "
            f"StateStore {STORE} Ready {time.monotonic() - created:.2f} s after its creation",
        )
        kubeconfig = await cluster.workload_kubeconfig(
            namespace, STORE, self.folder / "workload.kubeconfig"
        )
        # connect_store and the mirrors read $KUBECONFIG, as in a pod they would use its token.
        previous = os.environ.get("KUBECONFIG")
        os.environ["KUBECONFIG"] = str(kubeconfig)
        self.stack.callback(_restore_kubeconfig, previous)
        self.stack.push_async_callback(self._close_connections)
        for _ in range(self.settings.connections):
            connection = await self._connect_store()
            self.connections.append(connection)
            mirror = mirror_of(connection)
            if self.checks.check(
                "lease mirroring turned on by the binding",
                mirror is not None,
                "connect_store did not mirror the handle's locks",
            ):
                assert mirror is not None
                self.mirrors.append(mirror)
        return bool(self.mirrors)

    async def _connect_store(self) -> Connection:
        """``connect_store``, retried for a while as a restarted pod would: the RoleBinding
        made a moment ago may not be in force yet."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                return await lockyard.connect_store(STORE, self.namespace)
            except ConfigError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def _close_connections(self) -> None:
        while self.connections:
            await self.connections.pop().close()

    # -- the run ---------------------------------------------------------------------------
    async def run(self) -> None:
        if not await self.set_up():
            return
        settings, result, plane = self.settings, self.result, self.cluster.plane
        workload = self.workload = Workload(
            self.connections,
            WorkloadSettings(tasks=settings.tasks, hold_ms=settings.hold_ms),
            self.rec,
            settings.seed,
        )
        sampler = LeaseSampler(self.api, self.namespace, self.connections[0].locks)
        stop_sampling = asyncio.Event()
        sampling = asyncio.create_task(sampler.run(stop_sampling), name="chaos-lease-sampler")
        self.stack.push_async_callback(_stop_task, sampling, stop_sampling)
        started = time.monotonic()
        workload.start()
        self.workload_running = True
        self.stack.push_async_callback(self._stop_workload)
        # One marker per handle, so the catch-up time is that of the slowest mirror.
        markers = len(self.connections)
        before = [self._marker(f"chaos-before-{i}", i) for i in range(markers)]
        during: list[Marker] = []
        self.stack.push_async_callback(_finish_all, before, during)
        held = await asyncio.gather(*(m.wait_held() for m in before))
        taken_at = time.monotonic()
        appeared = await poll(lambda: self._mirrored(held=before, gone=[]), 30.0, 0.02)
        self.checks.check(
            "marker Leases appear",
            appeared is not None and all(held),
            "the markers taken before the fault never showed as Leases",
        )
        if appeared is not None:
            result.figures["marker_leases_appeared_s"] = round(appeared - taken_at, 3)
        await asyncio.sleep(max(0.0, started + settings.warmup_s - time.monotonic()))
        written_before = sum(m.metrics.written for m in self.mirrors)

        # The fault: the API server goes; meanwhile the held set changes under the mirrors.
        fault_at = time.monotonic()
        await asyncio.to_thread(plane.stop_apiserver)
        stopped_at = time.monotonic()
        failures = [await m.finish() for m in before]
        during.extend(self._marker(f"chaos-during-{i}", i) for i in range(markers))
        taken = await asyncio.gather(*(m.wait_held() for m in during))
        await asyncio.sleep(max(0.0, stopped_at + settings.outage_s - time.monotonic()))
        starting_at = time.monotonic()
        await asyncio.to_thread(plane.start_apiserver)
        back_at = time.monotonic()
        failed_calls = sum(m.metrics.failed for m in self.mirrors)
        result.downtime_s = back_at - fault_at
        result.line(
            "kube-apiserver",
            f"stopped in {stopped_at - fault_at:.2f} s, kept down {starting_at - stopped_at:.2f} "
            f"s, ready again {back_at - starting_at:.2f} s after its start: unavailable "
            f"{back_at - fault_at:.2f} s",
        )

        catch_up, operator_s = await asyncio.gather(
            poll(lambda: self._mirrored(held=during, gone=before), RECOVERY_TIMEOUT_S, 0.05),
            self._operator_recovery(),
        )
        catch_up_s = None if catch_up is None else catch_up - back_at
        await asyncio.sleep(max(0.0, back_at + settings.after_s - time.monotonic()))
        await self._stop_workload()
        stopped_workload = time.monotonic()
        failures += [await m.finish() for m in during]
        agreed = await self._final_agreement()
        converge_s = None if agreed is None else agreed - stopped_workload
        await workload.verify(self.connections[0])
        stop_sampling.set()
        await sampling

        self.checks.check(
            "marker locks held through the outage",
            all(held) and all(taken) and not any(failures),
            f"a marker hold failed: {[repr(f) for f in failures if f]}",
            amount=2 * markers,
        )
        self._workload_figures(fault_at, starting_at, back_at)
        self._lease_figures(sampler, catch_up_s, converge_s, written_before, failed_calls)
        alive = self.operator is not None and self.operator.running
        self.checks.check(
            "operator survived the outage (same process)",
            alive,
            f"the operator exited:\n{self.operator.tail() if self.operator else ''}",
        )
        self.checks.check(
            "operator reconciled a spec change after the restart",
            operator_s is not None,
            f"defaultTtlSeconds {TTL_AFTER} never reached Ready and the binding within "
            f"{RECOVERY_TIMEOUT_S:g} s",
        )
        result.line(
            "operator",
            f"pid {self.operator.pid if self.operator else 0} "
            f"{'still running' if alive else 'GONE'}; a spec change made when the API was back "
            + ("never reconciled" if operator_s is None else f"reconciled in {operator_s:.2f} s"),
        )
        unrecovered = self._unrecovered(fault_at)
        result.recovered = catch_up_s is not None and operator_s is not None and not unrecovered
        if catch_up_s is not None and operator_s is not None:
            result.recover_s = max(catch_up_s, operator_s)
        if unrecovered:
            result.notes.append(f"operations that never succeeded again: {', '.join(unrecovered)}")
        result.figures |= {
            "downtime_s": round(result.downtime_s, 3),
            "mirror_catch_up_s": None if catch_up_s is None else round(catch_up_s, 3),
            "operator_recovery_s": None if operator_s is None else round(operator_s, 3),
            "final_agreement_s": None if converge_s is None else round(converge_s, 3),
        }
        await self._delete_store()
        troubles = [] if self.operator is None else self.operator.troubles()
        if troubles:
            forbidden = sum("Forbidden" in line for line in troubles)
            result.notes.append(
                f"operator log: {len(troubles)} line(s) with Forbidden or a traceback, "
                f"{forbidden} of them Forbidden; the first ones are in the JSON figures"
            )
            result.figures["operator_log_troubles"] = troubles[:10]

    def _marker(self, name: str, index: int) -> Marker:
        return Marker(self.connections[index % len(self.connections)], name)

    async def _stop_workload(self) -> None:
        if self.workload is not None and self.workload_running:
            self.workload_running = False
            await self.workload.stop()

    async def _mirrored(self, held: list[Marker], gone: list[Marker]) -> float | None:
        """When the Leases show ``held`` at their tokens and unexpired, and none of ``gone``."""
        leases = {lease.lock: lease for lease in await read_leases(self.api, self.namespace)}
        now = time.time()
        for marker in held:
            lease = leases.get(marker.name)
            if (
                lease is None
                or marker.guard is None
                or lease.fencing_token != marker.guard.fencing_token
                or lease.expired(now)
            ):
                return None
        if any(marker.name in leases for marker in gone):
            return None
        return time.monotonic()

    async def _operator_recovery(self) -> float | None:
        """Change the spec now; seconds until it is reconciled (Ready for the new generation,
        binding updated), or ``None``."""
        started = time.monotonic()
        path = stores_path(self.namespace, STORE)
        patch = {"spec": {"locks": {"defaultTtlSeconds": TTL_AFTER}}}

        async def patched() -> dict[str, Any]:
            return await self.api.merge_patch(path, patch)

        store = await poll(patched, RECOVERY_TIMEOUT_S)
        if store is None:
            return None
        generation = store["metadata"]["generation"]
        binding = secrets_path(self.namespace, store_object_name(STORE))

        async def reconciled() -> bool:
            current = await self.api.get(path)
            status = current.get("status") or {}
            if status.get("observedGeneration") != generation:
                return False
            ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
            if not ready or ready[0].get("status") != "True":
                return False
            data = decode(await self.api.get(binding))
            return data.get("default-ttl-seconds") == f"{TTL_AFTER:g}"

        done = await poll(reconciled, RECOVERY_TIMEOUT_S - (time.monotonic() - started))
        return time.monotonic() - started if done else None

    async def _final_agreement(self) -> float | None:
        """Once the workload has stopped: when the Leases match what the backend holds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RECOVERY_TIMEOUT_S):
                await asyncio.gather(*(mirror.flush() for mirror in self.mirrors))
        locks = self.connections[0].locks

        async def agree() -> float | None:
            leases = await read_leases(self.api, self.namespace)
            held = await locks.list_held()
            mirrored = {(lease.lock, lease.fencing_token) for lease in leases}
            backend = {(info.name, info.fencing_token) for info in held}
            return time.monotonic() if mirrored == backend else None

        # The longest a Lease may outlive its lock: its TTL (10 s) + the grace.
        agreed = await poll(agree, WorkloadSettings().lock_ttl_s + STALE_GRACE_S, 0.1)
        self.checks.check(
            "Leases match the backend after the run",
            agreed is not None,
            "Leases and the backend's held locks still differ",
        )
        return agreed

    async def _delete_store(self) -> None:
        """Delete the StateStore while the operator runs: its finalizer removes the Leases."""
        deleted = time.monotonic()
        with contextlib.suppress(KubeApiError):
            await self.api.delete(stores_path(self.namespace, STORE))
            if await self.cluster.wait_gone(stores_path(self.namespace, STORE), 60.0):
                self.result.line(
                    "clean-up", f"StateStore finalized in {time.monotonic() - deleted:.2f} s"
                )
                return
        self.result.notes.append("the StateStore was not finalized within 60 s")

    # -- figures ---------------------------------------------------------------------------
    def _workload_figures(self, fault_at: float, starting_at: float, back_at: float) -> None:
        rec, result = self.rec, self.result
        verify = rec.ops.get(VERIFY)
        result.attempted = rec.total_ops - (verify.count if verify else 0)
        result.failed = rec.total_failed - (verify.failed if verify else 0)
        result.errors = dict(rec.errors)
        windows = {
            "before": Window("before the fault"),
            "during": Window("while the API server was down"),
            # The two parts of "during": stopping and stopped, then starting (which takes both
            # cores for seconds).
            "down": Window("while down, stopping or stopped"),
            "starting": Window("while down, starting"),
            "after": Window("after it was back"),
        }
        for op, started, ended, error in rec.lock_samples:
            took = ended - started
            if started < fault_at:
                windows["before"].add(op, took, error)
            elif started < back_at:
                windows["during"].add(op, took, error)
                windows["down" if started < starting_at else "starting"].add(op, took, error)
            else:
                windows["after"].add(op, took, error)
        for window in windows.values():
            result.line(f"lock operations {window.name}", window.describe())
        during = windows["during"]
        self.checks.check(
            "lock operations during the outage succeed",
            during.failed == 0,
            f"{during.failed} lock operation(s) failed while the API server was down: "
            f"{dict(during.errors)}",
            amount=during.attempted,
        )
        for name, title in CHECKS.items():
            check = rec.checks.get(name)
            if check is not None:
                self.checks.record(
                    f"workload: {title}",
                    sum(check.checked.values()),
                    check.violations,
                    f"{check.violations} violation(s), listed below",
                )
        self.checks.messages.extend(rec.messages[:20])
        result.figures["lock_operations"] = {k: w.to_json() for k, w in windows.items()}
        result.figures["operations"] = {
            op: {"ok": stats.ok, "failed": stats.failed} for op, stats in sorted(rec.ops.items())
        }
        result.line(
            "workload",
            f"{self.settings.tasks} tasks on {len(self.connections)} connect_store handles; "
            f"{result.attempted:,} operations, lock holds checked by the fenced resource "
            f"{sum(g.resource.holds for g in self._generations()):,}, overlapping holders "
            f"{sum(g.resource.overlaps for g in self._generations())}",
        )

    def _generations(self) -> list[Any]:
        workload = self.workload
        return [] if workload is None else [workload.gen, *(g for g, _ in workload.retired)]

    def _lease_figures(
        self,
        sampler: LeaseSampler,
        catch_up_s: float | None,
        converge_s: float | None,
        written_before: int,
        failed_calls: int,
    ) -> None:
        result = self.result
        metrics = [mirror.metrics for mirror in self.mirrors]
        written = sum(m.written for m in metrics)
        result.line(
            "lease mirrors",
            f"{written_before:,} API writes before the fault, {written - written_before:,} after; "
            f"{failed_calls:,} failed calls while the API was down "
            f"({sum(m.failed for m in metrics)} in all), "
            f"{sum(m.retried for m in metrics):,} retried, "
            f"{sum(m.coalesced for m in metrics):,} lock events coalesced, "
            f"{sum(m.dropped for m in metrics)} dropped",
        )
        result.line(
            "mirror catch-up",
            f"on each of the {len(self.mirrors)} handles a marker lock released and another "
            "taken while the API was down; "
            + (
                "the Leases never showed it"
                if catch_up_s is None
                else f"the Leases showed exactly that {catch_up_s:.2f} s after the API was back"
            ),
        )
        result.line(
            "Leases sampled",
            f"{sampler.samples} samples ({sampler.unanswered} unanswered), "
            f"{len(sampler.seen):,} Lease acquisitions seen, {len(sampler.stale_seen):,} of them "
            f"stale at some point; oldest stale {sampler.max_stale_s:.2f} s (bound: the Lease's "
            f"TTL + {STALE_GRACE_S:g} s, counted while the API answers); two Leases for one "
            f"lock: {sampler.duplicates}",
        )
        result.line(
            "after the run",
            "Leases never matched the backend"
            if converge_s is None
            else f"Leases matched the backend (all released) {converge_s:.2f} s after the "
            "workload stopped",
        )
        self.checks.record(
            "no Lease stale beyond its TTL + 10 s",
            len(sampler.seen),
            len(sampler.too_old),
            "; ".join(
                f"{name} (token {token}) stale {age:.1f} s > {bound:.1f} s"
                for (name, token), (age, bound) in list(sampler.too_old.items())[:5]
            ),
        )
        self.checks.check(
            "at most one Lease per lock",
            sampler.duplicates == 0,
            f"{sampler.duplicates} sample(s) showed two Leases for one lock",
            amount=sampler.samples,
        )
        result.figures["leases"] = {
            "samples": sampler.samples,
            "acquisitions_seen": len(sampler.seen),
            "stale_seen": len(sampler.stale_seen),
            "max_stale_s": round(sampler.max_stale_s, 3),
            "max_stale_lease": sampler.worst,
            "slowest_sample_s": round(sampler.slowest_sample_s, 3),
            "stale_beyond_bound": len(sampler.too_old),
            "duplicates": sampler.duplicates,
            "mirror_written": written,
            "mirror_failed": sum(m.failed for m in metrics),
            "mirror_failed_during_outage": failed_calls,
            "mirror_retried": sum(m.retried for m in metrics),
        }

    def _unrecovered(self, since: float) -> list[str]:
        """Operation kinds whose last failure after ``since`` was never followed by a success."""
        last_failed: dict[str, float] = {}
        for failure in self.rec.failures:
            if failure.op != VERIFY and failure.ended >= since:
                last_failed[failure.op] = max(last_failed.get(failure.op, 0.0), failure.ended)
        return sorted(op for op, at in last_failed.items() if self.rec.last_ok.get(op, 0.0) <= at)


def _restore_kubeconfig(previous: str | None) -> None:
    if previous is None:
        os.environ.pop("KUBECONFIG", None)
    else:
        os.environ["KUBECONFIG"] = previous


async def _stop_task(task: asyncio.Task[None], stop: asyncio.Event) -> None:
    stop.set()
    with contextlib.suppress(Exception):
        await task


async def _finish_all(*groups: list[Marker]) -> None:
    for group in groups:
        for marker in group:
            await marker.finish()
