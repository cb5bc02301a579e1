"""What Lockyard knows about each calling thread: the call it is blocked in, and lost locks.

A thread cannot be cancelled from outside, so a lock lost while a thread runs a
``with ly.locks.hold(...)`` block reaches that thread here: the loss is queued on the thread's
state, the Lockyard call the thread is blocked in (if any) is cancelled and raises
``LockLostError``, and otherwise the thread's next Lockyard call raises it. ``interrupt``
cancels the call a thread is blocked in from any other thread.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import weakref
from typing import Protocol


class Interruptible(Protocol):
    """A blocking call in progress (``lockyard.sync.portal.PendingCall``)."""

    def interrupt(self, error: BaseException, key: object | None = None) -> None: ...


class ThreadState:
    """One thread's blocked call and its queue of undelivered lock losses."""

    __slots__ = ("__weakref__", "call", "lock", "losses")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.call: Interruptible | None = None
        #: (key, error) per lost hold, in the order the losses happened.
        self.losses: list[tuple[object, BaseException]] = []

    def raise_pending_loss(self) -> None:
        """Raise the oldest undelivered loss (once), if there is one."""
        if self.losses:  # read without the lock: the common case is an empty list
            with self.lock:
                if not self.losses:
                    return
                _, error = self.losses.pop(0)
            raise error

    def deliver(self, key: object, error: BaseException) -> None:
        """Queue a loss and cancel the call the thread is blocked in (from any thread)."""
        with self.lock:
            self.losses.append((key, error))
            call = self.call
        if call is not None:
            call.interrupt(error, key)

    def forget(self, key: object) -> BaseException | None:
        """Withdraw the undelivered loss ``key`` (its block ended); the error, if it was queued."""
        with self.lock:
            for index, (queued, error) in enumerate(self.losses):
                if queued is key:
                    del self.losses[index]
                    return error
        return None

    def reset(self) -> None:
        self.lock = threading.Lock()
        self.call = None
        self.losses = []


_local = threading.local()
_by_thread: weakref.WeakValueDictionary[int, ThreadState] = weakref.WeakValueDictionary()
_registry_lock = threading.Lock()


def current() -> ThreadState:
    """The calling thread's state (created on first use; it dies with the thread)."""
    try:
        state: ThreadState = _local.state
    except AttributeError:
        state = _local.state = ThreadState()
        with _registry_lock:
            _by_thread[threading.get_ident()] = state
    return state


def interrupt(thread: threading.Thread) -> bool:
    """Cancel the Lockyard call ``thread`` is blocked in, as cancelling the async call would.

    The call then raises ``concurrent.futures.CancelledError`` in that thread (a waiting
    ``acquire`` leaves the queue first). Returns ``False`` if the thread was not blocked in a
    Lockyard call.
    """
    if thread.ident is None:
        return False
    with _registry_lock:
        state = _by_thread.get(thread.ident)
    if state is None:
        return False
    with state.lock:
        call = state.call
    if call is None:
        return False
    call.interrupt(
        concurrent.futures.CancelledError(f"interrupted by {threading.current_thread().name}")
    )
    return True


def _after_fork_in_child() -> None:
    # Only the forking thread survives, and a lock another thread held at the fork stays held.
    global _registry_lock
    _registry_lock = threading.Lock()
    for state in list(_by_thread.values()):
        state.reset()


os.register_at_fork(after_in_child=_after_fork_in_child)
