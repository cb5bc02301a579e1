"""The kopf handlers: thin adapters from kopf's calls to :mod:`lockyard_operator.reconcile`.

Each handler parses the resource into :class:`~lockyard.config.resource.StateStoreSpec`, calls
the reconciler, and turns its outcome into kopf's vocabulary: nothing (done),
``kopf.TemporaryError(delay=...)`` (retryable: kopf tries again) or ``kopf.PermanentError``
(the spec must change first). Handlers return nothing: kopf would store a return value under
``.status``, and the strict schema would prune it silently. Status is written by the reconciler.

Triggers of a reconciliation:

- create, update (any change of spec, labels or annotations) and resume (operator start);
- a change to a Secret the store references (an index of StateStores by referenced Secret
  filters the Secret events down to those);
- the probe daemon, every ``probeIntervalSeconds`` (a fresh login and a ping while all is well;
  the whole reconciliation while something is wrong, so a store heals on its own).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import kopf
from pydantic import ValidationError

from lockyard.config.resource import (
    API_GROUP,
    API_VERSION,
    DEFAULT_PROBE_INTERVAL_S,
    KIND,
    PLURAL,
    StateStoreSpec,
    referenced_secrets,
)
from lockyard.config.urls import describe_validation_error
from lockyard_operator import reasons
from lockyard_operator.kube import KubeApi, KubeApiError, stores_path
from lockyard_operator.reaper import REAP_INTERVAL_S
from lockyard_operator.reconcile import Reconciler
from lockyard_operator.state import Outcome, StoreRef

logger = logging.getLogger(__name__)

#: Longest pause between kopf's retries of a failed reconciliation (the probe and the Secret
#: watch usually fix things sooner; this is the backstop).
MAX_RETRY_DELAY_S = 60.0
#: How long deletion waits for an unreachable backend before giving up on purging its data.
FINALIZE_TIMEOUT_S = 600.0
#: How often a sleeping probe daemon checks whether kopf asks it to stop.
STOP_POLL_S = 1.0


def parse_spec(spec: Mapping[str, Any]) -> StateStoreSpec:
    """The spec as the model; ``ValidationError`` if it is not valid."""
    return StateStoreSpec.model_validate(dict(spec))


def spec_error(exc: ValidationError) -> str:
    return describe_validation_error(exc).replace("invalid settings", "invalid spec", 1)


def store_ref(meta: Mapping[str, Any]) -> StoreRef:
    generation = meta.get("generation")
    return StoreRef(
        namespace=str(meta["namespace"]),
        name=str(meta["name"]),
        uid=str(meta["uid"]),
        generation=int(generation) if generation is not None else None,
    )


def probe_interval(spec: Mapping[str, Any]) -> float:
    value = spec.get("probeIntervalSeconds", DEFAULT_PROBE_INTERVAL_S)
    return float(value) if isinstance(value, int | float) and value >= 1 else 10.0


def retry_delay(spec: Mapping[str, Any], retry: int) -> float:
    """Back off from the probe interval, doubling per retry, up to a minute."""
    return min(MAX_RETRY_DELAY_S, probe_interval(spec) * 2.0 ** min(retry, 6))


async def pause(stopped: kopf.DaemonStopped, seconds: float) -> bool:
    """Sleep ``seconds`` unless the daemon is asked to stop; ``False`` if it was.

    Short sleeps rather than ``await stopped.wait(...)`` (whose helper task can outlive a
    daemon cancelled at shutdown) or one long sleep (kopf would cancel the daemon, and log and
    post a warning about it every time a store is deleted or the operator stops).
    """
    deadline = time.monotonic() + seconds
    while not stopped:
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        await asyncio.sleep(min(STOP_POLL_S, left))
    return False


#: The API server refuses an Event whose message is over 1024 *bytes* (``422``); kopf cuts
#: messages at 1024 characters, which text from a spec (a host name in another script) can
#: still exceed, and the Event is then lost. Handler errors get kopf's prefix (the handler's
#: name and "failed temporarily"), hence the room below the limit.
EVENT_MESSAGE_BYTES = 1024
HANDLER_ERROR_BYTES = 800


def fit_message(message: str, limit: int = EVENT_MESSAGE_BYTES) -> str:
    """``message`` within ``limit`` bytes of UTF-8: its head and tail around "...", as kopf
    shortens by characters (the cause is usually at the start, the detail at the end)."""
    data = message.encode()
    if len(data) <= limit:
        return message
    infix = "..."
    half = (limit - len(infix)) // 2
    return data[:half].decode(errors="ignore") + infix + data[-half:].decode(errors="ignore")


def raise_for(outcome: Outcome, delay: float) -> None:
    """Nothing for success; otherwise the kopf exception that makes kopf retry or stop."""
    if outcome.ready or outcome.reason == reasons.PENDING:
        return  # done, or the store is being deleted (the finalizer handles it)
    message = fit_message(f"{outcome.reason}: {outcome.message}", HANDLER_ERROR_BYTES)
    if outcome.retryable:
        raise kopf.TemporaryError(message, delay=delay)
    raise kopf.PermanentError(message)


def event_body(ref: StoreRef) -> Any:
    """The least of a StateStore that kopf needs to post an Event about it."""
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": ref.name, "namespace": ref.namespace, "uid": ref.uid},
    }


def post_event(ref: StoreRef, type_: str, reason: str, message: str) -> None:
    """The reconciler's event sink: kopf queues the Event and posts it in the background."""
    kopf.event(kopf.Body(event_body(ref)), type=type_, reason=reason, message=fit_message(message))


