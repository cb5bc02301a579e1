"""Store operations on a few shared keys, recorded for the ``kv`` model.

Four families, a few keys each, every key shared by every process of every worker:

- ``register``: ``set`` / ``get`` / ``get_versioned`` / ``delete``;
- ``cas``: ``compare_and_swap`` on the version a process last read (``check_and_set`` to create),
  ``get_versioned``;
- ``dedup``: ``check_and_set`` / ``get`` / ``delete`` (so keys are created again and again);
- ``counter``: ``increment`` (deltas -1..3) and ``get``.

No key has a TTL: expiry would make the model depend on time. Values name their writer and are
unique, so a read shows which write it saw.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any

from lockyard import CasResult, SerializationError, StateStore
from lockyard_dev.jepsen.history import OK
from lockyard_dev.jepsen.ops import Answer, NotRecorded, Process, Recorder
from lockyard_dev.jepsen.spec import FAMILIES, data_key

KV = "kv"


def _value(v: str | None) -> dict[str, Any]:
    return {"value": v}


def _versioned(found: tuple[str, int] | None) -> dict[str, Any]:
    return (
        {"value": None, "version": 0} if found is None else {"value": found[0], "version": found[1]}
    )


def _cas(result: CasResult) -> dict[str, Any]:
    return {"ok": result.ok, "value": result.current_value, "version": result.current_version}


def _serialization(exc: BaseException) -> Answer | None:
    return (OK, {"error": "serialization"}) if isinstance(exc, SerializationError) else None


class DataWorkload:
    def __init__(
        self, store: StateStore, recorder: Recorder, rng: random.Random, run_id: str, keys: int
    ) -> None:
        self.store = store
        self.recorder = recorder
        self.rng = rng
        self.keys = {
            family: [data_key(run_id, family, i) for i in range(keys)] for family in FAMILIES
        }
        self._written = 0
        #: (process number, key) -> the version that process last read or wrote
        self._seen: dict[tuple[int, str], int] = {}

    def _fresh_value(self, process: Process) -> str:
        """Unique; one in five padded to 0.5-3 KB, so replies span several packets (and a
        bandwidth limit or a cut in mid-reply has something to bite on)."""
        self._written += 1
        value = f"p{process.number}-{self._written}"
        if self.rng.random() < 0.2:
            value += "." * self.rng.randint(500, 3000)
        return value

    async def step(self, process: Process) -> None:
        """One operation on a random key of a random family (errors are recorded, not raised)."""
        family = self.rng.choice(FAMILIES)
        key = self.rng.choice(self.keys[family])
        with contextlib.suppress(NotRecorded):
            await getattr(self, f"_{family}")(process, key)

    async def _record(
        self, process: Process, key: str, f: str, args: dict[str, Any], action: Any, encode: Any
    ) -> Any:
        return await self.recorder.perform(
            process, key, KV, f, args, action, encode, _serialization
        )

    async def _register(self, process: Process, key: str) -> None:
        store, roll = self.store, self.rng.random()
        if roll < 0.4:
            v = self._fresh_value(process)
            await self._record(
                process, key, "set", {"value": v}, lambda: store.set(key, v), lambda _: {}
            )
        elif roll < 0.8:
            await self._record(process, key, "get", {}, lambda: store.get(key), _value)
        elif roll < 0.9:
            await self._record(
                process, key, "get_versioned", {}, lambda: store.get_versioned(key), _versioned
            )
        else:
            await self._record(
                process, key, "delete", {}, lambda: store.delete(key), lambda d: {"deleted": d}
            )

    async def _cas(self, process: Process, key: str) -> None:
        store, roll = self.store, self.rng.random()
        seen = self._seen.get((process.number, key))
        if roll < 0.3 or (seen is None and roll < 0.6):
            found = await self._record(
                process, key, "get_versioned", {}, lambda: store.get_versioned(key), _versioned
            )
            if found is not None:
                self._seen[process.number, key] = found[1]
            return
        v = self._fresh_value(process)
        if seen is None:
            created = await self._record(
                process,
                key,
                "check_and_set",
                {"value": v},
                lambda: store.check_and_set(key, v),
                lambda c: {"created": c},
            )
            if created:
                self._seen[process.number, key] = 1
            return
        result: CasResult = await self._record(
            process,
            key,
            "compare_and_swap",
            {"expected": seen, "value": v},
            lambda: store.compare_and_swap(key, seen, v),
            _cas,
        )
        if result.current_value is None:
            self._seen.pop((process.number, key), None)
        else:
            self._seen[process.number, key] = result.current_version

    async def _dedup(self, process: Process, key: str) -> None:
        store, roll = self.store, self.rng.random()
        if roll < 0.5:
            v = self._fresh_value(process)
            await self._record(
                process,
                key,
                "check_and_set",
                {"value": v},
                lambda: store.check_and_set(key, v),
                lambda c: {"created": c},
            )
        elif roll < 0.8:
            await self._record(process, key, "get", {}, lambda: store.get(key), _value)
        else:
            await self._record(
                process, key, "delete", {}, lambda: store.delete(key), lambda d: {"deleted": d}
            )

    async def _counter(self, process: Process, key: str) -> None:
        store = self.store
        if self.rng.random() < 0.75:
            delta = self.rng.choice((-1, 1, 1, 2, 3))
            await self._record(
                process,
                key,
                "increment",
                {"delta": delta},
                lambda: store.increment(key, delta),
                lambda n: {"value": n},
            )
        else:
            await self._record(process, key, "get", {}, lambda: store.get(key), _value)
