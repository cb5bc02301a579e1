"""One mechanism that turns an async class's methods into blocking ones.

A sync facade class derives from :class:`Bridged` and lists the async methods it offers::

    class StateStore(Bridged):
        get = blocking(lockyard.StateStore.get)

``blocking`` keeps the async method's parameters and result type (for mypy and for
``help()``), and calling it runs that very method on the handle's loop (:mod:`.portal`) against
the facade's current async object (:meth:`Bridged._target`, which may reconnect after a fork),
looked up by name so that a backend's override runs.
Exceptions are the async method's own. A result that is itself an async object (a lock guard)
is wrapped by the ``convert`` function given. A new primitive (elections, semaphores) needs a
``Bridged`` subclass with one line per method, and nothing else.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Coroutine
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    ParamSpec,
    Protocol,
    Self,
    TypeVar,
    overload,
)

from lockyard.sync import threads
from lockyard.sync.lane import drive

if TYPE_CHECKING:
    from lockyard.sync.portal import Portal

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")
E = TypeVar("E")
E_co = TypeVar("E_co", covariant=True)


class Bridged(abc.ABC):
    """A facade over one async object that lives on a portal's loop."""

    __slots__ = ()

    @property
    @abc.abstractmethod
    def _portal(self) -> Portal: ...

    @abc.abstractmethod
    async def _target(self) -> Any:
        """The async object to call (runs on the loop: it may open the connection)."""

    def _target_now(self) -> Any | None:
        """The async object if it needs no awaiting (the connection is open), else ``None``."""
        return None

    def _lane_target(self) -> Any | None:
        """The async object, if a direct call may run on it in the calling thread (its
        backend serves lanes: :mod:`.lane`), else ``None``."""
        target = self._target_now()
        return target if getattr(target, "serves_lanes", False) else None

    def _coroutine(self, name: str, args: Any, kwargs: Any) -> Coroutine[Any, Any, Any]:
        """On the loop: ``target.name(*args, **kwargs)``, looked up by name so that a
        subclass's override is the one that runs."""
        target = self._target_now()
        if target is None:
            return self._invoke(name, args, kwargs)
        method: Callable[..., Coroutine[Any, Any, Any]] = getattr(target, name)
        return method(*args, **kwargs)

    async def _invoke(self, name: str, args: Any, kwargs: Any) -> Any:
        return await getattr(await self._target(), name)(*args, **kwargs)

    async def _make(self, name: str, args: Any, kwargs: Any) -> Any:
        """On the loop: ``target.name(*args, **kwargs)`` of a plain method (what it makes, such
        as an observation and its events, belongs to the loop)."""
        return getattr(await self._target(), name)(*args, **kwargs)

    def _call(
        self,
        name: str,
        args: Any,
        kwargs: Any,
        *,
        deliver_losses: bool = True,
        plain: bool = False,
        direct: bool = False,
    ) -> Any:
        """Run ``target.name(*args, **kwargs)`` on the loop and block for its result (of a
        coroutine method, or, with ``plain``, of a plain one). With ``direct``, run it in this
        thread instead if the target serves lanes (:mod:`.lane`).

        A lock lost under a ``hold()`` block of this thread is raised here first (once).
        """
        state = threads.current()
        if deliver_losses and state.losses:
            state.raise_pending_loss()
        portal = self._portal
        if direct and not portal.closed and not portal.in_loop_thread():
            target = self._lane_target()
            if target is not None:
                return drive(portal.lane, getattr(target, name)(*args, **kwargs))
        make = self._make if plain else self._coroutine
        return portal.start(make, name, args, kwargs).wait(state)


class Blocking(Generic[P, R]):
    """A descriptor: the blocking form of one async method; see the module docstring."""

    def __init__(
        self,
        method: Callable[Concatenate[Any, P], Any],
        convert: Callable[[Any, Any], R] | None = None,
        plain: bool = False,
        direct: bool = False,
    ) -> None:
        self.method = method
        self.name: str = method.__name__
        self.convert = convert
        #: A plain method (not a coroutine function), run on the loop all the same.
        self.plain = plain
        #: One round trip and nothing else: runs in the calling thread where a lane serves it.
        self.direct = direct
        self.__doc__ = method.__doc__
        self.__wrapped__ = method  # inspect.signature() shows the async method's parameters

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, obj: Bridged, owner: type[Any]) -> Callable[P, R]: ...

    def __get__(self, obj: Bridged | None, owner: type[Any]) -> Self | Callable[P, R]:
        if obj is None:
            return self
        return _BoundBlocking(obj, self)


class _BoundBlocking:
    __slots__ = ("_blocking", "_obj")

    def __init__(self, obj: Bridged, blocking: Blocking[Any, Any]) -> None:
        self._obj = obj
        self._blocking = blocking

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        blocking = self._blocking
        result = self._obj._call(
            blocking.name, args, kwargs, plain=blocking.plain, direct=blocking.direct
        )
        return result if blocking.convert is None else blocking.convert(self._obj, result)


def blocking(
    method: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]],
    *,
    direct: bool = False,
) -> Blocking[P, R]:
    """The blocking form of ``method``: same parameters, same result, same exceptions.

    ``direct``: the call is one round trip and nothing else; on a backend that serves lanes it
    runs in the calling thread (:mod:`.lane`).
    """
    return Blocking(method, direct=direct)


def blocking_as(
    method: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]],
    convert: Callable[[Any, R], S],
    *,
    direct: bool = False,
) -> Blocking[P, S]:
    """The blocking form of ``method``, its result passed through ``convert(facade, result)``."""
    return Blocking(method, convert, direct=direct)


class _Observation(Protocol[E_co]):
    def __anext__(self) -> Awaitable[E_co]: ...

    def aclose(self) -> Awaitable[None]: ...


class BlockingIterator(Generic[E]):
    """An async iterator of the loop (an observation), as a blocking one: ``for x in it:``.

    Each ``next()`` is a Lockyard call (so a lost ``hold()`` interrupts it); ``close()``, or
    leaving ``with it:``, stops it.
    """

    def __init__(self, portal: Portal, iterator: _Observation[E]) -> None:
        self._portal = portal
        self._iterator = iterator

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> E:
        state = threads.current()
        if state.losses:
            state.raise_pending_loss()
        try:
            item: E = self._portal.start(self._next).wait(state)
        except StopAsyncIteration:
            raise StopIteration from None
        return item

    async def _next(self) -> E:
        return await self._iterator.__anext__()

    def close(self) -> None:
        if not self._portal.closed:
            self._portal.call(self._close)

    async def _close(self) -> None:
        await self._iterator.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def blocking_iter(
    method: Callable[Concatenate[Any, P], _Observation[E]],
) -> Blocking[P, BlockingIterator[E]]:
    """The blocking form of a plain method returning an async iterator (``observe``): made
    on the loop, iterated from the thread."""
    return Blocking(method, _iterate, plain=True)


def _iterate(obj: Bridged, iterator: _Observation[E]) -> BlockingIterator[E]:
    return BlockingIterator(obj._portal, iterator)
