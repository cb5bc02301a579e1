"""``async with guard:`` for every lease guard (lock, permit, read-write holder)."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from lockyard.errors import StateError


class ReleasedOnExit:
    """Releases the guard when its ``async with`` block ends, unless it was released already."""

    __slots__ = ()

    name: str
    _released: bool

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
