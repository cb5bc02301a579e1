"""Leases through Lockyard's Kubernetes client, recorded for the ``kv`` model.

Lockyard writes Leases (the lock mirror, the reaper, ``lockyard locks break``) with
conditional requests through :class:`~lockyard.kube.api.KubeApi`. Here a few Leases in the
``default`` namespace serve as registers: ``spec.holderIdentity`` is the value and
``spec.leaseTransitions``, which every write raises by one, the version. Operations, each one
API request:

- ``check_and_set``: create the Lease (transitions 1); ``AlreadyExists`` is ``False``;
- ``get`` / ``get_versioned``: read it (404 is ``None``);
- ``compare_and_swap``: replace it with the ``resourceVersion`` of the read that saw the expected
  version; 409 is a refusal that does not say what it found (``conflict``), 404 a missing key.

Leases are never deleted here: a re-created Lease would start again at transitions 1 with a new
``resourceVersion``, and a version would no longer name one state.
"""

from __future__ import annotations

import random
from typing import Any

from lockyard.kube.api import KubeApi
from lockyard.kube.errors import KubeApiError
from lockyard.kube.paths import LEASE_API_VERSION, leases_path
from lockyard_dev.jepsen.data_workload import KV, _versioned
from lockyard_dev.jepsen.history import OK
from lockyard_dev.jepsen.ops import Answer, NotRecorded, Process, Recorder

NAMESPACE = "default"


def lease_key(run_id: str, index: int) -> str:
    return f"jepsen-{run_id}-lease-{index}"


def _answer(exc: BaseException, f: str) -> Answer | None:
    """The API's refusals that are answers: it did not act (or the object is missing)."""
    if not isinstance(exc, KubeApiError) or exc.unreachable:
        return None
    if f == "check_and_set" and exc.conflict:
        return (OK, {"created": False})
    if f == "compare_and_swap" and exc.conflict:
        return (OK, {"ok": False, "conflict": True})
    if f == "compare_and_swap" and exc.not_found:
        return (OK, {"ok": False, "value": None, "version": 0})
    if f in ("get", "get_versioned") and exc.not_found:
        return (OK, {"value": None, "version": 0})
    return None


class LeaseWorkload:
    def __init__(
        self, api: KubeApi, recorder: Recorder, rng: random.Random, run_id: str, keys: int
    ) -> None:
        self.api = api
        self.recorder = recorder
        self.rng = rng
        self.keys = [lease_key(run_id, i) for i in range(keys)]
        self._written = 0
        #: (process, key) -> (version, the Lease object read with it)
        self._seen: dict[tuple[int, str], tuple[int, dict[str, Any]]] = {}

    def _value(self, process: Process) -> str:
        self._written += 1
        return f"p{process.number}-{self._written}"

    async def step(self, process: Process) -> None:
        key = self.rng.choice(self.keys)
        roll = self.rng.random()
        seen = self._seen.get((process.number, key))
        try:
            if roll < 0.15:
                await self._create(process, key)
            elif roll < 0.55 or seen is None:
                await self._read(process, key, versioned=roll < 0.45 or seen is None)
            else:
                await self._swap(process, key, *seen)
        except NotRecorded:
            self._seen.pop((process.number, key), None)  # read again before the next swap

    async def _record(
        self, process: Process, key: str, f: str, args: dict[str, Any], action: Any, encode: Any
    ) -> Any:
        return await self.recorder.perform(
            process, key, KV, f, args, action, encode, lambda exc: _answer(exc, f)
        )

    async def _create(self, process: Process, key: str) -> None:
        value = self._value(process)
        body = {
            "apiVersion": LEASE_API_VERSION,
            "kind": "Lease",
            "metadata": {"name": key, "namespace": NAMESPACE},
            "spec": {"holderIdentity": value, "leaseTransitions": 1},
        }
        await self._record(
            process,
            key,
            "check_and_set",
            {"value": value},
            lambda: self.api.create(leases_path(NAMESPACE), body),
            lambda _: {"created": True},
        )

    async def _read(self, process: Process, key: str, *, versioned: bool) -> None:
        path = leases_path(NAMESPACE, key)
        lease: dict[str, Any] = await self._record(
            process,
            key,
            "get_versioned" if versioned else "get",
            {},
            lambda: self.api.get(path),
            lambda obj: _versioned(_state(obj)) if versioned else {"value": _state(obj)[0]},
        )
        self._seen[process.number, key] = (_state(lease)[1], lease)

    async def _swap(self, process: Process, key: str, version: int, lease: dict[str, Any]) -> None:
        value = self._value(process)
        body = {**lease, "spec": {**lease.get("spec", {})}}
        body["spec"]["holderIdentity"] = value
        body["spec"]["leaseTransitions"] = version + 1
        path = leases_path(NAMESPACE, key)
        written: dict[str, Any] = await self._record(
            process,
            key,
            "compare_and_swap",
            {"expected": version, "value": value},
            lambda: self.api.replace(path, body),
            lambda obj: {"ok": True, "value": _state(obj)[0], "version": _state(obj)[1]},
        )
        self._seen[process.number, key] = (_state(written)[1], written)


def _state(lease: dict[str, Any]) -> tuple[str, int]:
    spec = lease.get("spec") or {}
    return str(spec.get("holderIdentity", "")), int(spec.get("leaseTransitions", 0))
