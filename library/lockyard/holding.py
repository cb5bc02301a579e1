"""Holding a lease while a block runs: renewal, the holder's local deadline, and the loss signal.

One implementation behind every ``hold()``: a lock's (:class:`lockyard.locks.LockHold`), a
semaphore permit's and a read-write lock's. A subclass only says how to acquire its lease
(:meth:`LeaseHold._acquire`) and how to name it in errors.

The policy. The holder bounds its own lease: ``lease_deadline`` is the start of the call that
acquired or last renewed it plus the TTL (the backend's lease began after that call started, so
it cannot end earlier). The lease is renewed every ttl/3; it is declared lost when the backend
says it is gone, or when no renewal has been confirmed :func:`loss_margin_s` before that local
deadline, whatever the operation timeout and however the backend misbehaves (stopped,
partitioned, slow). Loss sets ``lease.lost`` and cancels the block, whose exit then raises
``LockLostError``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from types import TracebackType
from typing import Generic, Protocol, TypeVar

from lockyard.clock import Clock
from lockyard.durations import Duration
from lockyard.errors import LockExpiredError, LockLostError, StateError

#: ``hold()`` declares its lease lost this fraction of the TTL before the local deadline, so the
#: cancelled block has time to stop before another owner can take the lease; bounded below and
#: above.
LOSS_MARGIN_FRACTION = 0.1
LOSS_MARGIN_MIN_S = 0.005
LOSS_MARGIN_MAX_S = 1.0


def loss_margin_s(ttl_s: float) -> float:
    """How long before its local lease deadline a holder gives the lease up."""
    return min(max(ttl_s * LOSS_MARGIN_FRACTION, LOSS_MARGIN_MIN_S), LOSS_MARGIN_MAX_S)


class Lease(Protocol):
    """What a hold needs of a guard: its deadline, renewal, release and loss event."""

    @property
    def name(self) -> str: ...

    @property
    def fencing_token(self) -> int: ...

    @property
    def lease_deadline(self) -> float: ...

    @property
    def lost(self) -> asyncio.Event: ...

    async def extend(self, ttl: Duration) -> None: ...

    async def release(self) -> None: ...


L = TypeVar("L", bound=Lease)


class LeaseHold(Generic[L], abc.ABC):
    """``async with ... as lease:`` acquire, renew every ttl/3, detect loss, release.

    ``bind_block=False``: loss sets ``lease.lost`` but cancels no task (a leadership taken with
    ``await``, which has no block).
    """

    #: What the lease is, in messages ("lock", "semaphore permit", ...).
    what = "lease"

    def __init__(self, clock: Clock, ttl_ms: int, auto_renew: bool, bind_block: bool = True):
        self._clock = clock
        self._ttl_ms = ttl_ms
        self._auto_renew = auto_renew
        self._bind_block = bind_block
        self._guard: L | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._block: asyncio.Task[object] | None = None
        self._cancelled_block = False

    @abc.abstractmethod
    async def _acquire(self) -> L:
        """Acquire the lease (waiting as the hold was asked to)."""

    @property
    def guard(self) -> L | None:
        return self._guard

    def _describe(self, lease: L) -> str:
        return f"{self.what} {lease.name!r} (fencing token {lease.fencing_token})"

    async def __aenter__(self) -> L:
        lease = await self._acquire()
        self._guard = lease
        self._block = asyncio.current_task() if self._bind_block else None
        self._renewer = asyncio.create_task(
            self._renew_until_lost(lease), name=f"lockyard-renew:{lease.name}"
        )
        return lease

    async def stop_renewing(self) -> None:
        """Stop the renewal task (before a release that ends the hold early)."""
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewer

    async def _renew_until_lost(self, lease: L) -> None:
        """Renew every ttl/3 (when asked to); declare loss at the local deadline at the latest.

        A renewal still in flight when the local deadline (less the margin) arrives is
        abandoned: its outcome can no longer make the block safe.
        """
        clock = self._clock
        ttl_s = self._ttl_ms / 1000
        margin = loss_margin_s(ttl_s)
        interval = ttl_s / 3
        while True:
            remaining = lease.lease_deadline - margin - clock.monotonic()
            if remaining <= 0:
                break
            if not self._auto_renew:
                await clock.sleep(remaining)
                continue
            await clock.sleep(min(interval, remaining))
            remaining = lease.lease_deadline - margin - clock.monotonic()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    await lease.extend(ttl_s)
                interval = ttl_s / 3
            except LockExpiredError:
                break
            except (StateError, TimeoutError):
                # Transient, or too slow to save this lease: retry sooner while it can be saved.
                left = lease.lease_deadline - margin - clock.monotonic()
                interval = max(0.01, min(interval, left / 3))
        lease.lost.set()
        if self._block is not None and not self._block.done():
            self._cancelled_block = True
            self._block.cancel(f"lockyard: {self.what} {lease.name!r} was lost")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        lease = self._guard
        assert lease is not None
        await self.stop_renewing()
        if self._cancelled_block and self._block is not None:
            # Our own cancellation: turn it into the documented error, not a bare cancel.
            self._block.uncancel()
            raise LockLostError(
                f"{self._describe(lease)} was lost while the block ran; the block was cancelled"
            ) from None
        try:
            await lease.release()
        except LockExpiredError as err:
            lease.lost.set()
            if exc is None:
                raise LockLostError(str(err)) from err
            exc.add_note(f"lockyard: releasing {lease.name!r} also failed: {err}")
