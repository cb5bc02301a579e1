"""Lockyard for threads: the same store and locks, with blocking methods.

>>> with lockyard.sync.connect("redis://redis:6379/0?prefix=orders") as ly:
...     if ly.store.check_and_set("orders:acme:dedup:msg-1", "seen", ttl=3600):
...         with ly.locks.hold("invoice-42", ttl=10) as guard:
...             ...  # guard.fencing_token goes to the protected resource

Every method runs the async core's own coroutine on one event loop in a daemon thread per
handle, so names, arguments, results and exceptions are those of the async API. See
docs/sync.md for threads, forks, and what a lost lock does to a thread.
"""

from lockyard.sync.bridge import BlockingIterator
from lockyard.sync.connection import Connection, connect, connect_store
from lockyard.sync.elections import Campaign, Elections, Leadership
from lockyard.sync.locks import DistributedLock, LockGuard, LockHold
from lockyard.sync.permits import Permit, ReadWriteGuard, ReadWriteLocks, Semaphores
from lockyard.sync.store import StateStore
from lockyard.sync.threads import interrupt

__all__ = [
    "BlockingIterator",
    "Campaign",
    "Connection",
    "DistributedLock",
    "Elections",
    "Leadership",
    "LockGuard",
    "LockHold",
    "Permit",
    "ReadWriteGuard",
    "ReadWriteLocks",
    "Semaphores",
    "StateStore",
    "connect",
    "connect_store",
    "interrupt",
]
