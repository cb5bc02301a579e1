"""What a deleted StateStore leaves to clean up: its mirrored Leases, and with
``deletionPolicy: Delete`` its data (every key, index entry and lock under its prefix).

The binding Secret and Role need nothing: they are owned by the store, and garbage collection
removes them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from lockyard.config.resource import StateStoreSpec
from lockyard.kube.names import STORE_LABEL, store_label_value
from lockyard_operator import reasons
from lockyard_operator.classify import classify, scrub
from lockyard_operator.kube import KubeApi, leases_path
from lockyard_operator.secret_values import build_config, read_values
from lockyard_operator.state import EventSink, Failed, Outcome, StoreRef, StoreState

#: Purging may take this many operation timeouts (it deletes in batches).
PURGE_TIMEOUTS = 6


async def remove_leases(api: KubeApi, ref: StoreRef) -> int:
    """Delete the store's mirrored Leases (by label); how many there were."""
    leases = leases_path(ref.namespace)
    selector = {"labelSelector": f"{STORE_LABEL}={store_label_value(ref.name)}"}
    found = await api.get(leases, params=selector)
    count = len(found.get("items") or [])
    if count:
        await api.delete(leases, params=selector)
    return count


async def purge_data(
    api: KubeApi,
    ref: StoreRef,
    store: StoreState,
    spec: StateStoreSpec,
    folder: Path,
    emit: EventSink,
) -> Outcome | None:
    """Purge the store's data; an outcome if the deletion must wait (or give up).

    Secrets or a spec that make purging impossible give up at once (``PurgeFailed``, data
    retained); a backend that cannot be reached now is retried.
    """
    prefix = spec.effective_prefix(ref.namespace, ref.name)
    try:
        values = await read_values(api, ref.namespace, spec)
        store.secret_values = tuple(values.values())
        config, files = build_config(ref.namespace, ref.name, spec, values, folder)
        connection, _ = await store.backend.open(config, files)
        async with asyncio.timeout(spec.operation_timeout_seconds * PURGE_TIMEOUTS):
            removed = await connection.store.purge()
    except Failed as failure:
        if failure.reason in (reasons.SECRET_NOT_FOUND, reasons.INVALID_SPEC):
            message = f"cannot purge: {failure.message}; data under {prefix!r} retained"
            emit(ref, "Warning", reasons.PURGE_FAILED, message)
            return Outcome(False, reasons.PURGE_FAILED, message)
        return Outcome.of(failure.reason, f"purge failed, will retry: {failure.message}")
    except Exception as exc:
        problem = classify(exc)
        message = scrub(problem.message, store.secret_values)
        return Outcome.of(problem.reason, f"purge failed, will retry: {message}")
    emit(ref, "Normal", reasons.DATA_PURGED, f"purged {removed} key(s) under prefix {prefix!r}")
    return None