def register(
    registry: kopf.OperatorRegistry,
    reconciler: Reconciler,
    api: KubeApi,
    *,
    session: Callable[[kopf.ConnectionInfo], kopf.AiohttpSession] | None = None,
) -> None:
    """Register every handler of the operator on ``registry``; ``session`` turns kopf's
    credentials into the session kopf uses (the leader's gated one, :mod:`.gated_clients`)."""
    resource = (API_GROUP, API_VERSION, PLURAL)

    @kopf.on.login(id="login", registry=registry)
    async def login(**kwargs: Any) -> kopf.ConnectionInfo | kopf.AiohttpSession | None:
        """In a pod its service account, elsewhere $KUBECONFIG (through the official client)."""
        info = await asyncio.to_thread(lambda: kopf.login_via_client(**kwargs))
        # In the event loop: an aiohttp session belongs to the loop it is made in.
        return info if info is None or session is None else session(info)

    @kopf.on.cleanup(id="close_connections", registry=registry)
    async def close_connections(**_: Any) -> None:
        """Close every backend connection while the operator stops (their tasks end with them,
        so kopf need not wait for them as hung tasks)."""
        await reconciler.close()

    @kopf.index(*resource, id="secret_users", registry=registry)
    def secret_users(
        namespace: str | None, name: str | None, spec: kopf.Spec, **_: Any
    ) -> dict[tuple[str | None, str], str | None]:
        """StateStores by the Secrets they reference: ``(namespace, secret) -> store``."""
        return {(namespace, secret): name for secret in referenced_secrets(spec)}

    @kopf.on.resume(*resource, id="reconcile", registry=registry)
    @kopf.on.create(*resource, id="reconcile", registry=registry)
    @kopf.on.update(*resource, id="reconcile", registry=registry)
    async def reconcile_store(
        spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status, retry: int, **_: Any
    ) -> None:
        ref = store_ref(meta)
        try:
            parsed = parse_spec(spec)
        except ValidationError as exc:
            outcome = await reconciler.invalid_spec(ref, spec_error(exc), status)
        else:
            outcome = await reconciler.reconcile(ref, parsed, status)
        raise_for(outcome, retry_delay(spec, retry))

    @kopf.on.delete(*resource, id="finalize", registry=registry, timeout=FINALIZE_TIMEOUT_S)
    async def finalize_store(spec: kopf.Spec, meta: kopf.Meta, retry: int, **_: Any) -> None:
        try:
            parsed: StateStoreSpec | None = parse_spec(spec)
        except ValidationError:
            parsed = None
        outcome = await reconciler.finalize(store_ref(meta), parsed)
        raise_for(outcome, retry_delay(spec, retry))

    @kopf.daemon(
        *resource,
        id="probe",
        registry=registry,
        cancellation_backoff=STOP_POLL_S * 2,
        cancellation_timeout=10.0,
    )
    async def probe_store(
        stopped: kopf.DaemonStopped,
        spec: kopf.Spec,
        meta: kopf.Meta,
        status: kopf.Status,
        **_: Any,
    ) -> None:
        # spec, meta and status are live views: they follow the object while the daemon runs.
        # The first wait is a random part of the interval, so the stores an operator starts
        # with are not all probed in the same instant (each still within one interval).
        wait = random.uniform(0, probe_interval(spec))
        while await pause(stopped, wait):
            wait = probe_interval(spec)
            if meta.get("deletionTimestamp"):
                return
            ref = store_ref(meta)
            try:
                parsed = parse_spec(spec)
            except ValidationError as exc:
                await reconciler.invalid_spec(ref, spec_error(exc), status)
                continue
            await reconciler.probe(ref, parsed, status)

    @kopf.timer(
        *resource,
        id="reap_leases",
        registry=registry,
        interval=REAP_INTERVAL_S,
        field="spec.locks.leaseMirroring",
        value=True,
    )
    async def reap_store(meta: kopf.Meta, **_: Any) -> None:
        """Mirrored Leases whose lock is gone (a holder died) are deleted within seconds."""
        if not meta.get("deletionTimestamp"):
            await reconciler.reap(store_ref(meta))

    def referenced(namespace: str | None, name: str | None, **kwargs: Any) -> bool:
        users: kopf.Index[tuple[str | None, str | None], str | None] = kwargs["secret_users"]
        return (namespace, name) in users

    @kopf.on.event("", "v1", "secrets", id="secret_changed", registry=registry, when=referenced)
    async def secret_changed(type: str, name: str, namespace: str | None, **kwargs: Any) -> None:
        if not type or namespace is None:
            return  # the initial listing (no event type): resume handlers cover it
        secret_users: kopf.Index[tuple[str | None, str | None], str | None]
        secret_users = kwargs["secret_users"]
        for store in sorted({s for s in secret_users.get((namespace, name), []) if s}):
            await reconcile_by_name(reconciler, api, namespace, store)


async def reconcile_by_name(
    reconciler: Reconciler, api: KubeApi, namespace: str, name: str
) -> None:
    """Reconcile a store now, reading it from the API (for triggers other than its own events)."""
    path = stores_path(namespace, name)
    try:
        body = await api.get_or_none(path)
    except KubeApiError as exc:
        logger.warning("reading StateStore %s/%s failed: %s", namespace, name, exc)
        return
    if body is None or body.get("metadata", {}).get("deletionTimestamp"):
        return
    ref = store_ref(body["metadata"])
    status = body.get("status")
    try:
        parsed = parse_spec(body.get("spec") or {})
    except ValidationError as exc:
        await reconciler.invalid_spec(ref, spec_error(exc), status)
        return
    logger.info("%s: a referenced Secret changed: reconciling", ref)
    await reconciler.reconcile(ref, parsed, status)
