"""The operation runner: its one timeout per call, cancellation, and error translation.

No backend here: the "backend call" is a plain coroutine, so each case controls exactly when it
finishes. The backends' own tests cover the runner against real servers that stop answering.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from lockyard.errors import BackendConnectionError, OperationTimeoutError, StateError
from lockyard.operations import ErrorTranslator, OperationRunner, default_translate

TIMEOUT = 0.05


def runner(translate: ErrorTranslator = default_translate) -> OperationRunner:
    return OperationRunner("test", TIMEOUT, translate)


def pending_cancellations() -> int:
    task = asyncio.current_task()
    assert task is not None
    return task.cancelling()


async def test_a_call_that_finishes_in_time_returns_its_result() -> None:
    run = runner()

    async def quick() -> int:
        await asyncio.sleep(0)
        return 7

    assert [await run("op", quick()) for _ in range(1000)] == [7] * 1000


async def test_a_slow_call_raises_operation_timeout_error_naming_the_operation() -> None:
    run = runner()
    started = time.monotonic()
    with pytest.raises(OperationTimeoutError, match=r"test: get took longer .* 0.05s") as info:
        await run("get", asyncio.sleep(10))
    assert TIMEOUT <= time.monotonic() - started < TIMEOUT + 0.5
    assert isinstance(info.value, StateError)
    # The task carries no leftover cancellation: it goes on awaiting normally.
    assert pending_cancellations() == 0
    await asyncio.sleep(0.01)


async def test_each_concurrent_call_gets_its_own_deadline() -> None:
    # A timeout far above the short calls' sleeps: a loop delayed by load (40 ms beside two CPU
    # hogs) must not turn a 20 ms call into a timeout against 50 ms.
    run = OperationRunner("test", 20 * TIMEOUT, default_translate)

    async def call(delay: float) -> str:
        try:
            await run("op", asyncio.sleep(delay))
        except OperationTimeoutError:
            return "timeout"
        return "ok"

    results = await asyncio.gather(*(call(d) for d in (0, 0.01, 10, 0.02, 10)))
    assert results == ["ok", "ok", "timeout", "ok", "timeout"]


async def test_later_calls_are_timed_after_an_idle_pause() -> None:
    run = runner()
    await run("op", asyncio.sleep(0))
    await asyncio.sleep(TIMEOUT * 3)  # the watchdog's timer lapses meanwhile
    with pytest.raises(OperationTimeoutError):
        await run("op", asyncio.sleep(10))
    assert await run("op", asyncio.sleep(0, "after")) == "after"


async def test_a_shorter_timeout_set_later_is_still_kept() -> None:
    run = OperationRunner("test", 10.0, default_translate)
    first = asyncio.create_task(run("slow", asyncio.sleep(0.5)))
    await asyncio.sleep(0)
    run.timeout = TIMEOUT
    started = time.monotonic()
    with pytest.raises(OperationTimeoutError):
        await run("op", asyncio.sleep(10))
    assert time.monotonic() - started < 0.4
    await first


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    run = runner()
    task = asyncio.create_task(run("op", asyncio.sleep(10)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_outside_cancellation_together_with_the_timeout_is_not_swallowed() -> None:
    run = runner()
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(run("op", asyncio.sleep(10)))
    await asyncio.sleep(0)
    watchdog = run._watchdog
    assert watchdog is not None
    assert watchdog.timer is not None
    # Due at the watchdog's very deadline: both run in the same loop pass, before the task wakes.
    loop.call_at(watchdog.timer.when(), task.cancel)
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_call_that_swallows_the_cancellation_leaves_none_behind() -> None:
    run = runner()

    async def stubborn() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "swallowed"
        return "slept"

    assert await run("op", stubborn()) == "swallowed"
    assert pending_cancellations() == 0
    await asyncio.sleep(0.01)  # no stray CancelledError arrives later


async def test_driver_errors_are_translated_and_state_errors_pass_through() -> None:
    def translate(exc: BaseException) -> StateError | None:
        if isinstance(exc, ConnectionResetError):
            return BackendConnectionError("reset")
        return None

    run = runner(translate)

    async def fail(exc: BaseException) -> None:
        raise exc

    with pytest.raises(BackendConnectionError, match="reset") as info:
        await run("op", fail(ConnectionResetError()))
    assert isinstance(info.value.__cause__, ConnectionResetError)
    with pytest.raises(KeyError):
        await run("op", fail(KeyError("untranslated")))
    own = BackendConnectionError("already ours")
    with pytest.raises(BackendConnectionError) as info:
        await run("op", fail(own))
    assert info.value is own


async def test_a_driver_timeout_is_an_operation_timeout_unless_translated() -> None:
    async def driver_timeout() -> None:
        raise TimeoutError("socket read timed out")

    with pytest.raises(OperationTimeoutError, match="took longer"):
        await runner()("op", driver_timeout())

    def translate(exc: BaseException) -> StateError | None:
        return (
            BackendConnectionError("connect timed out") if isinstance(exc, TimeoutError) else None
        )

    with pytest.raises(BackendConnectionError, match="connect timed out"):
        await runner(translate)("op", driver_timeout())
