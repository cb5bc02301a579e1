"""What every lease guard (a lock's, a permit's, a read-write holder's) holds, and ``async with``.

A guard is one acquisition: its owner token, its fencing token and two deadlines. The holder's
own bound on the lease (``lease_deadline``) is what loss detection (:mod:`lockyard.holding`)
acts on; the wall-clock time of the acquisition or latest renewal (``renewed_at``) is what a
Kubernetes Lease shows.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

from lockyard.clock import Clock
from lockyard.errors import StateError


class HeldLease:
    """One acquisition's tokens and deadlines; releases itself when its ``async with`` ends."""

    __slots__ = (
        "__weakref__",  # telemetry notices a guard dropped unreleased
        "_released",
        "fencing_token",
        "lease_deadline",
        "lease_ms",
        "lost",
        "name",
        "owner",
        "renewed_at",
    )

    def __init__(
        self,
        clock: Clock,
        name: str,
        owner: str,
        fencing_token: int,
        lease_ms: int,
        started: float,
    ) -> None:
        self.name = name
        self.owner = owner
        self.fencing_token = fencing_token
        #: Set when the guard learns it no longer holds its lease (an extend or release found
        #: it gone, or a ``hold()`` block's renewal did).
        self.lost = asyncio.Event()
        self._released = False
        self._renewed(clock, lease_ms, started)

    def _renewed(self, clock: Clock, lease_ms: int, started: float) -> None:
        """Record a lease of ``lease_ms`` granted by a call that began at ``started``."""
        self.lease_ms = lease_ms
        #: The holder's own bound on its lease (``clock.monotonic()`` seconds): the start of the
        #: call that acquired or last renewed it plus its TTL. The backend's lease began after
        #: that call started, so it cannot end before this.
        self.lease_deadline = started + lease_ms / 1000
        #: Wall-clock time of the acquisition or the latest extend (what a Lease shows).
        self.renewed_at = clock.wall()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, fencing_token={self.fencing_token})"

    @property
    def released(self) -> bool:
        return self._released

    async def release(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._released:
            return
        try:
            await self.release()
        except StateError as release_error:
            if exc is None:
                raise
            # The block's own exception matters more; keep the release failure beside it.
            exc.add_note(f"lockyard: releasing {self.name!r} also failed: {release_error}")
