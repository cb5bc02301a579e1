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
import time
from collections.abc import Callable, Generator
from types import TracebackType
from typing import Any, cast

from lockyard.connection import Connection as AsyncConnection
from lockyard.sync.bridge import BlockingIterator
from lockyard.sync.connection import Connection
from lockyard.sync.elections import Leadership
from lockyard.sync.leases import LeaseGuard
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


#: Methods whose blocking form is a ``with`` block (run by :class:`_AsyncHold`).
HOLDS = frozenset({"hold", "hold_read", "hold_write", "campaign"})
#: Methods whose blocking form is an iterator (run by :class:`_AsyncObservation`).
OBSERVATIONS = frozenset({"observe", "observe_prefix"})


class _Proxy:
    """Awaitable forms of a sync object's methods; its plain attributes as they are."""

    def __init__(self, target: Any, workers: _Workers) -> None:
        self._target = target
        self._workers = workers

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        workers = self._workers
        if name in HOLDS:
            return lambda *args, **kwargs: _AsyncHold(
                lambda on_lost: value(*_unwrap(args), on_lost=on_lost, **_unwrap(kwargs)),
                workers,
            )
        if name in OBSERVATIONS:
            return lambda *args, **kwargs: _AsyncObservation(
                lambda: value(*_unwrap(args), **_unwrap(kwargs)), workers
            )
        if not callable(value):
            return value

        async def call(*args: Any, **kwargs: Any) -> Any:
            return _wrap(await workers.call(value, *_unwrap(args), **_unwrap(kwargs)), workers)

        return call


def _wrap(result: Any, workers: _Workers) -> Any:
    if isinstance(result, LeaseGuard | Leadership):
        return _AsyncGuard(result, workers)
    return result


def _unwrap(values: Any) -> Any:
    """The sync objects behind proxies passed back in (``fence=guard``)."""
    if isinstance(values, dict):
        return {k: _unwrap(v) for k, v in values.items()}
    if isinstance(values, tuple):
        return tuple(_unwrap(v) for v in values)
    return values._target if isinstance(values, _Proxy) else values


class _AsyncEvent:
    """A ``threading.Event`` (a guard's ``lost``) as the suite uses an ``asyncio.Event``."""

    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> bool:
        # Polled: a thread blocked in threading.Event.wait() could not be cancelled.
        while not self._event.is_set():  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        return True


class _AsyncGuard(_Proxy):
    """A sync guard as the suite uses an async one: awaitable methods, ``async with``; it
    passes for the async class it stands for (the suite checks ``isinstance``)."""

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        target = self._target
        inner = target._leadership if isinstance(target, Leadership) else target._guard
        return type(inner)

    @property
    def lost(self) -> _AsyncEvent:
        return _AsyncEvent(self._target.lost)

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
    """``async with ...hold(...)`` (and ``campaign``): enter and exit in a thread of the block's
    own; a loss cancels the block, through the sync ``on_lost`` callback. A campaign can also
    be awaited: its sync ``wait()``."""

    def __init__(self, make: Callable[[Callable[[Any], None]], Any], workers: _Workers) -> None:
        self._workers = workers
        self._thread = concurrent.futures.ThreadPoolExecutor(1, "lockyard-sync-suite-hold")
        self._block: asyncio.Task[Any] | None = None
        self._cancelled_block = False
        #: A loss while entering (a short lease lapsing under load) cancels the block once it
        #: has begun, as the async hold() does: not the enter, which would end in a bare
        #: CancelledError with no exit to turn it into LockLostError.
        self._entered = False
        self._lost_while_entering = False
        self._loop: asyncio.AbstractEventLoop | None = None
        #: When ``on_lost`` was called (monotonic; the facade runs on the system clock): the
        #: blocking facade's notice of a loss, which the suite judges, rather than the moment
        #: this adapter's cancellation reached the block on another thread.
        self.lost_at: float | None = None
        # Made now, as the async hold() checks its arguments when called, not when entered.
        self._scope = make(self._lost)

    def _lost(self, value: Any) -> None:
        if self.lost_at is None:
            self.lost_at = time.monotonic()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._cancel_block)

    def _cancel_block(self) -> None:
        if not self._entered:
            self._lost_while_entering = True
            return
        if self._block is not None and not self._block.done():
            self._cancelled_block = True
            self._block.cancel()

    def __await__(self) -> Generator[Any, None, _AsyncGuard]:
        return self._win().__await__()

    async def _win(self) -> _AsyncGuard:
        self._thread.shutdown(wait=False)  # not a block: no thread of its own
        return _AsyncGuard(await self._workers.call(self._scope.wait), self._workers)

    async def __aenter__(self) -> _AsyncGuard:
        self._loop = asyncio.get_running_loop()
        self._block = asyncio.current_task()
        try:
            value = await run_interruptibly(self._thread, self._scope.__enter__)
        except BaseException:
            self._thread.shutdown(wait=False)
            raise
        self._entered = True
        if self._lost_while_entering:
            self._cancel_block()  # the block's first await raises; the exit makes it the loss
        return _AsyncGuard(value, self._workers)

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
            await loop.run_in_executor(self._thread, self._scope.__exit__, exc_type, exc, tb)
            return False
        finally:
            self._thread.shutdown(wait=False)


_END = object()


def _next_or_end(iterator: BlockingIterator[Any]) -> Any:
    return next(iterator, _END)


class _AsyncObservation:
    """``async with ...observe(...) as events`` / ``async for``: a sync observation, made in
    the task's thread on first use."""

    def __init__(self, make: Callable[[], BlockingIterator[Any]], workers: _Workers) -> None:
        self._make = make
        self._workers = workers
        self._iterator: BlockingIterator[Any] | None = None

    async def _opened(self) -> BlockingIterator[Any]:
        if self._iterator is None:
            self._iterator = await self._workers.call(self._make)
        return self._iterator

    def __aiter__(self) -> _AsyncObservation:
        return self

    async def __anext__(self) -> Any:
        item = await self._workers.call(_next_or_end, await self._opened())
        if item is _END:
            raise StopAsyncIteration
        return item

    async def aclose(self) -> None:
        if self._iterator is not None:
            await self._workers.call(self._iterator.close)

    async def __aenter__(self) -> _AsyncObservation:
        await self._opened()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class AsyncFacade:
    """A :class:`lockyard.sync.Connection` dressed as the ``lockyard.Connection`` the suite
    expects."""

    def __init__(self, handle: Connection) -> None:
        self.sync = handle
        self._workers = _Workers()
        self.store = _Proxy(handle.store, self._workers)
        self.locks = _AsyncLocks(handle, self._workers)
        self.elections = _Proxy(handle.elections, self._workers)
        self.semaphores = _Proxy(handle.semaphores, self._workers)
        self.rwlocks = _Proxy(handle.rwlocks, self._workers)

    @property
    def backend(self) -> str:
        return self.sync.backend

    @property
    def guarantees(self) -> Any:
        return self.sync.guarantees

    @property
    def prefix(self) -> str:
        return self.sync.prefix

    def colocated_name(self, name: str, key: str, *, guard: str = "lock") -> str:
        return self.sync.colocated_name(name, key, guard=guard)

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
