"""The base of the blocking facades that stand for one part of the async connection.

``ly.store``, ``ly.locks``, ``ly.semaphores``, ``ly.rwlocks`` and ``ly.elections`` of a
:class:`lockyard.sync.Connection` each name the attribute of :class:`lockyard.Connection` they
stand for (``part``); this class finds it, now if the connection is open, else on the loop
(which may reconnect after a fork).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from lockyard.sync.bridge import Bridged

if TYPE_CHECKING:
    from lockyard.sync.connection import Connection
    from lockyard.sync.portal import Portal


class ConnectionPart(Bridged):
    """A facade over ``getattr(async_connection, part)``."""

    __slots__ = ("_handle",)

    #: The attribute of the async connection this facade stands for.
    part: ClassVar[str]

    def __init__(self, handle: Connection) -> None:
        self._handle = handle

    @property
    def _portal(self) -> Portal:
        return self._handle._portal

    def _target_now(self) -> Any | None:
        connection = self._handle._slot.connection
        return None if connection is None else getattr(connection, self.part)

    async def _target(self) -> Any:
        return getattr(await self._handle._current(), self.part)

    def __repr__(self) -> str:
        return f"<lockyard.sync.{type(self).__name__} of {self._handle!r}>"
