"""Bad input at the wire: damaged Redis and PostgreSQL replies in the middle of a live pool.

A fake endpoint (:class:`~lockyard_dev.jepsen.wirefuzz.FuzzProxy`, on 127.0.0.1 in front of a
real server) damages the reply to one operation: cut short and closed, cut short and left
hanging, finished only after the operation timeout, replaced by garbage, by a well-formed reply
of another shape, by a 32 MiB one, by an error, or given a 2 GB length. Meanwhile other
operations run on the same handle. For every damage hypothesis draws, Lockyard must

- raise a ``StateError`` (or, where the damage leaves a valid reply, return a value of the
  operation's own type), never another exception; a reply of the wrong shape or size raises
  ``UnexpectedReplyError`` (docs/backends/redis.md and postgres.md, *Replies*);
- finish within the operation timeout plus slack (no hang);
- give every other operation its own right answer, then and afterwards (a connection with a
  half-read reply must never serve another operation);
- leave nothing unhandled on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lockyard
from lockyard import CasResult, LockGuard, StateError
from lockyard.errors import OperationTimeoutError, UnexpectedReplyError
from lockyard_dev.jepsen.wirefuzz import MUTATIONS, FuzzProxy, Mutation
from lockyard_dev.servers.postgres import PostgresServer
from lockyard_dev.servers.redis import RedisServer

MARKER = "fuzzmark"
#: Replies that are well-formed but not what the command returns, or far too large: the
#: backends' reply readers must turn them into UnexpectedReplyError.
SHAPES = ("wrong-shape", "oversized")
OPERATION_TIMEOUT_S = 1.0
#: Damage that leaves no valid reply: the operation must raise. (A 32 MiB reply is larger than
#: any value the store accepts, so it is no valid reply either.)
MUST_RAISE = {
    "truncate-close",
    "truncate-stall",
    "absurd-length",
    "garbage",
    "late-remainder",
    "oversized",
}
BYSTANDERS = 6
#: How often an example whose operation timed out while the process was starved is run.
STARVED_ATTEMPTS = 3
#: The starvation watch's tick (seconds).
STARVATION_TICK_S = 0.01

Check = Callable[[object], bool]


def _is_str_or_none(r: object) -> bool:
    return r is None or isinstance(r, str)


def _is_versioned(r: object) -> bool:
    return r is None or (
        isinstance(r, tuple)
        and len(r) == 2
        and isinstance(r[0], str)
        and isinstance(r[1], int)
        and not isinstance(r[1], bool)
    )


def _is_cas(r: object) -> bool:
    return (
        isinstance(r, CasResult)
        and isinstance(r.ok, bool)
        and _is_str_or_none(r.current_value)
        and isinstance(r.current_version, int)
    )


def _is_int(r: object) -> bool:
    return isinstance(r, int) and not isinstance(r, bool)


def _is_scan(r: object) -> bool:
    return isinstance(r, list) and all(
        isinstance(item, tuple) and len(item) == 2 and all(isinstance(x, str) for x in item)
        for item in r
    )


def _operations(
    tenant: str,
) -> dict[str, tuple[Callable[[lockyard.Connection], Awaitable[Any]], Check]]:
    key = f"fz:{tenant}:state:{MARKER}"
    counter = f"fz:{tenant}:counter:{MARKER}"
    lock = f"{MARKER}-{tenant}"
    return {
        "get": (lambda ly: ly.store.get(key), _is_str_or_none),
        "get_versioned": (lambda ly: ly.store.get_versioned(key), _is_versioned),
        "set": (lambda ly: ly.store.set(key, "v" * 40), lambda r: r is None),
        "check_and_set": (
            lambda ly: ly.store.check_and_set(key, "x"),
            lambda r: isinstance(r, bool),
        ),
        "delete": (lambda ly: ly.store.delete(key), lambda r: isinstance(r, bool)),
        "increment": (lambda ly: ly.store.increment(counter, 3), _is_int),
        "compare_and_swap": (lambda ly: ly.store.compare_and_swap(key, 1, "y"), _is_cas),
        "scan_keys": (lambda ly: ly.store.scan_keys("fz", tenant, "state", MARKER), _is_scan),
        "try_acquire": (
            lambda ly: ly.locks.try_acquire(lock, 5),
            lambda r: r is None or isinstance(r, LockGuard),
        ),
    }


@dataclass
class Starvation:
    """The longest stretch (seconds) in which the event loop was due to run but the process
    got no CPU."""

    longest_s: float = 0.0


@contextlib.asynccontextmanager
async def watching_starvation() -> AsyncIterator[Starvation]:
    """Tick every 10 ms while the body runs: a tick that wakes late without having used the
    CPU meanwhile was descheduled (a late tick that used it was the loop's own work)."""
    starvation = Starvation()

    async def tick() -> None:
        while True:
            wall, cpu = time.monotonic(), time.process_time()
            await asyncio.sleep(STARVATION_TICK_S)
            late = time.monotonic() - wall - STARVATION_TICK_S
            idle = late - (time.process_time() - cpu)
            starvation.longest_s = max(starvation.longest_s, idle)

    ticking = asyncio.ensure_future(tick())
    try:
        yield starvation
    finally:
        ticking.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticking


@dataclass
class Harness:
    runner: asyncio.Runner
    proxy: FuzzProxy
    ly: lockyard.Connection
    tenant: str
    #: bystander keys and the values they must always read
    expected: dict[str, str]
    bound_s: float
    loop_errors: list[dict[str, Any]] = field(default_factory=list)

    def run(self, coroutine: Awaitable[Any]) -> Any:
        return self.runner.run(coroutine)  # type: ignore[arg-type]

    async def bystander(self, key: str) -> str | None:
        try:
            value = await self.ly.store.get(key)
        except StateError:
            return None  # a failure is allowed (a reset may take its connection too)
        assert value == self.expected[key], f"{key} read {value!r}: another operation's reply"
        return value

    async def verify(self) -> None:
        """Every bystander reads its own value again: the pool recovered and is in step."""
        for key, value in self.expected.items():
            for attempt in range(3):
                try:
                    assert await self.ly.store.get(key) == value
                    break
                except StateError:
                    if attempt == 2:
                        raise
                    await asyncio.sleep(0.2)

    async def attempt(self, mutation: Mutation, name: str) -> tuple[object, float, float]:
        """Arm the damage and run ``name`` beside the bystanders: (its outcome, the seconds it
        took, the longest stretch in which this process got no CPU meanwhile)."""
        operation, _ = _operations(self.tenant)[name]
        self.proxy.fired.clear()
        self.proxy.arm(mutation)
        async with watching_starvation() as starved:
            bystanders = asyncio.gather(*(self.bystander(k) for k in self.expected))
            started = time.monotonic()
            outcome: object
            try:
                outcome = await operation(self.ly)
            except StateError as exc:
                outcome = exc
            except Exception as exc:
                pytest.fail(
                    f"{name} under {mutation}: {type(exc).__qualname__} is no StateError: {exc!r}"
                )
            elapsed = time.monotonic() - started
            await bystanders
        return outcome, elapsed, starved.longest_s

    async def example(self, mutation: Mutation, name: str) -> object:
        _, valid = _operations(self.tenant)[name]
        for attempts_left in reversed(range(STARVED_ATTEMPTS)):
            outcome, elapsed, starved_s = await self.attempt(mutation, name)
            # A timeout while the process itself got no CPU for half the operation timeout
            # (CI's other workers on two cores) tested nothing: the request may never have
            # left the proxy. Such an example runs again once the pool has settled.
            if not (
                isinstance(outcome, OperationTimeoutError)
                and starved_s >= OPERATION_TIMEOUT_S / 2
                and attempts_left
            ):
                break
            await asyncio.sleep(0.1)  # a reply still on its way through the proxy lands
            await self.verify()
        assert self.proxy.fired == [mutation], (
            f"{name}: the damaged reply was never sent (the operation gave {outcome!r})"
        )
        # The 32 MiB reply is also copied through the proxy and parsed before it is refused: on a
        # loaded machine that adds about as much again as the rest of the bound's slack.
        bound_s = self.bound_s * (2 if mutation.kind == "oversized" else 1)
        assert elapsed <= bound_s, f"{name} under {mutation.kind} took {elapsed:.2f} s"
        if mutation.kind in MUST_RAISE:
            assert isinstance(outcome, StateError), f"{name} under {mutation}: returned {outcome!r}"
        if mutation.kind in SHAPES and isinstance(outcome, StateError):
            # 32 MiB through the fuzzing proxy can outlast the 1 s operation timeout on a loaded
            # machine; the timeout is then the clean answer (the test asks that most were not).
            expected = (
                (UnexpectedReplyError, OperationTimeoutError)
                if mutation.kind == "oversized"
                else UnexpectedReplyError
            )
            assert isinstance(outcome, expected), f"{name} under {mutation}: {outcome!r}"
        elif not isinstance(outcome, StateError):
            assert valid(outcome), f"{name} under {mutation}: returned {outcome!r}"
        if isinstance(outcome, LockGuard):
            await self.ly.locks.break_lock(outcome.name)
        if mutation.kind == "late-remainder":
            await asyncio.sleep(mutation.delay_s)  # the rest of the reply has arrived by now
        await self.verify()
        await asyncio.sleep(0)
        assert not self.loop_errors, f"unhandled on the event loop: {self.loop_errors}"
        return outcome


def _url(backend: str, server: RedisServer | PostgresServer, port: int, prefix: str) -> str:
    timeout = f"{OPERATION_TIMEOUT_S:g}"
    if backend == "redis":
        return f"redis://127.0.0.1:{port}/0?prefix={prefix}&timeout={timeout}"
    assert isinstance(server, PostgresServer)
    url = server.url(sslmode="disable", prefix=prefix, timeout=timeout)
    return url.replace(f"127.0.0.1:{server.port}/", f"127.0.0.1:{port}/")


async def _baseline_s(ly: lockyard.Connection, key: str) -> float:
    """The slowest of 20 plain reads: how fast this machine is right now."""
    slowest = 0.0
    for _ in range(20):
        t0 = time.monotonic()
        await ly.store.get(key)
        slowest = max(slowest, time.monotonic() - t0)
    return slowest


@pytest.fixture(
    params=[
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("postgresql", marks=pytest.mark.postgres),
    ]
)
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    backend: str = request.param
    server: RedisServer | PostgresServer = request.getfixturevalue(
        "redis_server" if backend == "redis" else "postgres_server"
    )
    upstream = server.port
    assert upstream is not None
    tenant = uuid.uuid4().hex[:8]
    with asyncio.Runner() as runner:
        errors: list[dict[str, Any]] = []
        runner.get_loop().set_exception_handler(lambda loop, context: errors.append(context))
        proxy = runner.run(
            FuzzProxy(
                backend if backend == "redis" else "postgresql", upstream, MARKER.encode()
            ).start()
        )
        ly = runner.run(_connect(_url(backend, server, proxy.port, f"fuzz{tenant}")))
        try:
            expected = {
                f"fz:{tenant}:state:by{i}": f"bystander-{i}-" + "z" * (i * 300)
                for i in range(BYSTANDERS)
            }
            for key, value in expected.items():
                runner.run(ly.store.set(key, value))
            slowest = runner.run(_baseline_s(ly, next(iter(expected))))
            # The timeout, plus slack for a loaded machine: a 32 MiB reply through the proxy,
            # and twenty of the slowest plain reads.
            bound = OPERATION_TIMEOUT_S + 2.0 + 20 * slowest
            yield Harness(runner, proxy, ly, tenant, expected, bound, errors)
            runner.run(ly.store.purge())
        finally:
            runner.run(ly.close())
            runner.run(proxy.close())


async def _connect(url: str) -> lockyard.Connection:
    return await lockyard.connect(url)


@pytest.mark.slow
@pytest.mark.timeout(600)
@settings(
    deadline=None,
    database=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    kind=st.sampled_from(MUTATIONS),
    cut=st.floats(min_value=0.01, max_value=0.99),
    noise=st.binary(min_size=1, max_size=24),
    operation=st.sampled_from(sorted(_operations("t"))),
)
def test_a_damaged_reply_fails_one_operation_cleanly(
    harness: Harness, kind: str, cut: float, noise: bytes, operation: str
) -> None:
    mutation = Mutation(kind, cut, noise, delay_s=1.5 * OPERATION_TIMEOUT_S)
    harness.run(harness.example(mutation, operation))


@pytest.mark.parametrize("kind", MUTATIONS)
def test_every_damage_once_on_a_read(harness: Harness, kind: str) -> None:
    """Each kind of damage at least once, whatever hypothesis draws (on ``get``); every error
    reply the proxy knows (``LOADING`` once came back as ``get``'s value, not an error)."""
    for variant in range(8) if kind == "error" else (1,):
        mutation = Mutation(kind, 0.5, bytes([variant]), delay_s=1.5 * OPERATION_TIMEOUT_S)
        harness.run(harness.example(mutation, "get"))


@pytest.mark.slow
@pytest.mark.parametrize("kind", SHAPES)
def test_replies_of_the_wrong_shape_raise_state_errors(harness: Harness, kind: str) -> None:
    """Every operation against every wrong shape (or the 32 MiB reply): each raises
    ``UnexpectedReplyError`` or, where the shape happens to be a valid reply, returns a value
    of its own type; and the pool goes on serving every other operation correctly. Reading the
    32 MiB reply may instead time out on a loaded machine, but not for every operation."""
    variants = range(8) if kind == "wrong-shape" else range(1)
    outcomes = []
    for name in sorted(_operations(harness.tenant)):
        for variant in variants:
            mutation = Mutation(kind, 0.5, bytes([variant]), delay_s=1.5 * OPERATION_TIMEOUT_S)
            outcomes.append(harness.run(harness.example(mutation, name)))
    timeouts = sum(isinstance(outcome, OperationTimeoutError) for outcome in outcomes)
    if kind == "oversized":
        # How many time out depends on the machine's load (7 of 9 beside two CPU hogs): at
        # least one 32 MiB reply must have been read through and refused.
        assert timeouts < len(outcomes), f"all {timeouts} operations timed out"
    else:
        assert timeouts == 0, f"{timeouts} of {len(outcomes)} operations timed out"
