"""Run the public conformance suite (:mod:`lockyard.testing`) against the blocking facade.

The suite is async; :func:`sync_connect_factory` gives it handles whose every call runs the
blocking method of a :class:`lockyard.sync.Connection` in a worker thread (so the threads, the
portal and the sync guards are what is under test), awaited from the suite's loop::

    class TestSyncRedis(Conformance):
        @pytest.fixture
        def lockyard_connect(self, redis_server):
            return sync_connect_factory(
                lambda prefix: lockyard.sync.connect(redis_server.url(prefix))
            )

What the adapter translates, and only this: a cancelled await interrupts the blocked thread
(:func:`lockyard.sync.interrupt`) and waits for it; ``hold()`` runs its enter and exit in a
thread of its own and turns the sync loss callback into the cancellation the async contract
promises; the suite's few reads of backend internals (``locks._run(...)``) go through
:meth:`lockyard.sync.Connection.run`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, cast

from lockyard.connection import Connection as AsyncConnection
from lockyard.sync.connection import Connection
from lockyard.sync.locks import LockGuard, LockHold
from lockyard.sync.threads import interrupt
from lockyard.testing.fixtures import ConnectFactory


class _Workers:
    """One thread per asyncio task, as each worker of a threaded program has its own thread.

    (A shared ``ThreadPoolExecutor`` does not fit: it counts finished jobs as idle threads, so
    a call can wait in its queue behind threads blocked in long ``acquire`` waits, and then
    reaches the backend after callers that came later.)
    """

    def __init__(self) -> None:
        self._threads: dict[asyncio.Task[Any], concurrent.futures.ThreadPoolExecutor] = {}

    def _thread(self) -> concurrent.futures.ThreadPoolExecutor:
        task = asyncio.current_task()
        assert task is not None, "the conformance suite runs in tasks"
        thread = self._threads.get(task)
        if thread is None:
            thread = concurrent.futures.ThreadPoolExecutor(1, "lockyard-sync-suite")
            self._threads[task] = thread
            task.add_done_callback(self._retire)
        return thread

    def _retire(self, task: asyncio.Task[Any]) -> None:
        thread = self._threads.pop(task, None)
        if thread is not None:
            thread.shutdown(wait=False)

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await run_interruptibly(self._thread(), fn, *args, **kwargs)

    def shutdown(self) -> None:
        for thread in self._threads.values():
            thread.shutdown(wait=False)
        self._threads.clear()


class _Running:
    __slots__ = ("cancelled", "lock", "thread")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.cancelled = False


async def run_interruptibly(
    pool: concurrent.futures.Executor, fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    """``fn(*args, **kwargs)`` in ``pool``; if the await is cancelled, interrupt and wait."""
    running = _Running()

    def run() -> Any:
        with running.lock:
            if running.cancelled:
                raise concurrent.futures.CancelledError()
            running.thread = threading.current_thread()
        try:
            return fn(*args, **kwargs)
        finally:
            with running.lock:
                running.thread = None

    future = asyncio.get_running_loop().run_in_executor(pool, run)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        # As the async call would: stop the operation (a waiter leaves its queue) before the
        # cancellation goes on. The thread may not have reached its blocking wait yet: retry.
        while not future.done():
            with running.lock:
                running.cancelled = True
                thread = running.thread
            if thread is not None:
                interrupt(thread)
            await asyncio.wait([future], timeout=0.002)
        if not future.cancelled():
            future.exception()  # retrieved: the cancellation is what the caller sees
        raise


class _Proxy:
    """Awaitable forms of a sync object's methods; its plain attributes as they are."""

    def __init__(self, target: Any, workers: _Workers) -> None:
        self._target = target
        self._workers = workers

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value
        workers = self._workers

        async def call(*args: Any, **kwargs: Any) -> Any:
            return _wrap(await workers.call(value, *args, **kwargs), workers)

        return call


def _wrap(result: Any, workers: _Workers) -> Any:
    return _AsyncGuard(result, workers) if isinstance(result, LockGuard) else result


class _AsyncGuard(_Proxy):
    """A sync guard as the suite uses an async one: awaitable methods, ``async with``."""

    async def __aenter__(self) -> _AsyncGuard:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._workers.call(self._target.__exit__, exc_type, exc, tb)


