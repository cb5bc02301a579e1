"""What every blocking guard shares (a lock's, a semaphore permit's, a read-write lock's).

A guard wraps the async guard it was handed and calls its methods on the loop. Its ``lost`` is a
``threading.Event``, set whenever the async guard's is found set after a call (and, under a
``with`` block, when the hold gives the lease up: :mod:`.scope`). A guard acquired before
``os.fork()`` refuses to act in the child: the lease is the parent's, which still renews it.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Protocol, Self, TypeVar

from lockyard.fenced_writes import Fence
from lockyard.sync.bridge import Bridged

if TYPE_CHECKING:
    import asyncio

    from lockyard.sync.connection import Connection
    from lockyard.sync.portal import Portal


class AsyncLease(Protocol):
    """What the blocking guards read of an async guard."""

    name: str
    owner: str
    fencing_token: int
    lease_ms: int
    lease_deadline: float

    @property
    def lost(self) -> asyncio.Event: ...

    @property
    def released(self) -> bool: ...

    @property
    def fence(self) -> Fence: ...


A = TypeVar("A", bound=AsyncLease)

#: Guards the first use of a guard's ``lost`` from two threads at once.
_MAKING_LOST = threading.Lock()


class LeaseGuard(Bridged, Generic[A]):
    """The base of the blocking guards; see the module docstring."""

    #: What the lease is, in messages.
    what = "lease"

    def __init__(self, handle: Connection, guard: A) -> None:
        self._handle = handle
        self._guard = guard
        self._generation = handle._portal.generation
        self._lost: threading.Event | None = None
        #: Renewed by a ``hold()`` on the loop: its calls run there too, never in the calling
        #: thread (:mod:`.lane`), beside the renewal that may set the async guard's ``lost``.
        self.renewed_on_loop = False

    @property
    def lost(self) -> threading.Event:
        """Set when the lease is known lost (as the async guard's ``lost``, for threads)."""
        lost = self._lost
        if lost is None:  # made on first use: most guards are released and never asked
            with _MAKING_LOST:
                if self._lost is None:
                    self._lost = threading.Event()
                lost = self._lost
        return lost

    @property
    def _portal(self) -> Portal:
        return self._handle._portal

    def _target_now(self) -> A | None:
        return self._guard if self._generation == self._portal.generation else None

    def _lane_target(self) -> A | None:
        guard = self._target_now()
        if guard is None or self.renewed_on_loop or not self._serves_lanes(guard):
            return None
        return guard

    @staticmethod
    def _serves_lanes(guard: A) -> bool:
        """Whether the backend behind ``guard`` serves lanes (a kind of guard that does says so)."""
        return False

    async def _target(self) -> A:
        if self._generation != self._portal.generation:
            raise RuntimeError(
                f"{self.what} {self.name!r} was acquired before os.fork(): it belongs to the "
                "parent process, which still holds and renews it"
            )
        return self._guard

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
        try:
            return super()._call(
                name, args, kwargs, deliver_losses=deliver_losses, plain=plain, direct=direct
            )
        finally:
            if self._guard.lost.is_set():
                self.lost.set()

    @property
    def name(self) -> str:
        return self._guard.name

    @property
    def owner(self) -> str:
        return self._guard.owner

    @property
    def fencing_token(self) -> int:
        return self._guard.fencing_token

    @property
    def lease_ms(self) -> int:
        return self._guard.lease_ms

    @property
    def lease_deadline(self) -> float:
        return self._guard.lease_deadline

    @property
    def released(self) -> bool:
        return self._guard.released

    @property
    def fence(self) -> Fence:
        """What a fenced write (``ly.store.set(..., fence=guard)``) checks: this acquisition."""
        return self._guard.fence

    def __repr__(self) -> str:
        return (
            f"lockyard.sync.{type(self).__name__}(name={self.name!r}, "
            f"fencing_token={self.fencing_token})"
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The async guard's own __aexit__: release, and keep a failure beside the block's error.
        self._call("__aexit__", (exc_type, exc, tb), {}, deliver_losses=False)
