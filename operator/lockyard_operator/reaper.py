"""Reaping: remove mirrored Leases whose lock the backend no longer holds.

A holder's own mirror deletes its Lease on release and when its lease runs out, but a holder that
dies (SIGKILL, OOM, node loss) cannot; nor can a holder whose lock was broken by someone else.
:func:`reap_leases` compares one store's Leases with the backend's truth
(``DistributedLock.list_held``) and:

- **deletes** every Lease whose acquisition is over: the backend holds no lock of that name, or
  holds it under another fencing token (a newer acquisition, which has or will get its own
  Lease). Deletes are conditional on the ``resourceVersion`` the reaper read, so a Lease a new
  holder took over in the meantime is left alone;
- **corrects** the Lease of a live acquisition that looks expired (its holder's mirror is behind,
  for instance cut off from the API server): ``renewTime`` becomes now and the lease duration the
  backend's remaining lease, so ``kubectl`` shows a held lock as held;
- counts held locks with no Lease (``unmirrored``), and reports ``held`` for ``status.locks``.

Order matters for safety: the Leases are listed *before* the backend is asked. A Lease in the
list was written after its lock was acquired, so that acquisition is older than the backend's
answer, and fencing tokens only grow: if the backend does not report that very token, that
acquisition is over, and deleting its Lease is always right.

Timing: a holder killed outright keeps its lock until the lock's TTL runs out; the reaper removes
the Lease on its first pass after that. Called on a timer every ``REAP_INTERVAL_S`` seconds, it
acts within TTL + 5 s (+ one pass), inside the TTL + 10 s it is required to.

No kopf here: the operator wires :func:`reap_leases` into a timer; tests call it directly.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lockyard.locks import DistributedLock, LockInfo
from lockyard.mirror.kubeapi import LEASES, KubeApiError, KubeClient
from lockyard.mirror.lease_names import LEASE_MS_ANNOTATION, store_selector
from lockyard.mirror.leases import MirroredLease, format_micro_time

#: Seconds between reaper passes the operator's timer should use (see the module docstring).
REAP_INTERVAL_S = 5.0
#: A live lock's Lease is corrected only once it has looked expired for this long (its holder's
#: mirror normally renews it first).
CORRECT_AFTER_S = 1.0


@dataclass(frozen=True, slots=True)
class ReapResult:
    """What one pass saw and did."""

    #: Locks the backend holds (for ``status.locks.held``).
    held: int
    #: Mirrored Leases of the store found.
    leases: int
    #: Stale Leases deleted.
    deleted: int
    #: Leases of live locks brought in line with the backend.
    corrected: int
    #: Held locks with no Lease (mirroring off, or the holder's mirror cut off from the API).
    unmirrored: int
    #: Leases that changed while the pass ran, left for the next pass.
    conflicts: int


class _Leases:
    """Lease calls over whichever client the caller has: the operator's asyncio ``KubeApi``
    (``lockyard.kube.api``), a ``kubernetes.client.ApiClient`` or a ``KubeClient`` (both
    blocking: run in a thread). Errors come out as an HTTP status (0: unreachable)."""

    def __init__(self, api: Any) -> None:
        self._async = inspect.iscoroutinefunction(getattr(api, "request", None))
        self._api: Any = api if self._async or isinstance(api, KubeClient) else KubeClient(api)

    async def _call(self, method: str, path: str, query: dict[str, str], body: Any) -> Any:
        if self._async:
            try:
                return await self._api.request(method, path, params=query or None, body=body)
            except Exception as exc:
                status = getattr(exc, "status", None)
                if isinstance(status, int):
                    raise KubeApiError(status, str(exc)) from exc
                raise
        kube: KubeClient = self._api
        return await asyncio.to_thread(
            kube.request, method, path, query=list(query.items()), body=body
        )

    async def list(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        path = f"{LEASES}/namespaces/{namespace}/leases"
        listed = await self._call("GET", path, {"labelSelector": selector}, None)
        return list(listed.get("items") or [])

    async def replace(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        await self._call("PUT", f"{LEASES}/namespaces/{namespace}/leases/{name}", {}, body)

    async def delete(self, namespace: str, name: str, resource_version: str | None) -> None:
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if resource_version is not None:
            options["preconditions"] = {"resourceVersion": resource_version}
        await self._call("DELETE", f"{LEASES}/namespaces/{namespace}/leases/{name}", {}, options)


async def reap_leases(
    api: Any,
    namespace: str,
    store_name: str,
    locks: DistributedLock,
    *,
    now: Callable[[], float] = time.time,
) -> ReapResult:
    """One reaping pass over the Leases of StateStore ``namespace/store_name``.

    ``api`` is the operator's ``lockyard.kube.api.KubeApi``, a ``kubernetes.client.ApiClient`` or
    a ``lockyard.mirror.KubeClient``; ``locks`` is the store's open ``DistributedLock``. API
    failures raise ``lockyard.mirror.KubeApiError`` (``.status``; 0 = unreachable) and backend
    failures ``lockyard.StateError``: the timer retries on its next tick.
    """
    leases = _Leases(api)
    objects = [
        obj
        for obj in await leases.list(namespace, store_selector(store_name))
        if MirroredLease.from_object(obj).store == store_name
    ]
    held = {info.name: info for info in await locks.list_held()}

    deleted = corrected = conflicts = 0
    mirrored: set[str] = set()
    for obj in objects:
        lease = MirroredLease.from_object(obj)
        info = held.get(lease.lock)
        try:
            if info is None or lease.fencing_token != info.fencing_token:
                await leases.delete(namespace, lease.name, lease.resource_version)
                deleted += 1
                continue
            mirrored.add(lease.lock)
            expires_in = lease.expires_in(now())
            if expires_in is None or expires_in < -CORRECT_AFTER_S:
                await leases.replace(namespace, lease.name, _corrected(obj, info, now()))
                corrected += 1
        except KubeApiError as exc:
            if exc.status not in (404, 409):
                raise
            # 404: already gone. 409: changed since listed; the next pass sees the new state.
            conflicts += exc.status == 409
    return ReapResult(
        held=len(held),
        leases=len(objects),
        deleted=deleted,
        corrected=corrected,
        unmirrored=len(set(held) - mirrored),
        conflicts=conflicts,
    )


def _corrected(obj: dict[str, Any], info: LockInfo, now: float) -> dict[str, Any]:
    """``obj`` renewed now, for the lease the backend still grants (conditional on its version)."""
    metadata = dict(obj.get("metadata") or {})
    annotations = dict(metadata.get("annotations") or {})
    annotations[LEASE_MS_ANNOTATION] = str(max(1, info.expires_in_ms))
    metadata["annotations"] = annotations
    spec = dict(obj.get("spec") or {})
    spec["renewTime"] = format_micro_time(now)
    spec["leaseDurationSeconds"] = max(1, math.ceil(info.expires_in_ms / 1000))
    return {**obj, "metadata": metadata, "spec": spec}