class _Deferred:
    """``locks._try_acquire(...)`` as the suite writes it: a call made later, on the loop."""

    def __init__(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.name, self.args, self.kwargs = name, args, kwargs


class _AsyncLocks(_Proxy):
    def __init__(self, handle: Connection, workers: _Workers) -> None:
        super().__init__(handle.locks, workers)
        self._handle = handle

    def hold(self, *args: Any, **kwargs: Any) -> _AsyncHold:
        return _AsyncHold(self._target, args, kwargs, self._workers)

    async def _run(self, operation: str, deferred: _Deferred) -> Any:
        async def run(connection: AsyncConnection) -> Any:
            locks = connection.locks
            primitive = getattr(locks, deferred.name)
            return await locks._run(operation, primitive(*deferred.args, **deferred.kwargs))

        return await self._workers.call(self._handle.run, run)

    def __getattr__(self, name: str) -> Any:
        if hasattr(self._target, name):
            return super().__getattr__(name)
        if name.startswith("_"):  # a backend primitive, to be run by _run
            return lambda *args, **kwargs: _Deferred(name, args, kwargs)

        async def read(connection: AsyncConnection) -> Any:  # tuning such as poll_cap_s
            return getattr(connection.locks, name)

        return self._handle.run(read)


class _AsyncHold:
    """``async with locks.hold(...)``: enter and exit in one thread of the hold's own; a loss
    cancels the block, through the sync ``on_lost`` callback."""

    def __init__(
        self, locks: Any, args: tuple[Any, ...], kwargs: dict[str, Any], workers: _Workers
    ) -> None:
        self._workers = workers
        self._thread = concurrent.futures.ThreadPoolExecutor(1, "lockyard-sync-suite-hold")
        self._block: asyncio.Task[Any] | None = None
        self._cancelled_block = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # Made now, as the async hold() checks its arguments when called, not when entered.
        self._hold: LockHold = locks.hold(*args, on_lost=self._lost, **kwargs)

    def _lost(self, guard: LockGuard) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._cancel_block)

    def _cancel_block(self) -> None:
        if self._block is not None and not self._block.done():
            self._cancelled_block = True
            self._block.cancel()

    async def __aenter__(self) -> _AsyncGuard:
        self._loop = asyncio.get_running_loop()
        self._block = asyncio.current_task()
        try:
            guard = await run_interruptibly(self._thread, self._hold.__enter__)
        except BaseException:
            self._thread.shutdown(wait=False)
            raise
        return _AsyncGuard(guard, self._workers)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        try:
            if self._cancelled_block and self._block is not None:
                self._block.uncancel()  # our cancellation: the sync exit raises LockLostError
                exc_type, exc, tb = None, None, None
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._thread, self._hold.__exit__, exc_type, exc, tb)
            return False
        finally:
            self._thread.shutdown(wait=False)


class AsyncFacade:
    """A :class:`lockyard.sync.Connection` dressed as the ``lockyard.Connection`` the suite
    expects."""

    def __init__(self, handle: Connection) -> None:
        self.sync = handle
        self._workers = _Workers()
        self.store = _Proxy(handle.store, self._workers)
        self.locks = _AsyncLocks(handle, self._workers)

    @property
    def backend(self) -> str:
        return self.sync.backend

    @property
    def guarantees(self) -> Any:
        return self.sync.guarantees

    @property
    def prefix(self) -> str:
        return self.sync.prefix

    async def ping(self) -> float:
        result: float = await self._workers.call(self.sync.ping)
        return result

    async def close(self) -> None:
        try:
            await self._workers.call(self.sync.close)
        finally:
            self._workers.shutdown()


def sync_connect_factory(open_sync: Callable[[str], Connection]) -> ConnectFactory:
    """A ``lockyard_connect`` fixture value: ``open_sync(prefix)`` behind :class:`AsyncFacade`."""

    async def connect(prefix: str) -> AsyncConnection:
        handle = await asyncio.to_thread(open_sync, prefix)
        # The suite is duck-typed against lockyard.Connection; the facade has what it uses.
        return cast(AsyncConnection, AsyncFacade(handle))

    return connect
