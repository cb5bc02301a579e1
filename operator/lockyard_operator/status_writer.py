"""Writing a store's status: conclude ``Ready`` from the other conditions, and patch it.

Writes are skipped while nothing but the latency changed (it is refreshed every
``STATUS_REFRESH_S``), so a probe every few seconds costs the API server nothing while all is
well. A store deleted meanwhile is not an error; other write failures are logged and left to
the next call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from lockyard_operator import reasons
from lockyard_operator.classify import scrub
from lockyard_operator.kube import KubeApi, KubeApiError, stores_path
from lockyard_operator.metrics import Metrics
from lockyard_operator.state import Outcome, StoreRef, StoreState

logger = logging.getLogger("lockyard_operator.reconcile")

#: Refresh the status (latency) at least this often even when nothing else changed.
STATUS_REFRESH_S = 60.0
#: Conditions that must all be true for ``Ready``.
READY_NEEDS = (reasons.SECRETS_RESOLVED, reasons.BACKEND_REACHABLE, reasons.BINDING_PUBLISHED)


class StatusWriter:
    """Concludes and writes the status of stores."""

    def __init__(self, api: KubeApi, metrics: Metrics) -> None:
        self._api = api
        self._metrics = metrics

    async def fail(self, ref: StoreRef, store: StoreState, reason: str, message: str) -> Outcome:
        """``Ready=False`` for ``reason``, written; the outcome for the caller."""
        book = store.book
        message = scrub(message, store.secret_values)
        if reason in (reasons.SECRET_NOT_FOUND, reasons.INVALID_SPEC):
            if reason == reasons.SECRET_NOT_FOUND:
                book.set(reasons.SECRETS_RESOLVED, False, reason, message, ref.generation)
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
        await self.write(ref, store)
        # Once per new problem, not once per probe while it lasts.
        repeated = previous is not None and (previous.reason, previous.message) == (reason, message)
        logger.log(logging.DEBUG if repeated else logging.WARNING, "%s: not ready: %s: %s",
                   ref, reason, message)  # fmt: skip
        return Outcome.of(reason, message)

    async def succeed(self, ref: StoreRef, store: StoreState, *, count: bool) -> Outcome:
        """``Ready=True`` if every condition it needs is true, written; the outcome."""
        book = store.book
        if all(book.is_true(t) for t in READY_NEEDS):
            message = "the backend is reachable and the binding is published"
            book.set(reasons.READY, True, reasons.RECONCILED, message, ref.generation)
            if count:
                self._metrics.reconciliations.inc(reasons.RECONCILED)
            await self.write(ref, store)
            return Outcome(True, reasons.RECONCILED, message)
        ready = book.condition(reasons.READY)
        reason = ready.reason if ready else reasons.PENDING
        await self.write(ref, store)
        return Outcome.of(reason, ready.message if ready else "not reconciled yet")

    async def write(self, ref: StoreRef, store: StoreState) -> None:
        patch = store.book.patch()
        recent = time.monotonic() - store.last_write < STATUS_REFRESH_S
        if recent and without_latency(patch) == without_latency(store.last_patch):
            # Nothing but the latency moved: refresh it now and then, not on every probe.
            return
        try:
            await self._api.merge_patch(stores_path(ref.namespace, ref.name, "status"), patch)
        except KubeApiError as exc:
            if exc.not_found:
                return  # deleted meanwhile
            logger.warning("%s: writing the status failed: %s", ref, exc)
            return
        store.last_patch, store.last_write = patch, time.monotonic()


def without_latency(patch: Mapping[str, Any] | None) -> object:
    """The patch with the latency (and the BackendReachable message quoting it) left out."""
    if patch is None:
        return None
    status = dict(patch["status"])
    backend = dict(status.get("backend") or {})
    backend.pop("latencyMs", None)
    status["backend"] = backend
    status["conditions"] = [
        {k: v for k, v in c.items() if k != "message" or c.get("type") != reasons.BACKEND_REACHABLE}
        for c in status.get("conditions", [])
    ]
    return status
