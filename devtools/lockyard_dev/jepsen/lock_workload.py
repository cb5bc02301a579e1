"""Lock operations recorded for the ``lock`` model, with fenced writes to a protected resource.

A cycle takes one of a few shared locks, either

- explicitly: ``try_acquire``, then fenced writes, ``extend`` and ``is_held`` in some order,
  then ``release`` (or, one time in four, nothing: the lease runs out and others take over); the
  holder stops writing at its local deadline (the start of its last acquiring or renewing call
  plus the TTL, less ``hold()``'s loss margin), as ``hold()`` would;
- or through ``hold()``, whose acquisition, renewals (:class:`HoldRenewals`) and release are
  recorded, with fenced writes inside the block until it ends or is cancelled.

Each process labels its attempts (``owner`` in the history; Lockyard's own owner token stays
inside the guard). A *belief* note records when a holder thought it held the lock: from the
acquisition's return to its release call, its local deadline, or the moment ``hold()``
cancelled the block. Fenced writes go to ``fence_key(lock)``, a store key holding
``"<token>:<writer>"``: read it (``get_versioned``), refuse if it holds a higher token, else
``compare_and_swap`` on the version read (``check_and_set`` when missing). Both steps are
recorded for the ``kv`` model.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from typing import Any

from lockyard import (
    CasResult,
    DistributedLock,
    LockExpiredError,
    LockGuard,
    LockLostError,
    LockTimeoutError,
    StateStore,
)
from lockyard.locks import loss_margin_s
from lockyard_dev.jepsen.data_workload import KV, _cas, _versioned
from lockyard_dev.jepsen.history import FAIL, INFO, OK
from lockyard_dev.jepsen.ops import Answer, NotRecorded, Process, Recorder
from lockyard_dev.jepsen.spec import fence_key, lock_name

LOCK = "lock"


def _not_held(exc: BaseException) -> Answer | None:
    return (OK, {"held": False}) if isinstance(exc, LockExpiredError) else None


def _token_of(value: str | None) -> int | None:
    if value is None:
        return None
    head = value.split(":", 1)[0]
    return int(head) if head.lstrip("-").isdigit() else None


class HoldRenewals:
    """Records every renewal ``hold()`` makes on its own, for guards this worker labelled.

    ``hold()`` renews inside its own task and gives up a renewal that cannot save the lease
    any more; the request may still reach the backend and extend the lease. So each attempt is
    recorded as it goes out, and one that does not come back is an unknown outcome: a history
    that showed only the confirmed renewals would make a longer lease look like a bug. The
    backend's one extend primitive is wrapped on this handle's ``DistributedLock`` instance.
    """

    def __init__(self, locks: DistributedLock, recorder: Recorder) -> None:
        self.recorder = recorder
        self.process = Process(recorder)  # renewals run beside the block: a process of their own
        self.labels: dict[str, tuple[str, str]] = {}  # guard owner token -> (lock, label)
        extend = locks._extend

        async def recorded(name: str, owner: str, ttl_ms: int) -> bool:
            found = self.labels.get(owner)
            if found is None:
                return await extend(name, owner, ttl_ms)
            lock, label = found
            history, number = self.recorder.history, self.process.number
            op_id = history.invoke(number, lock, LOCK, "extend", {"owner": label, "ttl_ms": ttl_ms})
            try:
                held = await extend(name, owner, ttl_ms)
            except BaseException:
                history.complete(op_id, number, INFO)
                raise
            history.complete(op_id, number, OK, {"held": held})
            return held

        locks._extend = recorded  # type: ignore[method-assign]


class LockWorkload:
    def __init__(
        self,
        locks: DistributedLock,
        store: StateStore,
        recorder: Recorder,
        rng: random.Random,
        run_id: str,
        worker: int,
        count: int,
        ttl_ms: int,
    ) -> None:
        self.locks = locks
        self.store = store
        self.recorder = recorder
        self.rng = rng
        self.run_id = run_id
        self.worker = worker
        self.names = [lock_name(run_id, i) for i in range(count)]
        self.ttl_ms = ttl_ms
        self.ttl_s = ttl_ms / 1000
        self.margin_s = loss_margin_s(self.ttl_s)
        self.renewals = HoldRenewals(locks, recorder)
        self._attempts = 0
        self._writes = 0

    def new_label(self) -> str:
        self._attempts += 1
        return f"w{self.worker}-a{self._attempts}"

    async def cycle(self, process: Process) -> None:
        name = self.rng.choice(self.names)
        if self.rng.random() < 0.25:
            await self.hold_cycle(process, name, wait_s=self.ttl_s)
        else:
            await self.explicit_cycle(process, name)

    # -- explicit guards -------------------------------------------------------------------
    async def explicit_cycle(self, process: Process, name: str) -> None:
        label = self.new_label()
        record = self.recorder.perform
        try:
            guard: LockGuard | None = await record(
                process,
                name,
                LOCK,
                "acquire",
                {"owner": label, "ttl_ms": self.ttl_ms},
                lambda: self.locks.try_acquire(name, self.ttl_s),
                lambda g: {"busy": True} if g is None else {"token": g.fencing_token},
            )
        except NotRecorded:
            return
        if guard is None:
            return
        believed_from = time.monotonic_ns()
        deadline = guard.lease_deadline - self.margin_s
        ended = None
        for _ in range(self.rng.randint(1, 4)):
            await asyncio.sleep(self.rng.uniform(0, self.ttl_s / 8))
            if time.monotonic() >= deadline:
                break
            roll = self.rng.random()
            try:
                if roll < 0.6:
                    await self.fenced_write(process, name, guard.fencing_token, deadline)
                elif roll < 0.8:
                    await record(
                        process,
                        name,
                        LOCK,
                        "extend",
                        {"owner": label, "ttl_ms": self.ttl_ms},
                        lambda: guard.extend(self.ttl_s),
                        lambda _: {"held": True},
                        _not_held,
                    )
                    deadline = guard.lease_deadline - self.margin_s
                else:
                    held = await record(
                        process,
                        name,
                        LOCK,
                        "is_held",
                        {"owner": label},
                        guard.is_held,
                        lambda h: {"held": h},
                    )
                    if not held:
                        ended = time.monotonic_ns()
                        break
            except NotRecorded as stop:
                if stop.kind == OK:  # extend answered: no longer held
                    ended = time.monotonic_ns()
                    break
        if ended is None and self.rng.random() < 0.75 and time.monotonic() < deadline:
            ended = time.monotonic_ns()
            with contextlib.suppress(NotRecorded):
                await record(
                    process,
                    name,
                    LOCK,
                    "release",
                    {"owner": label},
                    guard.release,
                    lambda _: {"held": True},
                    _not_held,
                )
        if ended is None:
            ended = int(deadline * 1e9)  # abandoned: believed until the local deadline
        self.belief(process, name, label, guard.fencing_token, believed_from, ended, "explicit")

    def belief(
        self, process: Process, name: str, label: str, token: int, start: int, end: int, how: str
    ) -> None:
        self.recorder.notes.write(
            "belief", lock=name, owner=label, token=token, start=start, end=end, how=how
        )

    # -- fencing ---------------------------------------------------------------------------
    async def fenced_write(
        self, process: Process, name: str, token: int, deadline: float, *, zombie: bool = False
    ) -> str:
        """One fenced write of ``token``: "written", "rejected", "conflict", "late" or "unknown".

        ``zombie``: a holder that no longer checks its deadline (a paused process that woke
        up): the resource alone must refuse it.
        """
        key = fence_key(self.run_id, name)
        store, record = self.store, self.recorder.perform
        try:
            found: tuple[str, int] | None = await record(
                process, key, KV, "get_versioned", {}, lambda: store.get_versioned(key), _versioned
            )
            if not zombie and time.monotonic() >= deadline:
                return "late"
            stored = _token_of(found[0]) if found is not None else None
            if stored is not None and stored > token:
                self.recorder.notes.write(
                    "fence_rejected", lock=name, token=token, stored=stored, zombie=zombie
                )
                return "rejected"
            self._writes += 1
            value = f"{token}:w{self.worker}-{self._writes}"
            if found is None:
                created: bool = await record(
                    process,
                    key,
                    KV,
                    "check_and_set",
                    {"value": value},
                    lambda: store.check_and_set(key, value),
                    lambda c: {"created": c},
                )
                return "written" if created else "conflict"
            version = found[1]
            result: CasResult = await record(
                process,
                key,
                KV,
                "compare_and_swap",
                {"expected": version, "value": value},
                lambda: store.compare_and_swap(key, version, value),
                _cas,
            )
            return "written" if result.ok else "conflict"
        except NotRecorded:
            return "unknown"

    # -- hold() ----------------------------------------------------------------------------
    async def hold_cycle(
        self,
        process: Process,
        name: str,
        *,
        wait_s: float,
        writes: int | None = None,
        until_lost: bool = False,
    ) -> tuple[LockGuard | None, str]:
        """A ``hold()`` block doing fenced writes; returns its guard (None if not acquired)
        and the attempt's label.

        ``until_lost``: keep writing until ``hold()`` gives the lock up (the partitioned
        client), noting when it did and when its last confirmed lease began.
        """
        label = self.new_label()
        history, notes = self.recorder.history, self.recorder.notes
        args = {"owner": label, "ttl_ms": self.ttl_ms}
        invoked = time.monotonic_ns()
        guard: LockGuard | None = None
        believed_from = ended = 0
        release_call = 0
        try:
            async with self.locks.hold(name, self.ttl_s, timeout=wait_s) as held:
                guard = held
                believed_from = time.monotonic_ns()
                self.renewals.labels[guard.owner] = (name, label)
                op = history.invoke(process.number, name, LOCK, "acquire", args, at=invoked)
                history.complete(op, process.number, OK, {"token": guard.fencing_token})
                try:
                    count = 0
                    while until_lost or count < (writes or self.rng.randint(1, 4)):
                        count += 1
                        await asyncio.sleep(self.rng.uniform(0, self.ttl_s / 8))
                        await self.fenced_write(process, name, guard.fencing_token, float("inf"))
                except asyncio.CancelledError:
                    ended = time.monotonic_ns()
                    if until_lost:
                        lease_start = guard.lease_deadline - guard.lease_ms / 1000
                        notes.write(
                            "victim_lost",
                            lock=name,
                            token=guard.fencing_token,
                            lost=ended,
                            lease_start=int(lease_start * 1e9),
                            ttl_ms=self.ttl_ms,
                        )
                    raise
                release_call = ended = time.monotonic_ns()
            op = history.invoke(process.number, name, LOCK, "release", {"owner": label}, at=ended)
            history.complete(op, process.number, OK, {"held": True})
        except LockTimeoutError:
            # Every attempt found the lock taken (or others queued first): nothing changed.
            op = history.invoke(process.number, name, LOCK, "acquire", args, at=invoked)
            history.complete(op, process.number, FAIL)
        except LockLostError:
            if release_call:  # the release found the lock gone
                op = history.invoke(
                    process.number, name, LOCK, "release", {"owner": label}, at=release_call
                )
                history.complete(op, process.number, OK, {"held": False})
        except Exception as exc:  # a lost connection, a timeout, or a contract breach: unknown
            kind = "release" if guard is not None else "acquire"
            op_args: dict[str, Any] = {"owner": label} if guard is not None else args
            # Held: the error came from the block or from the release hold() then made.
            at = (release_call or time.monotonic_ns()) if guard is not None else invoked
            op = history.invoke(process.number, name, LOCK, kind, op_args, at=at)
            history.complete(op, process.number, INFO)
            self.recorder.tally.info += 1
            self.recorder.tally.errors[type(exc).__name__] += 1
            if not isinstance(exc, self.recorder.contract):
                self.recorder.tally.foreign[type(exc).__qualname__] += 1
                self.recorder.foreign(f"hold:{kind}", exc)
            process.crashed()
        finally:
            if guard is not None:
                self.renewals.labels.pop(guard.owner, None)
                end = ended or time.monotonic_ns()
                self.belief(process, name, label, guard.fencing_token, believed_from, end, "hold")
        return guard, label
