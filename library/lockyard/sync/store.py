"""The blocking ``StateStore``: every operation of :class:`lockyard.StateStore`, one line each.

``direct=True`` marks the operations that are one round trip and nothing else: on a backend
that serves lanes they run in the calling thread (:mod:`.lane`).
"""

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

    check_and_set = blocking(AsyncStateStore.check_and_set, direct=True)
    get = blocking(AsyncStateStore.get, direct=True)
    get_versioned = blocking(AsyncStateStore.get_versioned, direct=True)
    set = blocking(AsyncStateStore.set, direct=True)
    delete = blocking(AsyncStateStore.delete, direct=True)
    increment = blocking(AsyncStateStore.increment, direct=True)
    compare_and_swap = blocking(AsyncStateStore.compare_and_swap, direct=True)
    scan_keys = blocking(AsyncStateStore.scan_keys)
    scan_keys_by_kind = blocking(AsyncStateStore.scan_keys_by_kind)
    index_timeout = blocking(AsyncStateStore.index_timeout, direct=True)
    remove_timeout_index = blocking(AsyncStateStore.remove_timeout_index, direct=True)
    get_expired_timeouts = blocking(AsyncStateStore.get_expired_timeouts)
    index_chain_ready = blocking(AsyncStateStore.index_chain_ready)
    remove_chain_ready_index = blocking(AsyncStateStore.remove_chain_ready_index)
    get_ready_chains = blocking(AsyncStateStore.get_ready_chains)
    purge = blocking(AsyncStateStore.purge)
