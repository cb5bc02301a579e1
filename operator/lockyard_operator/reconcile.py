"""Reconciling StateStores: everything the operator does, with no knowledge of kopf.

One :class:`Reconciler` per operator process keeps a :class:`~lockyard_operator.state.StoreState`
per StateStore (its cached connection, the status it last wrote, an ``asyncio.Lock``): the kopf
handlers, the periodic probe and the Secret watch all call in here, and the lock makes their work
on one store strictly sequential.

Steps of :meth:`Reconciler.reconcile` (each failure ends it with ``Ready=False`` and a reason from
:mod:`~lockyard_operator.reasons`):

1. read every referenced Secret key (:mod:`~lockyard_operator.secret_values`);
2. build the backend config from spec and secrets (``InvalidSpec``);
3. connect, unless the cached connection has exactly this config
   (:mod:`~lockyard_operator.connections`);
4. probe (:mod:`~lockyard_operator.probe`): a fresh login unless the connection was opened just
   now, then ping, version and locks held (``BackendUnreachable``, ``AuthenticationFailed``,
   ``TLSFailed``, ``BackendRefused``);
5. publish the binding Secret and the workload Role (:mod:`~lockyard_operator.children`);
6. write the status (:mod:`~lockyard_operator.status_writer`).

:meth:`Reconciler.probe`, every probe interval, repeats step 4 while the store is Ready, and the
whole reconciliation otherwise (so a store heals on its own). Every step is idempotent, so
running it again changes nothing that is already right. Secret values never reach a status, an
event or a log: messages are scrubbed of every value read.
"""

from __future__ import annotations

import logging
import shutil
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lockyard.config import BackendConfig, to_url
from lockyard.config.resource import StateStoreSpec
from lockyard.errors import StateError
from lockyard.mirror.registry import permit_tables
from lockyard_operator import reasons
from lockyard_operator.children import publish
from lockyard_operator.classify import classify, scrub
from lockyard_operator.kube import KubeApi, KubeApiError
from lockyard_operator.metrics import Metrics
from lockyard_operator.probe import BackendProblem, Prober
from lockyard_operator.purge import purge_data, remove_leases
from lockyard_operator.reaper import ReapResult, reap_leases
from lockyard_operator.secret_values import build_config, read_values
from lockyard_operator.state import EventSink, Failed, Outcome, StoreRef, StoreState
from lockyard_operator.status_writer import StatusWriter

logger = logging.getLogger(__name__)

#: How many finalized stores to remember, so a late probe or Secret event cannot revive one.
FINALIZED_MEMORY = 10_000
#: A probe part (the fresh login; ping, version and locks held) may take this many operation
#: timeouts.
PROBE_TIMEOUTS = 3

_STOPPING = Outcome(False, reasons.PENDING, "being deleted, or the operator is stopping")


