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
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Self, TypeVar, overload

from lockyard.sync import threads

if TYPE_CHECKING:
    from lockyard.sync.portal import Portal

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")


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

    def _call(self, name: str, args: Any, kwargs: Any, *, deliver_losses: bool = True) -> Any:
        """Run ``target.name(*args, **kwargs)`` on the loop and block for its result.

        A lock lost under a ``hold()`` block of this thread is raised here first (once).
        """
        state = threads.current()
        if deliver_losses and state.losses:
            state.raise_pending_loss()
        return self._portal.start(self._coroutine, name, args, kwargs).wait(state)


class Blocking(Generic[P, R]):
    """A descriptor: the blocking form of one async method; see the module docstring."""

    def __init__(
        self,
        method: Callable[Concatenate[Any, P], Coroutine[Any, Any, Any]],
        convert: Callable[[Any, Any], R] | None = None,
    ) -> None:
        self.method = method
        self.name: str = method.__name__
        self.convert = convert
        self.__doc__ = method.__doc__
        self.__wrapped__ = method  # inspect.signature() shows the async method's parameters

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, obj: Bridged, owner: type[Any]) -> Callable[P, R]: ...

    def __get__(self, obj: Bridged | None, owner: type[Any]) -> Self | Callable[P, R]:
        if obj is None:
            return self
        return _BoundBlocking(obj, self.name, self.convert)


class _BoundBlocking:
    __slots__ = ("_convert", "_name", "_obj")

    def __init__(self, obj: Bridged, name: str, convert: Callable[[Any, Any], Any] | None) -> None:
        self._obj = obj
        self._name = name
        self._convert = convert

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        result = self._obj._call(self._name, args, kwargs)
        return result if self._convert is None else self._convert(self._obj, result)


def blocking(
    method: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]],
) -> Blocking[P, R]:
    """The blocking form of ``method``: same parameters, same result, same exceptions."""
    return Blocking(method)


def blocking_as(
    method: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]],
    convert: Callable[[Any, R], S],
) -> Blocking[P, S]:
    """The blocking form of ``method``, its result passed through ``convert(facade, result)``."""
    return Blocking(method, convert)
