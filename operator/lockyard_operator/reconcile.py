"""Reconciling StateStores: everything the operator does, with no knowledge of kopf.

One :class:`Reconciler` per operator process keeps, per StateStore, one open
``lockyard.Connection``, the status it last wrote (:class:`~lockyard_operator.status.StatusBook`)
and an ``asyncio.Lock``: the kopf handlers, the periodic probe and the Secret watch all call in
here, and the lock makes their work on one store strictly sequential.

Steps of :meth:`Reconciler.reconcile` (each failure ends it with ``Ready=False`` and a reason from
:mod:`~lockyard_operator.reasons`):

1. read every referenced Secret key (``SecretNotFound`` names the Secret and key);
2. build the backend config from spec and secrets (``InvalidSpec``);
3. connect, unless the open connection already has exactly this config (a rotated Secret or a
   changed spec reconnects, then closes the old connection);
4. probe: ping (latency), server version, locks held (``BackendUnreachable``,
   ``AuthenticationFailed``, ``TLSFailed``, ``BackendRefused``);
5. publish the binding Secret and the workload Role, both owned by the StateStore so garbage
   collection removes them (``BindingConflict`` if someone else owns that name);
6. write the status (``Ready=True``, reason ``Reconciled``).

Every step is idempotent, so running it again (a retry, an operator restart, a second trigger)
changes nothing that is already right. Secret values never reach a status, an event or a log:
messages pass through :func:`~lockyard_operator.classify.scrub` with the resolved values.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import re
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import lockyard
from lockyard.config import BackendConfig, to_url
from lockyard.config.resource import (
    API_GROUP,
    API_VERSION,
    KIND,
    PLURAL,
    SecretKeyRef,
    StateStoreSpec,
)
from lockyard.config.resource import BackendStatus as BackendStatusModel
from lockyard.connection import Connection
from lockyard.errors import ConfigError, StateError
from lockyard.kube.api import KubeApi, KubeApiError, object_path
from lockyard.kube.binding import FILE_PARAMS, binding_data
from lockyard.kube.names import STORE_LABEL, store_label_value, store_object_name
from lockyard.kube.paths import leases_path, secrets_path, stores_path
from lockyard.mirror.kubeapi import KubeApiError as MirrorApiError
from lockyard_operator import reasons
from lockyard_operator.classify import Problem, classify, scrub
from lockyard_operator.metrics import Metrics
from lockyard_operator.reaper import ReapResult, reap_leases
from lockyard_operator.status import StatusBook

logger = logging.getLogger(__name__)

MANAGED_BY = {"app.kubernetes.io/managed-by": "lockyard-operator"}
BINDING_SECRET_TYPE = "servicebinding.io/lockyard"
#: Refresh the status (latency) at least this often even when nothing else changed.
STATUS_REFRESH_S = 60.0
#: Extra time beyond the operation timeout that connecting may take (pools, TLS, migrations).
CONNECT_GRACE_S = 10.0
#: How many finalized stores to remember, so a late probe or Secret event cannot revive one.
FINALIZED_MEMORY = 10_000


@dataclass(frozen=True, slots=True)
class StoreRef:
    """Which StateStore, and which version of its spec, a call is about."""

    namespace: str
    name: str
    uid: str
    generation: int | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name

    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a call ended: ready or not, why, and whether (and when) to try again."""

    ready: bool
    reason: str
    message: str
    retryable: bool = False

    @classmethod
    def of(cls, reason: str, message: str) -> Outcome:
        return cls(False, reason, message, retryable=reason in reasons.RETRYABLE)


#: ``emit(store, "Normal" | "Warning", reason, message)``: posts a Kubernetes Event; returns at
#: once (the kopf layer queues it).
EventSink = Callable[[StoreRef, str, str, str], None]