class Reconciler:
    """Reconciles StateStores against their backends and the Kubernetes API."""

    def __init__(self, api: KubeApi, metrics: Metrics, emit: EventSink, workdir: Path) -> None:
        self._api = api
        self._metrics = metrics
        self._emit = emit
        self._workdir = workdir
        self._prober = Prober(metrics, emit)
        self._status = StatusWriter(api, metrics)
        self._stores: dict[tuple[str, str], StoreState] = {}
        #: uids of finalized stores (recent ones): late triggers for them are ignored.
        self._finalized: OrderedDict[str, None] = OrderedDict()
        self._closed = False

    # -- entry points --------------------------------------------------------------------------

    async def reconcile(
        self, ref: StoreRef, spec: StateStoreSpec, status: Mapping[str, Any] | None
    ) -> Outcome:
        """Bring one store to its spec (steps in the module docstring)."""
        store = await self._store(ref, status)
        async with store.lock:
            if store.deleted or self._closed:
                return _STOPPING
            return await self._reconcile(ref, store, spec)

    async def invalid_spec(
        self, ref: StoreRef, message: str, status: Mapping[str, Any] | None
    ) -> Outcome:
        """Report a spec that the model rejects (the schema let it through)."""
        store = await self._store(ref, status)
        async with store.lock:
            if store.deleted or self._closed:
                return _STOPPING
            return await self._fail(ref, store, reasons.INVALID_SPEC, message)

    async def probe(
        self, ref: StoreRef, spec: StateStoreSpec, status: Mapping[str, Any] | None
    ) -> Outcome:
        """The periodic check: a fresh login and the kept connection's answers while the store
        is Ready; the whole reconciliation otherwise."""
        store = await self._store(ref, status)
        async with store.lock:
            if store.deleted or self._closed:
                return _STOPPING
            connection = store.backend.connection
            if (
                connection is None
                or store.book.observed_generation != ref.generation
                or not store.book.is_true(reasons.READY)
            ):
                # Not (or no longer) known to be right: the whole reconciliation.
                return await self._reconcile(ref, store, spec)
            timeout = spec.operation_timeout_seconds * PROBE_TIMEOUTS
            try:
                await self._prober.check(ref, store, connection, store.backend.login, timeout)
            except BackendProblem as exc:
                # A fresh connection next time either way: some drivers do not recover a
                # broken one.
                await store.backend.close()
                if exc.stage == "connection":
                    # The kept connection failed though a new login just worked: connect
                    # again now, so the status tells what a new workload would meet.
                    return await self._reconcile(ref, store, spec)
                failure = self._prober.failed(ref, store, exc.problem)
                return await self._fail(ref, store, failure.reason, failure.message)
            self._metrics.probes.inc(ref.namespace, ref.name, reasons.PROBE_SUCCEEDED)
            if not spec.locks.lease_mirroring:  # no reaper pass updates them any more
                self._metrics.forget_mirror(ref.namespace, ref.name)
            return await self._status.succeed(ref, store, count=False)

    async def finalize(self, ref: StoreRef, spec: StateStoreSpec | None) -> Outcome:
        """Clean up after a deleted StateStore: its Leases, and its data if the policy says so.

        A retryable outcome keeps the finalizer (kopf retries); a non-retryable one lets the
        deletion go on, with a Warning event saying what was left behind.
        """
        store = await self._store(ref, None)
        async with store.lock:
            store.deleted = True
            try:
                removed = await remove_leases(self._api, ref)
            except KubeApiError as exc:
                return Outcome.of(reasons.KUBERNETES_API_ERROR, f"removing Leases failed: {exc}")
            if removed:
                self._emit(ref, "Normal", reasons.LEASES_REMOVED, f"removed {removed} Lease(s)")
            if spec is None:
                self._emit(
                    ref, "Warning", reasons.DATA_RETAINED, "the spec is invalid: data retained"
                )
            elif spec.deletion_policy == "Delete":
                folder = self._files_dir(store)
                outcome = await purge_data(self._api, ref, store, spec, folder, self._emit)
                if outcome is not None:
                    return outcome
            else:
                prefix = spec.effective_prefix(ref.namespace, ref.name)
                self._emit(
                    ref,
                    "Normal",
                    reasons.DATA_RETAINED,
                    f"deletionPolicy Retain: data under prefix {prefix!r} kept",
                )
            await store.backend.close()
            self._stores.pop(ref.key, None)
            self._finalized[ref.uid] = None
            while len(self._finalized) > FINALIZED_MEMORY:
                self._finalized.popitem(last=False)
            self._metrics.forget(ref.namespace, ref.name)
            shutil.rmtree(self._files_dir(store), ignore_errors=True)
            return Outcome(True, reasons.RECONCILED, "finalized")

    async def reap(self, ref: StoreRef) -> ReapResult | None:
        """One pass of the Lease reaper over a Ready store's mirrored Leases (``reaper``).

        Skipped (``None``) while the store has no open connection; failures are logged and left
        to the next pass.
        """
        store = self._stores.get(ref.key)
        if store is None or store.uid != ref.uid or store.deleted or self._closed:
            return None
        async with store.lock:
            connection = store.backend.connection
            # A memory store's locks live in each workload's own process: the operator's
            # handle sees none of them, so it must not judge their Leases stale.
            if connection is None or connection.backend == "memory":
                return None
            try:
                result = await reap_leases(
                    self._api,
                    ref.namespace,
                    ref.name,
                    connection.locks,
                    permits=permit_tables(connection),
                )
            except (KubeApiError, StateError) as exc:
                logger.info("%s: reaping Leases failed, next pass retries: %s", ref, exc)
                return None
            self._metrics.mirror_pass(
                ref.namespace, ref.name, unmirrored=result.unmirrored, lag=result.lag
            )
        if result.deleted or result.corrected:
            logger.info(
                "%s: Leases: %d stale deleted, %d corrected", ref, result.deleted, result.corrected
            )
        return result

    async def close(self) -> None:
        """Close every open connection (operator shutdown); later calls do nothing."""
        self._closed = True
        for store in list(self._stores.values()):
            await store.backend.close()
        self._stores.clear()

    # -- the steps -----------------------------------------------------------------------------

    async def _reconcile(self, ref: StoreRef, store: StoreState, spec: StateStoreSpec) -> Outcome:
        book = store.book
        book.observed_generation = ref.generation
        book.prefix = spec.effective_prefix(ref.namespace, ref.name)
        try:
            values = await read_values(self._api, ref.namespace, spec)
            store.secret_values = tuple(values.values())
            book.set(
                reasons.SECRETS_RESOLVED,
                True,
                reasons.SECRETS_FOUND,
                f"{len(values)} Secret key(s) read" if values else "no Secret referenced",
                ref.generation,
            )
            folder = self._files_dir(store)
            config, files = build_config(ref.namespace, ref.name, spec, values, folder)
            await self._check_backend(ref, store, spec, config, files)
            await publish(self._api, ref, store, spec, config, files)
        except Failed as failure:
            return await self._fail(ref, store, failure.reason, failure.message)
        self._metrics.probes.inc(ref.namespace, ref.name, reasons.PROBE_SUCCEEDED)
        return await self._status.succeed(ref, store, count=True)

    async def _check_backend(
        self,
        ref: StoreRef,
        store: StoreState,
        spec: StateStoreSpec,
        config: BackendConfig,
        files: Mapping[str, str],
    ) -> None:
        """Connect (or reuse the connection) and probe; ``Failed`` with the reason if not."""
        try:
            connection, opened = await store.backend.open(config, files)
        except Exception as exc:
            await store.backend.close()
            raise self._prober.failed(ref, store, classify(exc)) from None
        if opened:
            where = scrub(to_url(config, with_password=False), store.secret_values)
            logger.info("%s: connected to %s", ref, where)
        timeout = spec.operation_timeout_seconds * PROBE_TIMEOUTS
        # Connecting just now was a fresh login; a kept connection needs one.
        login = None if opened else store.backend.login
        try:
            await self._prober.check(ref, store, connection, login, timeout)
        except BackendProblem as exc:
            await store.backend.close()
            raise self._prober.failed(ref, store, exc.problem) from None

    async def _fail(self, ref: StoreRef, store: StoreState, reason: str, message: str) -> Outcome:
        if reason in (reasons.SECRET_NOT_FOUND, reasons.INVALID_SPEC):
            await store.backend.close()
        return await self._status.fail(ref, store, reason, message)

    # -- bookkeeping ---------------------------------------------------------------------------

    async def _store(self, ref: StoreRef, status: Mapping[str, Any] | None) -> StoreState:
        store = self._stores.get(ref.key)
        if store is None or store.uid != ref.uid:
            # A new object (or one recreated under the same name): start afresh.
            if store is not None:
                await store.backend.close()
            store = StoreState(uid=ref.uid, deleted=ref.uid in self._finalized)
            self._stores[ref.key] = store
        store.book.seed(status)
        return store

    def _files_dir(self, store: StoreState) -> Path:
        return self._workdir / store.uid
