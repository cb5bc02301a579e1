"""Fenced writes: store writes that land only while a guard still holds its lease.

``ly.store.set(key, value, fence=guard)`` (and ``check_and_set``, ``compare_and_swap``,
``increment``, ``delete`` and the index operations) checks, in the same round trip as the write,
that ``guard``'s lease (a lock, a semaphore permit, a read-write lock hold, a leadership) is
still held by that very acquisition; if it is not, nothing is written and the call raises
:class:`~lockyard.errors.FenceLostError`. A backend implements :class:`FencedWrites` (one Lua
script, one SQL statement, one DynamoDB transaction per operation) and sets it on its store.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from lockyard.errors import FenceLostError

if TYPE_CHECKING:
    from lockyard.store import CasResult

#: The kinds of lease a fence can name.
FENCE_KINDS = ("lock", "semaphore", "rwlock")


@dataclass(frozen=True, slots=True)
class Fence:
    """Which lease a fenced write depends on: its kind, name, owner token and fencing token."""

    kind: str
    name: str
    owner: str
    fencing_token: int

    def describe(self) -> str:
        what = {"lock": "lock", "semaphore": "semaphore permit", "rwlock": "read-write lock"}
        kind = what.get(self.kind, self.kind)
        return f"{kind} {self.name!r} (fencing token {self.fencing_token})"


@runtime_checkable
class Fenced(Protocol):
    """Anything that can guard a write: a ``LockGuard``, a ``Permit``, a ``ReadWriteGuard``."""

    @property
    def fence(self) -> Fence: ...


def fence_of(guard: object) -> Fence:
    """The :class:`Fence` of ``guard``; ``TypeError`` for anything that holds no lease."""
    fence = getattr(guard, "fence", None)
    if isinstance(fence, Fence) and fence.kind in FENCE_KINDS:
        return fence
    raise TypeError(
        "fence must be a lock guard, a semaphore permit or a read-write lock guard "
        f"(an object with a .fence), got {type(guard).__name__}"
    )


def fence_lost(fence: Fence, operation: str, key: str) -> FenceLostError:
    """The error of a fenced write refused because ``fence``'s lease is gone."""
    return FenceLostError(
        f"fenced {operation} on {key!r} refused: {fence.describe()} is no longer held by this "
        "guard (expired, released, broken or taken over); nothing was written"
    )


class FencedWrites(abc.ABC):
    """A backend's fenced write primitives: canonical keys, whole milliseconds, one round trip.

    Each checks that ``fence``'s lease is live and owned by ``fence.owner`` and then writes,
    atomically; otherwise it raises :func:`fence_lost` and changes nothing. Results are those of
    the unfenced operation.
    """

    @abc.abstractmethod
    async def check_and_set(self, fence: Fence, key: str, value: str, ttl_ms: int | None) -> bool:
        """Like ``StateStore._check_and_set``."""

    @abc.abstractmethod
    async def set(self, fence: Fence, key: str, value: str, ttl_ms: int | None) -> None: ...

    @abc.abstractmethod
    async def delete(self, fence: Fence, key: str) -> bool: ...

    @abc.abstractmethod
    async def increment(self, fence: Fence, key: str, delta: int, ttl_ms: int | None) -> int: ...

    @abc.abstractmethod
    async def compare_and_swap(
        self, fence: Fence, key: str, expected_version: int, new_value: str, ttl_ms: int | None
    ) -> CasResult: ...

    @abc.abstractmethod
    async def index_add(self, fence: Fence, index: str, key: str, at_ms: int) -> None:
        """``index`` is ``"timeout"`` or ``"chain"``."""

    @abc.abstractmethod
    async def index_remove(self, fence: Fence, index: str, key: str) -> None: ...
