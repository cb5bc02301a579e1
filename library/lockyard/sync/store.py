"""The blocking ``StateStore``: every operation of :class:`lockyard.StateStore`, one line each."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lockyard.store import StateStore as AsyncStateStore
from lockyard.sync.bridge import blocking
from lockyard.sync.part import ConnectionPart

if TYPE_CHECKING:
    pass


class StateStore(ConnectionPart):
    """Shared state, blocking: the same operations, arguments, results and exceptions."""

    __slots__ = ()
    part = "store"

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
