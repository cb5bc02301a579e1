"""``operator-kill``: the operator killed with SIGKILL again and again while it reconciles bursts
of StateStores, then started once more; nothing may be left half-written.

Set-up, in a namespace of its own: a PostgreSQL and a Redis server (passwords in a Secret), the
operator (its own process, as its ServiceAccount), and two stores made Ready first: ``victim``
(Redis, ``deletionPolicy: Delete``) and ``steady`` (PostgreSQL, ``Retain``), each with a key
written through its binding.

Then ``--stores`` StateStores are created, alternately PostgreSQL (each with a schema of its
own, which the operator creates and migrates when it connects) and Redis, in ``--kills`` waves
created at once: the first while the first operator runs, each next one as a restarted operator
starts (as if applied while it crash-loops). After each wave the operator is killed (SIGKILL) as
soon as one more store is Ready, so the others are in every stage of their reconciliation
(connecting, migrating a schema, publishing, writing status), and started again at once. While
no operator runs after the first kill, ``victim`` is deleted (its finalizer must purge its
data), ``late`` is created and ``steady``'s spec is changed. The last start is not killed.

Figures: StateStore changes requested (creations, the update, the deletion) and how many were
not done; each kill (when, how many stores were Ready, how many had a binding but no Ready
condition yet, how many schema migrations held their lock); how long no healthy operator ran and
how long each took to get healthy; the time from the last start until every store was Ready for
its current generation and ``victim`` was gone.

Half-written state, each a violation: a store not Ready; a condition missing, doubled, not True
or of an older generation; a finalizer other than exactly ``lockyard.dev/finalizer``; kopf
progress annotations left behind; a binding Secret missing, not owned by its store, lacking a
key, with another prefix or TTL than the store's, or whose URL does not work (a write, a read
and a lock through it); a workload Role missing or with other rules; Secrets or Roles of a store
that no longer exists (after garbage collection) or more than one per store; a PostgreSQL
schema not at the latest migration, or one no store owns; ``victim``'s data not purged;
``steady``'s key lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import secrets
import time
from dataclasses import dataclass
from typing import Any

import asyncpg

import lockyard
from lockyard.backends.postgres import LATEST_VERSION, schema_version
from lockyard.errors import StateError
from lockyard.kube.api import KubeApiError, object_path
from lockyard.kube.names import STORE_LABEL, store_object_name
from lockyard.kube.paths import roles_path, secrets_path, stores_path
from lockyard_dev.chaos.cluster import (
    Cluster,
    RunningOperator,
    condition,
    decode,
    is_ready,
    poll,
)
from lockyard_dev.chaos.kube_result import KubeChaosSettings
from lockyard_dev.chaos.kube_scenario import ScenarioRun
from lockyard_dev.servers.postgres import PostgresServer
from lockyard_dev.servers.redis import RedisServer
from lockyard_operator.children import BINDING_SECRET_TYPE, workload_rules

NAME = "operator-kill"
FINALIZER = "lockyard.dev/finalizer"
#: kopf's annotations that stay on every handled object (its diff-base, and the marker that
#: says the prefix is kopf's); any other ``lockyard.dev/`` annotation is a handler's progress
#: record, which kopf removes once the handler is done.
KOPF_KEEPS = frozenset({"lockyard.dev/last-handled-configuration", "lockyard.dev/kopf-managed"})
CONDITIONS = ("Ready", "SecretsResolved", "BackendReachable", "BindingPublished")
BINDING_KEYS = ("type", "provider", "backend", "url", "prefix", "default-ttl-seconds")
MARKER_KEY = "chaos:t0:marker:1"
PROBE_S = 2
READY_TIMEOUT_S = 120.0
#: After one kill: how long to wait for one more store to become Ready before killing anyway.
PROGRESS_TIMEOUT_S = 20.0
GC_TIMEOUT_S = 60.0
STEADY_TTL_AFTER = 7


@dataclass(frozen=True)
class Kill:
    at: float  # monotonic
    at_s: float  # since the first wave
    ready: int
    of: int
    half_done: int  # a binding Secret published, Ready not yet true
    migrating: int  # PostgreSQL migrations holding their lock (open transactions)

    def to_json(self) -> dict[str, Any]:
        return {
            "at_s": round(self.at_s, 3),
            "ready": self.ready,
            "of": self.of,
            "half_done": self.half_done,
            "migrating": self.migrating,
        }


class OperatorKill(ScenarioRun):
    """One run of the scenario (see the module docstring)."""

    name = NAME

    @staticmethod
    def describe(settings: KubeChaosSettings) -> str:
        return (
            f"the operator killed with SIGKILL {settings.kills} time(s) while it reconciles "
            f"{settings.stores} new StateStores, then started again"
        )

    def __init__(
        self, cluster: Cluster, settings: KubeChaosSettings, stack: contextlib.AsyncExitStack
    ) -> None:
        super().__init__(cluster, settings, stack)
        self.postgres: PostgresServer | None = None
        self.redis: RedisServer | None = None
        self.operators: list[RunningOperator] = []
        self.burst = [f"burst-{i:02d}" for i in range(settings.stores)]
        #: Burst stores created so far.
        self.created: list[str] = []
        self.pg_admin: Any = None
        self.urls: dict[str, str] = {}

    # -- specs -----------------------------------------------------------------------------
    def spec(self, name: str, backend: str, policy: str = "Retain") -> dict[str, Any]:
        ref = {"name": "auth", "key": backend}
        section: dict[str, Any]
        if backend == "postgresql":
            assert self.postgres is not None
            section = {
                "postgresql": {
                    "host": "127.0.0.1",
                    "port": self.postgres.port,
                    "user": self.postgres.user,
                    "database": self.postgres.database,
                    "passwordSecretRef": ref,
                    "schemaName": "chaos_" + name.replace("-", "_"),
                    "poolSize": 2,
                }
            }
        else:
            assert self.redis is not None
            section = {
                "redis": {"host": "127.0.0.1", "port": self.redis.port, "passwordSecretRef": ref}
            }
        return {**section, "deletionPolicy": policy, "probeIntervalSeconds": PROBE_S}

    def burst_backend(self, index: int) -> str:
        return "postgresql" if index % 2 == 0 else "redis"

    @property
    def expected(self) -> list[str]:
        """The stores that must exist and be Ready at the end."""
        return ["steady", *self.burst, "late"]

    # -- processes -------------------------------------------------------------------------
    async def start_operator(self) -> RunningOperator:
        log = self.folder / f"operator-{len(self.operators)}.log"
        operator = self.cluster.operator_to_kill(self.namespace, log).start()
        self.operators.append(operator)
        self.stack.push_async_callback(asyncio.to_thread, operator.stop)
        return operator

    # -- set-up ----------------------------------------------------------------------------
    async def set_up(self) -> bool:
        cluster = self.cluster
        self.namespace = namespace = await cluster.create_namespace("chaos-operator")
        self.stack.push_async_callback(cluster.delete_namespace, namespace)
        postgres = self.postgres = PostgresServer(password=secrets.token_urlsafe(12))
        await asyncio.to_thread(postgres.start)
        self.stack.push_async_callback(asyncio.to_thread, postgres.close)
        redis = self.redis = RedisServer(password=secrets.token_urlsafe(12))
        await asyncio.to_thread(redis.start)
        self.stack.push_async_callback(asyncio.to_thread, redis.remove)
        await cluster.create_secret(
            namespace, "auth", {"postgresql": postgres.password, "redis": redis.password or ""}
        )
        operator = await self.start_operator()
        if await operator.wait_healthy() is None:
            self.checks.violation("set-up", f"the operator never got healthy:\n{operator.tail()}")
            return False
        started = time.monotonic()
        await cluster.create_store(namespace, "victim", self.spec("victim", "redis", "Delete"))
        await cluster.create_store(namespace, "steady", self.spec("steady", "postgresql"))
        for name in ("victim", "steady"):
            if await cluster.wait_ready(namespace, name, READY_TIMEOUT_S) is None:
                self.checks.violation("set-up", f"{name} never became Ready:\n{operator.tail()}")
                return False
            self.urls[name] = await self.binding_url(name)
            async with lockyard.connect(self.urls[name]) as ly:
                await ly.store.set(MARKER_KEY, name)
        self.result.line(
            "set-up",
            f"namespace {namespace}, PostgreSQL on port {postgres.port}, Redis on port "
            f"{redis.port}; victim (Redis, Delete) and steady (PostgreSQL) Ready and written "
            f"{time.monotonic() - started:.2f} s after their creation",
        )
        return True

    async def binding_url(self, name: str) -> str:
        secret = await self.api.get(secrets_path(self.namespace, store_object_name(name)))
        return decode(secret)["url"]

    # -- the run ---------------------------------------------------------------------------
    async def run(self) -> None:
        if not await self.set_up():
            return
        result = self.result
        assert self.postgres is not None
        self.pg_admin = await asyncpg.connect(self.postgres.dsn())
        self.stack.push_async_callback(self.pg_admin.close)
        waves = [self.burst[n :: self.settings.kills] for n in range(self.settings.kills)]
        pg = sum(1 for i in range(len(self.burst)) if self.burst_backend(i) == "postgresql")
        result.line(
            "burst",
            f"{len(self.burst)} StateStores, {pg} PostgreSQL (a schema each, created and migrated "
            f"when the operator connects) and {len(self.burst) - pg} Redis, created in "
            f"{len(waves)} wave(s) of up to {max(map(len, waves))}: one while the first operator "
            "runs, one as each restarted operator starts (as if applied while it crash-loops)",
        )
        kills: list[Kill] = []
        health: list[asyncio.Task[float | None]] = []
        burst_at = time.monotonic()
        for number, wave in enumerate(waves):
            baseline = await self.count_ready()  # before this operator could do anything
            await asyncio.gather(*(self.create_burst_store(name) for name in wave))
            self.created += wave
            # Killed as soon as one more store is Ready: the others are mid-way.
            await poll(functools.partial(self.progressed, baseline), PROGRESS_TIMEOUT_S, 0.02)
            ready, half_done, migrating = await self.snapshot()
            self.operators[-1].kill()
            killed_at = time.monotonic()
            of = len(self.created)
            kills.append(Kill(killed_at, killed_at - burst_at, ready, of, half_done, migrating))
            if number == 0:
                await self.change_while_down()
            # Started at once, as a Deployment would; the next round kills it unless it is
            # the last start.
            restarted = await self.start_operator()
            health.append(asyncio.create_task(restarted.wait_healthy()))
        last = self.operators[-1]
        done_at = await poll(self.all_done, READY_TIMEOUT_S, 0.1)
        healthy = list(await asyncio.gather(*health))
        # Down: from each kill until the next operator was healthy (or, killed before it was,
        # until the kill after it).
        down_s = 0.0
        for n, kill in enumerate(kills):
            took, started = healthy[n], self.operators[n + 1].started_at
            until = started + took if took is not None else kills[n + 1].at
            down_s += until - kill.at
        result.downtime_s = down_s
        result.line(
            "kills",
            "; ".join(
                f"#{n} at +{k.at_s:.2f} s: {k.ready}/{k.of} Ready, {k.half_done} published "
                f"but not Ready, {k.migrating} schema migration(s) running"
                for n, k in enumerate(kills, 1)
            ),
        )
        result.line(
            "while no operator ran",
            f"victim (deletionPolicy Delete) deleted, late created, steady's defaultTtlSeconds "
            f"set to {STEADY_TTL_AFTER}",
        )
        result.line(
            "restarts",
            "liveness endpoint answering "
            + ", ".join("- (killed first)" if s is None else f"{s:.2f} s" for s in healthy)
            + f" after each start; no healthy operator for {down_s:.2f} s in all",
        )
        result.recovered = done_at is not None
        if done_at is not None:
            result.recover_s = done_at - last.started_at
            result.line(
                "recovery",
                f"all {len(self.expected)} stores Ready for their current generation and victim "
                f"finalized {result.recover_s:.2f} s after the last start "
                f"({done_at - burst_at:.2f} s after the first wave)",
            )
        else:
            result.line("recovery", f"NOT done {READY_TIMEOUT_S:g} s after the last start")
        await self.count_changes()
        await self.verify()
        result.figures |= {
            "kills": [k.to_json() for k in kills],
            "operator_down_s": round(down_s, 3),
            "healthy_after_start_s": [None if s is None else round(s, 3) for s in healthy],
            "recover_s": None if result.recover_s is None else round(result.recover_s, 3),
            "first_wave_to_all_ready_s": None if done_at is None else round(done_at - burst_at, 3),
        }
        troubles = [line for op in self.operators for line in op.troubles()]
        if troubles:
            result.notes.append(
                f"operator logs: {len(troubles)} line(s) with Forbidden or a traceback"
            )
            result.figures["operator_log_troubles"] = troubles[:10]
        await self.tear_down()

    async def stores(self) -> dict[str, dict[str, Any]]:
        listed = await self.api.get(stores_path(self.namespace))
        return {item["metadata"]["name"]: item for item in listed.get("items") or []}

    async def create_burst_store(self, name: str) -> None:
        index = self.burst.index(name)
        await self.cluster.create_store(
            self.namespace, name, self.spec(name, self.burst_backend(index))
        )

    async def count_ready(self) -> int:
        stores = await self.stores()
        return sum(1 for name in self.created if is_ready(stores.get(name)))

    async def progressed(self, baseline: int) -> bool:
        ready = await self.count_ready()
        return ready > baseline or ready == len(self.created)

    async def snapshot(self) -> tuple[int, int, int]:
        """Burst stores Ready; those with a binding Secret but not (yet) Ready; migrations in
        progress (each holds its schema's transaction-scoped advisory lock)."""
        stores = await self.stores()
        bindings = await self.api.get(secrets_path(self.namespace), {"labelSelector": STORE_LABEL})
        migrating = await self.pg_admin.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        )
        published = {item["metadata"]["name"] for item in bindings.get("items") or []}
        ready = [name for name in self.created if is_ready(stores.get(name))]
        half = [
            name
            for name in self.created
            if name not in ready and store_object_name(name) in published
        ]
        return len(ready), len(half), int(migrating)

    async def change_while_down(self) -> None:
        namespace = self.namespace
        await self.api.delete(stores_path(namespace, "victim"))
        await self.cluster.create_store(namespace, "late", self.spec("late", "redis"))
        patch = {"spec": {"locks": {"defaultTtlSeconds": STEADY_TTL_AFTER}}}
        await self.api.merge_patch(stores_path(namespace, "steady"), patch)

    async def all_done(self) -> float | None:
        """When every store is Ready for its current generation and victim is gone."""
        stores = await self.stores()
        if "victim" in stores or not all(is_ready(stores.get(n)) for n in self.expected):
            return None
        return time.monotonic()

    async def count_changes(self) -> None:
        """Attempted: every creation, the update and the deletion; failed: those not done."""
        stores = await self.stores()
        undone = [n for n in [*self.burst, "late"] if not is_ready(stores.get(n))]
        steady = stores.get("steady")
        if (
            not is_ready(steady)
            or (steady or {}).get("spec", {}).get("locks", {}).get("defaultTtlSeconds")
            != STEADY_TTL_AFTER
        ):
            undone.append("steady (update)")
        if "victim" in stores:
            undone.append("victim (deletion)")
        self.result.attempted = len(self.burst) + 3
        self.result.failed = len(undone)
        if undone:
            self.result.errors = {"not done": len(undone)}
            self.result.notes.append(f"not done: {', '.join(undone)}")

    # -- half-written state ----------------------------------------------------------------
    async def verify(self) -> None:
        stores = await self.stores()
        # Garbage collection removes what the deleted victim owned; give it time first.
        victim_binding = secrets_path(self.namespace, store_object_name("victim"))
        await self.cluster.wait_gone(victim_binding, GC_TIMEOUT_S)
        await self.cluster.wait_gone(
            f"{roles_path(self.namespace)}/{store_object_name('victim')}", GC_TIMEOUT_S
        )
        selector = {"labelSelector": STORE_LABEL}
        secrets_found = await self.api.get(secrets_path(self.namespace), selector)
        roles_found = await self.api.get(roles_path(self.namespace), selector)
        bindings = {s["metadata"]["name"]: s for s in secrets_found.get("items") or []}
        roles = {r["metadata"]["name"]: r for r in roles_found.get("items") or []}
        wanted = {store_object_name(name) for name in self.expected}
        self.checks.check(
            "one binding Secret and one Role per store, none for a deleted store",
            set(bindings) == wanted and set(roles) == wanted,
            f"bindings {sorted(set(bindings) ^ wanted)} and roles {sorted(set(roles) ^ wanted)} "
            "differ from the stores",
            amount=len(wanted),
        )
        await self.verify_schemas()
        for name in self.expected:
            store = stores.get(name)
            if store is None:
                self.checks.violation("store exists", f"{name} is gone")
                continue
            self.verify_store(name, store)
            await self.verify_binding(name, store, bindings.get(store_object_name(name)))
            self.verify_role(name, store, roles.get(store_object_name(name)))
        await self.verify_data()

    def verify_store(self, name: str, store: dict[str, Any]) -> None:
        meta, status = store["metadata"], store.get("status") or {}
        generation = meta.get("generation")
        types = [c.get("type") for c in status.get("conditions") or []]
        broken = [
            t
            for t in CONDITIONS
            if condition(store, t).get("status") != "True"
            or condition(store, t).get("observedGeneration") != generation
        ]
        self.checks.check(
            "conditions: one of each, all True, current generation",
            len(types) == len(set(types)) and not broken and set(CONDITIONS) <= set(types),
            f"{name}: conditions {types}, not True or stale: {broken}",
        )
        self.checks.check(
            f"finalizer: exactly {FINALIZER}",
            meta.get("finalizers") == [FINALIZER],
            f"{name}: finalizers {meta.get('finalizers')}",
        )
        left = sorted(
            key
            for key in meta.get("annotations") or {}
            if "kopf.zalando.org" in key
            or (key.startswith("lockyard.dev/") and key not in KOPF_KEEPS)
        )
        self.checks.check(
            "no handler progress left in annotations",
            not left,
            f"{name}: annotations left behind: {left}",
        )

    async def verify_binding(
        self, name: str, store: dict[str, Any], secret: dict[str, Any] | None
    ) -> None:
        check = "binding Secret complete, owned and working"
        if secret is None:
            self.checks.violation(check, f"{name}: no binding Secret")
            return
        data = decode(secret)
        owners = secret["metadata"].get("ownerReferences") or []
        spec, status = store.get("spec") or {}, store.get("status") or {}
        ttl = (spec.get("locks") or {}).get("defaultTtlSeconds")
        problems = [key for key in BINDING_KEYS if not data.get(key)]
        if secret.get("type") != BINDING_SECRET_TYPE:
            problems.append(f"type {secret.get('type')}")
        if [(o.get("uid"), o.get("controller")) for o in owners] != [
            (store["metadata"]["uid"], True)
        ]:
            problems.append(f"owners {owners}")
        if data.get("prefix") != status.get("prefix"):
            problems.append(f"prefix {data.get('prefix')} != {status.get('prefix')}")
        if ttl is not None and data.get("default-ttl-seconds") != f"{float(ttl):g}":
            problems.append(f"default-ttl-seconds {data.get('default-ttl-seconds')} != {ttl}")
        if not problems:
            problems += await self.round_trip(name, data["url"])
        self.checks.check(check, not problems, f"{name}: {'; '.join(problems)}")

    async def round_trip(self, name: str, url: str) -> list[str]:
        """A write, a read and a lock through the binding's URL; the problems found."""
        try:
            async with lockyard.connect(url) as ly:
                await ly.store.set("chaos:t0:check:1", name)
                if await ly.store.get("chaos:t0:check:1") != name:
                    return ["a value written through the binding did not read back"]
                guard = await ly.locks.try_acquire("chaos-check", 5)
                if guard is None:
                    return ["the lock chaos-check was held by someone"]
                await guard.release()
        except StateError as exc:
            return [f"the binding's URL failed: {type(exc).__name__}: {exc}"]
        return []

    def verify_role(self, name: str, store: dict[str, Any], role: dict[str, Any] | None) -> None:
        check = "workload Role owned, with exactly the workload rules"
        if role is None:
            self.checks.violation(check, f"{name}: no Role")
            return
        owners = role["metadata"].get("ownerReferences") or []
        expected = workload_rules(name, store_object_name(name))
        self.checks.check(
            check,
            [o.get("uid") for o in owners] == [store["metadata"]["uid"]]
            and role.get("rules") == expected,
            f"{name}: owners {owners}, rules {role.get('rules')}",
        )

    async def verify_schemas(self) -> None:
        """Every PostgreSQL store's schema at the latest version, and no schema without one."""
        assert self.postgres is not None
        wanted = {
            "chaos_" + name.replace("-", "_")
            for i, name in enumerate(self.burst)
            if self.burst_backend(i) == "postgresql"
        } | {"chaos_steady"}
        connection = await asyncpg.connect(self.postgres.dsn())
        try:
            rows = await connection.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'chaos\\_%'"
            )
            found = {row["nspname"] for row in rows}
            versions = {schema: await schema_version(connection, schema) for schema in found}
        finally:
            await connection.close()
        behind = {s: v for s, v in versions.items() if v != LATEST_VERSION}
        self.checks.check(
            f"PostgreSQL schemas migrated to version {LATEST_VERSION}, one per store",
            found == wanted and not behind,
            f"schemas {sorted(found ^ wanted)} unexpected or missing; behind: {behind}",
            amount=len(wanted),
        )

    async def verify_data(self) -> None:
        async with lockyard.connect(self.urls["steady"]) as ly:
            kept = await ly.store.get(MARKER_KEY)
        self.checks.check(
            "committed data kept (Retain)", kept == "steady", f"steady's key reads {kept!r}"
        )
        async with lockyard.connect(self.urls["victim"]) as ly:
            left = await ly.store.get(MARKER_KEY)
        self.checks.check(
            "deleted store's data purged (Delete)", left is None, f"victim's key reads {left!r}"
        )
        events = await self.api.get(
            object_path("", "v1", "events", self.namespace),
            {"fieldSelector": "involvedObject.name=victim,involvedObject.kind=StateStore"},
        )
        purges = sum(
            int(e.get("count") or 1)
            for e in events.get("items") or []
            if e.get("reason") == "DataPurged"
        )
        self.result.line("victim", f"purged; DataPurged events: {purges}")
        self.result.figures["victim_purge_events"] = purges

    async def tear_down(self) -> None:
        """Delete every store while the operator runs (its finalizer), then stop it."""
        started = time.monotonic()
        with contextlib.suppress(KubeApiError):
            for name in await self.stores():
                await self.api.delete(stores_path(self.namespace, name))

            async def none_left() -> bool:
                return not await self.stores()

            if await poll(none_left, 60.0, 0.2):
                self.result.line(
                    "clean-up",
                    f"every StateStore finalized in {time.monotonic() - started:.2f} s",
                )
                return
        self.result.notes.append("the StateStores were not all finalized within 60 s")