class _Failed(Exception):
    """A step failed for ``reason``: ends the reconciliation with that outcome."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class _Store:
    """What the operator holds for one StateStore."""

    uid: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    book: StatusBook = field(default_factory=StatusBook)
    connection: Connection | None = None
    fingerprint: str | None = None
    secret_values: tuple[str, ...] = ()
    published: str | None = None
    last_patch: dict[str, Any] | None = None
    last_write: float = 0.0
    deleted: bool = False


#: One PEM block (RFC 7468): a BEGIN line, base64 text (RFC 1421 headers allowed), an END line.
_PEM_BLOCK = re.compile(r"-----BEGIN ([^-\n]+)-----(.*?)-----END \1-----", re.DOTALL)


def _check_pem(ref: SecretKeyRef, text: str) -> None:
    """A client file (CA, certificate, key) read from a Secret must be PEM.

    Checked here because the TLS library's own error ("[X509] PEM lib") names neither the
    Secret nor the key.
    """
    blocks = _PEM_BLOCK.findall(text)
    try:
        for _, body in blocks:
            lines = [line.strip() for line in body.splitlines() if ":" not in line]
            base64.b64decode("".join(lines), validate=True)
    except binascii.Error:
        blocks = []
    if not blocks:
        raise _Failed(
            reasons.INVALID_SPEC, f'key "{ref.key}" of Secret "{ref.name}" is not a PEM file'
        )


def _decode(secret: Mapping[str, Any], ref: SecretKeyRef) -> str:
    data = secret.get("data") or {}
    if ref.key not in data:
        raise _Failed(reasons.SECRET_NOT_FOUND, f'key "{ref.key}" not found in Secret "{ref.name}"')
    try:
        return base64.b64decode(data[ref.key]).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise _Failed(
            reasons.INVALID_SPEC, f'key "{ref.key}" of Secret "{ref.name}" is not UTF-8 text'
        ) from None


class Reconciler:
    """Reconciles StateStores against their backends and the Kubernetes API."""

    def __init__(self, api: KubeApi, metrics: Metrics, emit: EventSink, workdir: Path) -> None:
        self._api = api
        self._metrics = metrics
        self._emit = emit
        self._workdir = workdir
        self._stores: dict[tuple[str, str], _Store] = {}
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
                return Outcome(False, reasons.PENDING, "being deleted, or the operator is stopping")
            return await self._reconcile(ref, store, spec)

    async def invalid_spec(
        self, ref: StoreRef, message: str, status: Mapping[str, Any] | None
    ) -> Outcome:
        """Report a spec that the model rejects (the schema let it through)."""
        store = await self._store(ref, status)
        async with store.lock:
            if store.deleted or self._closed:
                return Outcome(False, reasons.PENDING, "being deleted, or the operator is stopping")
            await self._close(store)
            return await self._fail(ref, store, reasons.INVALID_SPEC, message)

    async def probe(
        self, ref: StoreRef, spec: StateStoreSpec, status: Mapping[str, Any] | None
    ) -> Outcome:
        """The periodic health check: ping the open connection, or reconcile if there is none."""
        store = await self._store(ref, status)
        async with store.lock:
            if store.deleted or self._closed:
                return Outcome(False, reasons.PENDING, "being deleted, or the operator is stopping")
            connection = store.connection
            if (
                connection is None
                or store.book.observed_generation != ref.generation
                or not store.book.is_true(reasons.READY)
            ):
                # Not (or no longer) known to be right: the whole reconciliation, not a ping.
                return await self._reconcile(ref, store, spec)
            try:
                await self._check_backend(ref, store, connection, spec)
            except _Failed as failure:
                # A fresh connection next time: some drivers do not recover a broken one.
                await self._close(store)
                return await self._fail(ref, store, failure.reason, failure.message)
            self._metrics.probes.inc(ref.namespace, ref.name, reasons.PROBE_SUCCEEDED)
            return await self._succeed(ref, store, count=False)

    async def finalize(self, ref: StoreRef, spec: StateStoreSpec | None) -> Outcome:
        """Clean up after a deleted StateStore: its Leases, and its data if the policy says so.

        A retryable outcome keeps the finalizer (kopf retries); a non-retryable one lets the
        deletion go on, with a Warning event saying what was left behind.
        """
        store = await self._store(ref, None)
        async with store.lock:
            store.deleted = True
            try:
                removed = await self._delete_leases(ref)
            except KubeApiError as exc:
                return Outcome.of(reasons.KUBERNETES_API_ERROR, f"removing Leases failed: {exc}")
            if removed:
                self._emit(ref, "Normal", reasons.LEASES_REMOVED, f"removed {removed} Lease(s)")
            if spec is None:
                self._emit(
                    ref, "Warning", reasons.DATA_RETAINED, "the spec is invalid: data retained"
                )
            elif spec.deletion_policy == "Delete":
                outcome = await self._purge(ref, store, spec)
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
            await self._close(store)
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
            connection = store.connection
            # A memory store's locks live in each workload's own process: the operator's
            # handle sees none of them, so it must not judge their Leases stale.
            if connection is None or connection.backend == "memory":
                return None
            try:
                result = await reap_leases(self._api, ref.namespace, ref.name, connection.locks)
            except (MirrorApiError, StateError) as exc:
                logger.info("%s: reaping Leases failed, next pass retries: %s", ref, exc)
                return None
        if result.deleted or result.corrected:
            logger.info(
                "%s: Leases: %d stale deleted, %d corrected", ref, result.deleted, result.corrected
            )
        return result

    async def close(self) -> None:
        """Close every open connection (operator shutdown); later calls do nothing."""
        self._closed = True
        for store in list(self._stores.values()):
            await self._close(store)
        self._stores.clear()

    # -- the steps -----------------------------------------------------------------------------

    async def _reconcile(self, ref: StoreRef, store: _Store, spec: StateStoreSpec) -> Outcome:
        book = store.book
        book.observed_generation = ref.generation
        book.prefix = spec.effective_prefix(ref.namespace, ref.name)
        try:
            values = await self._resolve_secrets(ref, spec)
            store.secret_values = tuple(values.values())
            book.set(
                reasons.SECRETS_RESOLVED,
                True,
                reasons.SECRETS_FOUND,
                f"{len(values)} Secret key(s) read" if values else "no Secret referenced",
                ref.generation,
            )
            config, files = self._config(ref, store, spec, values)
            connection = await self._connection(ref, store, config, files)
            await self._check_backend(ref, store, connection, spec)
            await self._publish(ref, store, spec, config, files)
        except _Failed as failure:
            return await self._fail(ref, store, failure.reason, failure.message)
        self._metrics.probes.inc(ref.namespace, ref.name, reasons.PROBE_SUCCEEDED)
        return await self._succeed(ref, store, count=True)

    async def _resolve_secrets(
        self, ref: StoreRef, spec: StateStoreSpec
    ) -> dict[SecretKeyRef, str]:
        secrets: dict[str, Mapping[str, Any]] = {}
        values: dict[SecretKeyRef, str] = {}
        for _, secret_ref in spec.secret_refs():
            if secret_ref.name not in secrets:
                path = secrets_path(ref.namespace, secret_ref.name)
                try:
                    secret = await self._api.get_or_none(path)
                except KubeApiError as exc:
                    raise _Failed(
                        reasons.KUBERNETES_API_ERROR,
                        f'reading Secret "{secret_ref.name}" failed: {exc}',
                    ) from None
                if secret is None:
                    raise _Failed(
                        reasons.SECRET_NOT_FOUND,
                        f'Secret "{secret_ref.name}" not found (needed for key "{secret_ref.key}")',
                    )
                secrets[secret_ref.name] = secret
            values[secret_ref] = _decode(secrets[secret_ref.name], secret_ref)
        return values

    def _files_dir(self, store: _Store) -> Path:
        return self._workdir / store.uid

    def _config(
        self,
        ref: StoreRef,
        store: _Store,
        spec: StateStoreSpec,
        values: Mapping[SecretKeyRef, str],
    ) -> tuple[BackendConfig, dict[str, str]]:
        files = {
            name: values[secret_ref]
            for name, secret_ref in spec.secret_refs()
            if name in FILE_PARAMS
        }

        def secret_file(secret_ref: SecretKeyRef) -> str:
            _check_pem(secret_ref, values[secret_ref])
            folder = self._files_dir(store)
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = folder / hashlib.sha256(str(secret_ref).encode()).hexdigest()[:16]
            path.touch(mode=0o600)
            path.write_text(values[secret_ref])
            return str(path)

        try:
            config = spec.to_config(
                namespace=ref.namespace,
                name=ref.name,
                secret_value=values.__getitem__,
                secret_file=secret_file,
            )
        except ConfigError as exc:
            raise _Failed(reasons.INVALID_SPEC, str(exc)) from None
        return config, files

    async def _connection(
        self, ref: StoreRef, store: _Store, config: BackendConfig, files: Mapping[str, str]
    ) -> Connection:
        fingerprint = hashlib.sha256(
            json.dumps([to_url(config, with_password=True), sorted(files.items())]).encode()
        ).hexdigest()
        if store.connection is not None and store.fingerprint == fingerprint:
            return store.connection
        await self._close(store)
        timeout = config.operation_timeout + CONNECT_GRACE_S
        try:
            async with asyncio.timeout(timeout):
                connection = await lockyard.connect(config)
        except Exception as exc:
            self._backend_failed(ref, store, classify(exc))
        store.connection, store.fingerprint = connection, fingerprint
        where = scrub(to_url(config, with_password=False), store.secret_values)
        logger.info("%s: connected to %s", ref, where)
        return connection

    def _backend_failed(self, ref: StoreRef, store: _Store, problem: Problem) -> NoReturn:
        message = scrub(problem.message, store.secret_values)
        self._set_reachable(ref, store, False, problem.reason, message)
        self._metrics.probes.inc(ref.namespace, ref.name, problem.reason)
        self._metrics.backend_up.set(ref.namespace, ref.name, value=0)
        raise _Failed(problem.reason, message)

    async def _check_backend(
        self, ref: StoreRef, store: _Store, connection: Connection, spec: StateStoreSpec
    ) -> None:
        """Ping, version and locks held; records BackendReachable either way."""
        try:
            async with asyncio.timeout(spec.operation_timeout_seconds * 3):
                latency = await connection.ping()
                version = await connection.server_version()
                held = len(await connection.locks.list_held())
        except Exception as exc:
            self._backend_failed(ref, store, classify(exc))
        book = store.book
        book.backend = BackendStatusModel(
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

    def _set_reachable(
        self, ref: StoreRef, store: _Store, ok: bool, reason: str, message: str
    ) -> None:
        previous = store.book.condition(reasons.BACKEND_REACHABLE)
        changed = store.book.set(reasons.BACKEND_REACHABLE, ok, reason, message, ref.generation)
        if not changed:
            return
        if not ok:
            self._emit(ref, "Warning", reason, message)
        elif previous is not None and previous.status == "False":
            self._emit(ref, "Normal", reasons.BACKEND_RECOVERED, message)

    async def _publish(
        self,
        ref: StoreRef,
        store: _Store,
        spec: StateStoreSpec,
        config: BackendConfig,
        files: Mapping[str, str],
    ) -> None:
        """The binding Secret and the workload Role, created or brought up to date."""
        name = store_object_name(ref.name)
        data = binding_data(
            config,
            files=files,
            default_ttl_seconds=spec.locks.default_ttl_seconds,
            lease_mirroring=spec.locks.lease_mirroring,
        )
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": BINDING_SECRET_TYPE,
            "metadata": self._metadata(ref, name),
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": self._metadata(ref, name),
            "rules": workload_rules(ref.name, name),
        }
        digest = hashlib.sha256(json.dumps([secret, role], sort_keys=True).encode()).hexdigest()
        if store.published != digest:
            failure: _Failed | None
            try:
                await self._apply(ref, secrets_path(ref.namespace), secret)
                roles = object_path("rbac.authorization.k8s.io", "v1", "roles", ref.namespace)
                await self._apply(ref, roles, role)
            except KubeApiError as exc:
                failure = _Failed(reasons.KUBERNETES_API_ERROR, f"publishing the binding: {exc}")
            except _Failed as exc:
                failure = exc
            else:
                failure = None
            if failure is not None:
                store.book.set(
                    reasons.BINDING_PUBLISHED,
                    False,
                    failure.reason,
                    failure.message,
                    ref.generation,
                )
                raise failure
            store.published = digest
        store.book.binding = name
        store.book.set(
            reasons.BINDING_PUBLISHED,
            True,
            reasons.PUBLISHED,
            f"binding Secret and Role {name} are up to date",
            ref.generation,
        )

    def _metadata(self, ref: StoreRef, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": ref.namespace,
            "labels": {STORE_LABEL: store_label_value(ref.name), **MANAGED_BY},
            "ownerReferences": [ref.owner_reference()],
        }

    async def _apply(self, ref: StoreRef, collection: str, body: dict[str, Any]) -> None:
        """Create ``body``, or replace the existing object if it is ours and differs."""
        name = body["metadata"]["name"]
        try:
            await self._api.create(collection, body)
            return
        except KubeApiError as exc:
            if not exc.conflict:
                raise
        path = f"{collection}/{name}"
        existing = await self._api.get(path)
        owners = existing.get("metadata", {}).get("ownerReferences") or []
        if not any(owner.get("uid") == ref.uid for owner in owners):
            raise _Failed(
                reasons.BINDING_CONFLICT,
                f'{body["kind"]} "{name}" exists and is not owned by this StateStore',
            )
        fields = ("data", "type", "rules")
        metadata = existing.get("metadata", {})
        same = all(existing.get(f) == body.get(f) for f in fields) and all(
            metadata.get(k) == body["metadata"][k] for k in ("labels", "ownerReferences")
        )
        if not same:
            replacement = json.loads(json.dumps(body))
            replacement["metadata"]["resourceVersion"] = metadata.get("resourceVersion")
            await self._api.replace(path, replacement)

    async def _delete_leases(self, ref: StoreRef) -> int:
        leases = leases_path(ref.namespace)
        selector = {"labelSelector": f"{STORE_LABEL}={store_label_value(ref.name)}"}
        found = await self._api.get(leases, params=selector)
        count = len(found.get("items") or [])
        if count:
            await self._api.delete(leases, params=selector)
        return count

    async def _purge(self, ref: StoreRef, store: _Store, spec: StateStoreSpec) -> Outcome | None:
        """Purge the store's data; an outcome if the deletion must wait (or give up)."""
        prefix = spec.effective_prefix(ref.namespace, ref.name)
        try:
            values = await self._resolve_secrets(ref, spec)
            store.secret_values = tuple(values.values())
            config, files = self._config(ref, store, spec, values)
            connection = await self._connection(ref, store, config, files)
            async with asyncio.timeout(spec.operation_timeout_seconds * 6):
                removed = await connection.store.purge()
        except _Failed as failure:
            if failure.reason in (reasons.SECRET_NOT_FOUND, reasons.INVALID_SPEC):
                message = f"cannot purge: {failure.message}; data under {prefix!r} retained"
                self._emit(ref, "Warning", reasons.PURGE_FAILED, message)
                return Outcome(False, reasons.PURGE_FAILED, message)
            return Outcome.of(failure.reason, f"purge failed, will retry: {failure.message}")
        except Exception as exc:
            problem = classify(exc)
            message = scrub(problem.message, store.secret_values)
            return Outcome.of(problem.reason, f"purge failed, will retry: {message}")
        self._emit(
            ref, "Normal", reasons.DATA_PURGED, f"purged {removed} key(s) under prefix {prefix!r}"
        )
        return None

    # -- status --------------------------------------------------------------------------------

    async def _fail(self, ref: StoreRef, store: _Store, reason: str, message: str) -> Outcome:
        book = store.book
        message = scrub(message, store.secret_values)
        if reason in (reasons.SECRET_NOT_FOUND, reasons.INVALID_SPEC):
            if reason == reasons.SECRET_NOT_FOUND:
                book.set(reasons.SECRETS_RESOLVED, False, reason, message, ref.generation)
            await self._close(store)
            book.set(
                reasons.BACKEND_REACHABLE,
                None,
                reasons.NOT_CHECKED,
                "not checked: the spec or its Secrets are not usable",
                ref.generation,
            )
        previous = book.condition(reasons.READY)
        book.set(reasons.READY, False, reason, message, ref.generation)
        self._metrics.reconciliations.inc(reason)
        await self._write_status(ref, store)
        # Once per new problem, not once per probe while it lasts.
        repeated = previous is not None and (previous.reason, previous.message) == (reason, message)
        logger.log(logging.DEBUG if repeated else logging.WARNING, "%s: not ready: %s: %s",
                   ref, reason, message)  # fmt: skip
        return Outcome.of(reason, message)

    async def _succeed(self, ref: StoreRef, store: _Store, *, count: bool) -> Outcome:
        book = store.book
        if all(
            book.is_true(t)
            for t in (
                reasons.SECRETS_RESOLVED,
                reasons.BACKEND_REACHABLE,
                reasons.BINDING_PUBLISHED,
            )
        ):
            message = "the backend is reachable and the binding is published"
            book.set(reasons.READY, True, reasons.RECONCILED, message, ref.generation)
            if count:
                self._metrics.reconciliations.inc(reasons.RECONCILED)
            await self._write_status(ref, store)
            return Outcome(True, reasons.RECONCILED, message)
        ready = book.condition(reasons.READY)
        reason = ready.reason if ready else reasons.PENDING
        await self._write_status(ref, store)
        return Outcome.of(reason, ready.message if ready else "not reconciled yet")

    async def _write_status(self, ref: StoreRef, store: _Store) -> None:
        patch = store.book.patch()
        recent = time.monotonic() - store.last_write < STATUS_REFRESH_S
        if recent and _without_latency(patch) == _without_latency(store.last_patch):
            # Nothing but the latency moved: refresh it now and then, not on every probe.
            return
        path = stores_path(ref.namespace, ref.name, "status")
        try:
            await self._api.merge_patch(path, patch)
        except KubeApiError as exc:
            if exc.not_found:
                return  # deleted meanwhile
            logger.warning("%s: writing the status failed: %s", ref, exc)
            return
        store.last_patch, store.last_write = patch, time.monotonic()

    # -- bookkeeping ---------------------------------------------------------------------------

    async def _store(self, ref: StoreRef, status: Mapping[str, Any] | None) -> _Store:
        store = self._stores.get(ref.key)
        if store is None or store.uid != ref.uid:
            # A new object (or one recreated under the same name): start afresh.
            if store is not None:
                await self._close(store)
            store = _Store(uid=ref.uid, deleted=ref.uid in self._finalized)
            self._stores[ref.key] = store
        store.book.seed(status)
        return store

    async def _close(self, store: _Store) -> None:
        connection, store.connection, store.fingerprint = store.connection, None, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


def _without_latency(patch: Mapping[str, Any] | None) -> object:
    if patch is None:
        return None
    status = dict(patch["status"])
    backend = dict(status.get("backend") or {})
    backend.pop("latencyMs", None)
    status["backend"] = backend
    # The BackendReachable message quotes the latency too.
    status["conditions"] = [
        {k: v for k, v in c.items() if k != "message" or c.get("type") != reasons.BACKEND_REACHABLE}
        for c in status.get("conditions", [])
    ]
    return status


def workload_rules(store: str, binding: str) -> list[dict[str, Any]]:
    """What a workload of this store may do: read its binding and StateStore, mirror Leases.

    ``create`` cannot be limited to names (the name is not known before the object exists), so
    Leases are granted namespace-wide.
    """
    return [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [binding], "verbs": ["get"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["create", "get", "update", "patch", "delete", "list", "watch"],
        },
        {
            "apiGroups": [API_GROUP],
            "resources": [PLURAL],
            "resourceNames": [store],
            "verbs": ["get"],
        },
    ]
