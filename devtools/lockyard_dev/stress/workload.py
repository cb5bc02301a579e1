"""The stress workload: concurrent tasks running a weighted mix of every store and lock operation.

Each task repeatedly picks an action (a short sequence of operations with its own invariant,
see :mod:`lockyard_dev.stress.invariants`), runs it, and goes on; after an operation failed it backs
off for a few tens of milliseconds, as a real caller would. Shared keys (counters, CAS chains,
dedup keys, locks) are contended by every task; private keys (registers, index entries) belong
to one task, which keeps their exact expected state.

Keys live under a *generation* namespace ``g<N>``. A chaos scenario whose server loses all its
data (moto) starts a new generation, so the checks go on with fresh keys instead of reporting
the loss the server itself caused.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from lockyard.connection import Connection
from lockyard.errors import LockExpiredError, LockLostError, LockTimeoutError, SerializationError
from lockyard.locks import LockGuard
from lockyard_dev.stress.invariants import (
    CasLedger,
    CounterLedger,
    DedupLedger,
    FencedResource,
    IndexModel,
    RegisterModel,
    cas_version_of,
)
from lockyard_dev.stress.recorder import OpFailed, Recorder

T = TypeVar("T")

STORE_OPS = (
    "check_and_set",
    "get",
    "get_versioned",
    "set",
    "delete",
    "increment",
    "compare_and_swap",
    "scan_keys",
    "scan_keys_by_kind",
    "index_timeout",
    "remove_timeout_index",
    "get_expired_timeouts",
    "index_chain_ready",
    "remove_chain_ready_index",
    "get_ready_chains",
)
LOCK_OPS = (
    "try_acquire",
    "acquire",
    "hold",
    "extend",
    "is_held",
    "release",
    "break_lock",
    "list_held",
)
OPERATIONS = STORE_OPS + LOCK_OPS

#: Private key ids: SQL and glob wildcards, colons, a backslash and non-ASCII, to prove scans
#: are literal under load.
REGISTER_IDS = ("r0", "r%1", "r_2", "r*3", "r?4", "r[5]", "r:6:x", "r\\7", "ü8", "r9 ")
SCAN_PREFIXES = ("", "r", "r%", "r_", "r*", "r[", "r:6", "ü", "zz")
INDEX_KEYS = 4
#: Pause after a failed operation (seconds, uniform).
BACKOFF_S = (0.01, 0.05)
#: How many dedup calls share one key, on average (they race for it).
DEDUP_FANOUT = 6
VERIFY_ATTEMPTS = 10
VERIFY_PAUSE_S = 0.5


@dataclass(frozen=True)
class WorkloadSettings:
    tasks: int = 64
    counters: int = 8
    cas_keys: int = 8
    lock_names: int = 4
    lock_ttl_s: float = 10.0
    #: Longest time a lock holder stays inside the protected resource (uniform from 0).
    hold_ms: float = 2.0
    acquire_timeout_s: float = 0.25
    #: A lock overlap is measured but not a violation (a Sentinel failover may cause it).
    overlaps_expected: bool = False


class Generation:
    """The keys and ledgers of one generation (see the module docstring)."""

    def __init__(self, number: int, settings: WorkloadSettings, rec: Recorder) -> None:
        self.number = number
        self.ns = ns = f"g{number}"
        counters = [f"{ns}:shared:counter:c{i}" for i in range(settings.counters)]
        self.counters = CounterLedger(counters)
        self.cas = CasLedger([f"{ns}:shared:cas:k{i}" for i in range(settings.cas_keys)])
        self.cas_known_since: dict[str, float] = {}
        self.dedup = DedupLedger()
        self.dedup_calls = 0
        self.registers: defaultdict[int, RegisterModel] = defaultdict(RegisterModel)
        self.indexes: defaultdict[tuple[int, str], IndexModel] = defaultdict(IndexModel)
        self.resource = FencedResource(rec, settings.overlaps_expected)
        self.lock_names = [f"{ns}-lock-{i}" for i in range(settings.lock_names)]

    def register_key(self, task: int, id_: str) -> str:
        return f"{self.ns}:t{task}:reg:{id_}"

    def index_key(self, task: int, i: int) -> str:
        return f"{self.ns}:t{task}:idx:e{i}"


@dataclass
class Task:
    number: int
    ly: Connection
    rng: random.Random
    seq: int = 0

    def tag(self) -> str:
        self.seq += 1
        return f"t{self.number}.{self.seq}"


Action = Callable[[Task], Awaitable[None]]


class Workload:
    """``start()`` the tasks, ``stop()`` them, then ``verify()`` what the backend holds."""

    def __init__(
        self,
        connections: list[Connection],
        settings: WorkloadSettings,
        rec: Recorder,
        seed: int,
    ) -> None:
        self.connections = connections
        self.settings = settings
        self.rec = rec
        self.seed = seed
        self.gen = Generation(0, settings, rec)
        self.retired: list[tuple[Generation, str]] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        mix: dict[Action, int] = {
            self._counter: 14,
            self._cas: 14,
            self._dedup: 10,
            self._register: 24,
            self._index: 12,
            self._scan_kind: 2,
            self._lock: 12,
            self._hold: 6,
            self._break: 3,
            self._list_held: 1,
        }
        self._actions = list(mix)
        self._weights = list(mix.values())

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> None:
        for number in range(self.settings.tasks):
            task = Task(
                number,
                self.connections[number % len(self.connections)],
                random.Random(f"{self.seed}:{number}"),
            )
            self._tasks.append(asyncio.create_task(self._run(task), name=f"stress-task-{number}"))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        self._tasks.clear()

    def new_generation(self, reason: str) -> None:
        """Go on with fresh keys: the server lost everything the current generation wrote."""
        self.retired.append((self.gen, reason))
        self.gen = Generation(self.gen.number + 1, self.settings, self.rec)

    async def _run(self, task: Task) -> None:
        while not self._stop.is_set():
            action = task.rng.choices(self._actions, self._weights)[0]
            try:
                await action(task)
            except OpFailed:
                await asyncio.sleep(task.rng.uniform(*BACKOFF_S))
            else:
                # The memory backend never suspends: let the other tasks run.
                await asyncio.sleep(0)

    # -- store actions ---------------------------------------------------------------------
    async def _counter(self, t: Task) -> None:
        g = self.gen
        key, delta = t.rng.choice(g.counters.keys), t.rng.randint(1, 9)
        ttl = None if t.rng.random() < 0.7 else 3600.0
        try:
            result = await self.rec.call("increment", t.ly.store.increment(key, delta, ttl))
        except OpFailed:
            g.counters.ambiguous(key, delta)
            raise
        g.counters.applied(key, delta, result)

    async def _cas(self, t: Task) -> None:
        g, rec, store = self.gen, self.rec, t.ly.store
        key = t.rng.choice(g.cas.keys)
        got = await rec.call("get_versioned", store.get_versioned(key))
        if got is None:
            value = f"v1:init:{t.tag()}"
            try:
                created = await rec.call("check_and_set", store.check_and_set(key, value))
            except OpFailed:
                g.cas.ambiguous[key].append(value)
                raise
            if created:
                g.cas.created_by(rec, key, value)
                g.cas_known_since.setdefault(key, time.monotonic())
            else:
                rec.outcome("check_and_set: another task created the CAS chain")
            return
        g.cas_known_since.setdefault(key, time.monotonic())
        value, version = got
        g.cas.observe(rec, key, value, version)
        new = f"v{version + 1}:{t.tag()}"
        try:
            result = await rec.call("compare_and_swap", store.compare_and_swap(key, version, new))
        except OpFailed:
            g.cas.ambiguous[key].append(new)
            raise
        if result.ok:
            if result.current_version != version + 1 or result.current_value != new:
                rec.violation(
                    "cas",
                    f"{key}: a won swap from version {version} reported "
                    f"({result.current_value!r}, {result.current_version})",
                )
            g.cas.won(rec, key, version + 1, new)
            return
        rec.outcome("compare_and_swap: conflict")
        g.cas.observe(rec, key, result.current_value, result.current_version)
        if result.current_version == version and result.current_value == value:
            rec.lost("cas", f"{key}: swap from version {version} refused, yet it is current")

    async def _dedup(self, t: Task) -> None:
        g = self.gen
        n = g.dedup_calls
        g.dedup_calls += 1
        key = f"{g.ns}:shared:dedup:d{n // DEDUP_FANOUT + t.rng.randint(0, 2)}"
        value = t.tag()
        ttl = None if t.rng.random() < 0.5 else 3600.0
        g.dedup.attempts[key] += 1
        try:
            won = await self.rec.call("check_and_set", t.ly.store.check_and_set(key, value, ttl))
        except OpFailed:
            g.dedup.ambiguous[key].append(value)
            raise
        if won:
            g.dedup.winners[key].append(value)
        else:
            self.rec.outcome("check_and_set: lost the race")

    @staticmethod
    def _value(rng: random.Random) -> str:
        return rng.choice(
            (
                "",
                "x",
                "hello wörld",
                "%_*?[]\\",
                "😀 emoji",
                str(rng.randint(-1000, 1000)),
                "7",
                "a" * rng.randint(100, 3000),
            )
        )

    async def _register(self, t: Task) -> None:
        g, rec, store, rng = self.gen, self.rec, t.ly.store, t.rng
        model = g.registers[t.number]
        key = g.register_key(t.number, rng.choice(REGISTER_IDS))
        op = rng.choices(
            ("set", "get", "get_versioned", "delete", "increment", "scan_keys"),
            (35, 20, 15, 10, 12, 8),
        )[0]
        started = time.monotonic()
        if op == "set":
            value = self._value(rng)
            roll = rng.random()
            ttl = None if roll < 0.7 else 3600.0 if roll < 0.8 else rng.uniform(0.02, 0.1)
            try:
                await rec.call("set", store.set(key, value, ttl))
            except OpFailed:
                model.forget(key)
                raise
            model.was_set(key, value, ttl, started, time.monotonic())
        elif op == "get":
            value_only = await rec.call("get", store.get(key))
            found = None if value_only is None else (value_only, None)
            model.check_read(rec, key, found, started, time.monotonic())
        elif op == "get_versioned":
            versioned = await rec.call("get_versioned", store.get_versioned(key))
            model.check_read(rec, key, versioned, started, time.monotonic())
        elif op == "delete":
            try:
                existed = await rec.call("delete", store.delete(key))
            except OpFailed:
                model.forget(key)
                raise
            model.was_deleted(rec, key, existed, started, time.monotonic())
        elif op == "increment":
            delta = rng.randint(-5, 5) or 1
            try:
                result = await rec.call(
                    "increment", store.increment(key, delta), expected=(SerializationError,)
                )
            except SerializationError:
                model.refused_increment(rec, key, started, time.monotonic())
                return
            except OpFailed:
                model.forget(key)
                raise
            model.was_incremented(rec, key, delta, result, started, time.monotonic())
        else:
            prefix = rng.choice(SCAN_PREFIXES)
            tenant = f"t{t.number}"
            found_all = await rec.call(
                "scan_keys", store.scan_keys(g.ns, tenant, "reg", prefix or None)
            )
            anchor = f"{g.ns}:{tenant}:reg:"
            model.check_scan(rec, anchor, prefix, found_all, started, time.monotonic())

    async def _index(self, t: Task) -> None:
        g, rec, store, rng = self.gen, self.rec, t.ly.store, t.rng
        which = rng.choice(("timeout", "chain"))
        model = g.indexes[(t.number, which)]
        key = g.index_key(t.number, rng.randrange(INDEX_KEYS))
        roll = rng.random()
        if roll < 0.4:
            at = rng.randint(-50, 1000)
            add = store.index_timeout if which == "timeout" else store.index_chain_ready
            name = "index_timeout" if which == "timeout" else "index_chain_ready"
            try:
                await rec.call(name, add(key, at))
            except OpFailed:
                model.entries[key] = None
                raise
            model.entries[key] = at
        elif roll < 0.6:
            if which == "timeout":
                name, removal = "remove_timeout_index", store.remove_timeout_index(key)
            else:
                name, removal = "remove_chain_ready_index", store.remove_chain_ready_index(key)
            try:
                await rec.call(name, removal)
            except OpFailed:
                model.entries[key] = None
                raise
            model.entries.pop(key, None)
        else:
            now = rng.choice((rng.randint(-50, 1000), 1000))
            if which == "timeout":
                name, due = "get_expired_timeouts", store.get_expired_timeouts(now)
            else:
                name, due = "get_ready_chains", store.get_ready_chains(now)
            found = await rec.call(name, due)
            model.check_due(rec, which, f"{g.ns}:t{t.number}:idx:", now, found)

    async def _scan_kind(self, t: Task) -> None:
        g, rec = self.gen, self.rec
        started = time.monotonic()
        found = await rec.call("scan_keys_by_kind", t.ly.store.scan_keys_by_kind("cas"))
        self._check_cas_scan(g, found, started)

    def _check_cas_scan(self, g: Generation, found: list[tuple[str, str]], started: float) -> None:
        rec = self.rec
        rec.covered("scans", "scans")
        rec.covered("scans", "entries", len(found))
        keys = [k for k, _ in found]
        if len(keys) != len(set(keys)):
            rec.violation("scans", "scan_keys_by_kind('cas') returned a key twice")
        mine = {k: v for k, v in found if k.startswith(f"{g.ns}:")}
        for k in keys:
            if k.split(":", 3)[2] != "cas":
                rec.violation("scans", f"scan_keys_by_kind('cas') returned {k!r}")
        for k, v in mine.items():
            if k not in g.cas.keys or cas_version_of(v) is None:
                rec.violation("scans", f"scan_keys_by_kind('cas') returned {k!r} = {v[:40]!r}")
        for k, since in list(g.cas_known_since.items()):
            if since < started and k not in mine:
                rec.lost("scans", f"scan_keys_by_kind('cas') missed the live {k!r}")

    # -- lock actions ----------------------------------------------------------------------
    async def _inside(self, t: Task, g: Generation, name: str, token: int) -> None:
        """Use the protected resource for a moment, as the holder of ``name``."""
        g.resource.enter(name, t.number, token, self.settings.lock_ttl_s)
        try:
            await asyncio.sleep(t.rng.uniform(0, self.settings.hold_ms / 1000))
        finally:
            g.resource.leave(name, t.number)

    async def _release(self, guard: LockGuard) -> None:
        try:
            await self.rec.call("release", guard.release(), expected=(LockExpiredError,))
        except LockExpiredError:
            self.rec.lost("locks", f"{guard.name}: release found the lock lost")

    async def _lock(self, t: Task) -> None:
        g, rec, s = self.gen, self.rec, self.settings
        name, locks = t.rng.choice(g.lock_names), t.ly.locks
        guard: LockGuard | None
        if t.rng.random() < 0.5:
            guard = await rec.call("try_acquire", locks.try_acquire(name, s.lock_ttl_s))
            if guard is None:
                rec.outcome("try_acquire: busy")
                return
        else:
            try:
                guard = await rec.call(
                    "acquire",
                    locks.acquire(name, s.lock_ttl_s, s.acquire_timeout_s),
                    expected=(LockTimeoutError,),
                    extra=s.acquire_timeout_s,
                )
            except LockTimeoutError:
                return
        rec.covered("locks", "acquisitions")
        try:
            await self._inside(t, g, name, guard.fencing_token)
            if t.rng.random() < 0.5:
                try:
                    await rec.call(
                        "extend", guard.extend(s.lock_ttl_s), expected=(LockExpiredError,)
                    )
                except LockExpiredError:
                    rec.lost("locks", f"{name}: extend found the lock lost")
                    return
            if t.rng.random() < 0.3 and not await rec.call("is_held", guard.is_held()):
                rec.lost("locks", f"{name}: is_held() is False for the holder")
        finally:
            if not guard.released and not guard.lost.is_set():
                await self._release(guard)

    async def _hold(self, t: Task) -> None:
        g, rec, s = self.gen, self.rec, self.settings
        name = t.rng.choice(g.lock_names)
        bound = s.acquire_timeout_s + rec.operation_timeout
        try:
            async with (
                rec.measure("hold", expected=(LockTimeoutError, LockLostError), extra=bound),
                t.ly.locks.hold(name, s.lock_ttl_s, timeout=s.acquire_timeout_s) as guard,
            ):
                rec.covered("locks", "acquisitions")
                await self._inside(t, g, name, guard.fencing_token)
        except LockTimeoutError:
            return
        except LockLostError:
            rec.lost("locks", f"{name}: a hold() block lost its lock")

    async def _break(self, t: Task) -> None:
        g, rec, s = self.gen, self.rec, self.settings
        name, locks = f"{g.ns}-break-t{t.number}", t.ly.locks
        guard = await rec.call("try_acquire", locks.try_acquire(name, s.lock_ttl_s))
        if guard is None:
            # An earlier cycle failed midway and left the lease behind.
            rec.outcome("try_acquire: own lock left behind by a failure, broken")
            await rec.call("break_lock", locks.break_lock(name))
            return
        rec.covered("locks", "breaks")
        if not await rec.call("break_lock", locks.break_lock(name)):
            rec.lost("locks", f"{name}: break_lock of a live lock returned False")
        try:
            await rec.call("release", guard.release(), expected=(LockExpiredError,))
        except LockExpiredError:
            pass
        else:
            rec.violation("locks", f"{name}: release after break_lock did not raise")
        again = await rec.call("try_acquire", locks.try_acquire(name, s.lock_ttl_s))
        if again is None:
            rec.lost("locks", f"{name}: still held after break_lock")
            return
        if again.fencing_token <= guard.fencing_token:
            rec.violation(
                "fencing",
                f"{name}: token {again.fencing_token} after a broken {guard.fencing_token}",
            )
        await self._release(again)

    async def _list_held(self, t: Task) -> None:
        held = await self.rec.call("list_held", t.ly.locks.list_held())
        names = [info.name for info in held]
        self.rec.covered("locks", "listings")
        if len(names) != len(set(names)):
            self.rec.violation("locks", "list_held() returned a lock twice")

    # -- verification ----------------------------------------------------------------------
    async def _read(self, what: str, make: Callable[[], Awaitable[T]]) -> T | None:
        """A read after the run, retried a few times; ``None`` (and a violation) if it fails."""
        error: OpFailed | None = None
        for _ in range(VERIFY_ATTEMPTS):
            try:
                return await self.rec.call("verify", make())
            except OpFailed as exc:
                error = exc
                await asyncio.sleep(VERIFY_PAUSE_S)
        self.rec.violation("recovery", f"could not read {what} after the run: {error}")
        return None

    async def verify(self, ly: Connection) -> None:
        """Read back every shared and private key of the current generation and check it."""
        g, rec, store = self.gen, self.rec, ly.store
        for key in g.counters.keys:
            ok, value = await self._read_value(key, store.get)
            if ok:
                try:
                    final = 0 if value is None else int(value)
                except ValueError:
                    rec.violation("counters", f"{key}: value {value!r} is not an integer")
                else:
                    g.counters.verify(rec, key, final)
        for key in g.cas.keys:
            done, versioned = await self._read_versioned(key, ly)
            if done:
                g.cas.verify(rec, key, versioned)
        started = time.monotonic()
        scanned = await self._read("the CAS chains", lambda: store.scan_keys_by_kind("cas"))
        if scanned is not None:
            self._check_cas_scan(g, scanned, started)
        dedup = await self._read("the dedup keys", lambda: store.scan_keys(g.ns, "shared", "dedup"))
        if dedup is not None:
            stored = dict(dedup)
            if len(stored) != len(dedup):
                rec.violation("scans", "scan_keys of the dedup keys returned a key twice")
            for key in g.dedup.attempts:
                value = stored.get(key)
                if value is None and g.dedup.winners[key]:
                    ok, direct = await self._read_value(key, store.get)
                    if ok and direct is not None:
                        rec.violation("scans", f"scan_keys missed the live dedup key {key!r}")
                        value = direct
                g.dedup.verify(rec, key, value)
        for model in g.registers.values():
            for key in list(model.slots):
                started = time.monotonic()
                done, versioned = await self._read_versioned(key, ly)
                if done:
                    model.check_read(rec, key, versioned, started, time.monotonic())
        everything = 10**6  # later than any timestamp the workload indexes
        due_reads = {
            "timeout": lambda: store.get_expired_timeouts(everything),
            "chain": lambda: store.get_ready_chains(everything),
        }
        for which, due in due_reads.items():
            found = await self._read(f"the {which} index", due)
            if found is None:
                continue
            for (task, index), entries in g.indexes.items():
                if index == which:
                    entries.check_due(rec, which, f"{g.ns}:t{task}:idx:", everything, found)

    async def _read_value(
        self, key: str, get: Callable[[str], Awaitable[str | None]]
    ) -> tuple[bool, str | None]:
        found = await self._read(key, lambda: _boxed(get(key)))
        return (False, None) if found is None else (True, found[0])

    async def _read_versioned(
        self, key: str, ly: Connection
    ) -> tuple[bool, tuple[str, int] | None]:
        found = await self._read(key, lambda: _boxed(ly.store.get_versioned(key)))
        return (False, None) if found is None else (True, found[0])


async def _boxed(awaitable: Awaitable[T]) -> tuple[T]:
    """A result that may be ``None``, wrapped so that ``None`` still means "read failed"."""
    return (await awaitable,)
