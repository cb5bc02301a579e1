"""The blocking ``StateStore``: every operation of :class:`lockyard.StateStore`, one line each."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lockyard.store import StateStore as AsyncStateStore
from lockyard.sync.bridge import Bridged, blocking

if TYPE_CHECKING:
    from lockyard.sync.connection import Connection
    from lockyard.sync.portal import Portal


class StateStore(Bridged):
    """Shared state, blocking: the same operations, arguments, results and exceptions."""

    __slots__ = ("_handle",)

    def __init__(self, handle: Connection) -> None:
        self._handle = handle

    @property
    def _portal(self) -> Portal:
        return self._handle._portal

    def _target_now(self) -> AsyncStateStore | None:
        connection = self._handle._slot.connection
        return None if connection is None else connection.store

    async def _target(self) -> AsyncStateStore:
        return (await self._handle._current()).store

    def __repr__(self) -> str:
        return f"<lockyard.sync.StateStore of {self._handle!r}>"

    check_and_set = blocking(AsyncStateStore.check_and_set)
    get = blocking(AsyncStateStore.get)
    get_versioned = blocking(AsyncStateStore.get_versioned)
    set = blocking(AsyncStateStore.set)
    delete = blocking(AsyncStateStore.delete)
    increment = blocking(AsyncStateStore.increment)
    compare_and_swap = blocking(AsyncStateStore.compare_and_swap)
    scan_keys = blocking(AsyncStateStore.scan_keys)
    scan_keys_by_kind = blocking(AsyncStateStore.scan_keys_by_kind)
    index_timeout = blocking(AsyncStateStore.index_timeout)
    remove_timeout_index = blocking(AsyncStateStore.remove_timeout_index)
    get_expired_timeouts = blocking(AsyncStateStore.get_expired_timeouts)
    index_chain_ready = blocking(AsyncStateStore.index_chain_ready)
    remove_chain_ready_index = blocking(AsyncStateStore.remove_chain_ready_index)
    get_ready_chains = blocking(AsyncStateStore.get_ready_chains)
    purge = blocking(AsyncStateStore.purge)
