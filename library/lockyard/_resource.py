"""``async with`` for objects that hold something open until ``await obj.close()``.

Entering gives the object itself; leaving, by any path, awaits its ``close()`` (as anyio's
``AsyncResource`` does). ``close()`` should be idempotent: callers may also close explicitly.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self


class AsyncResource(abc.ABC):
    """An async context manager that closes the object on exit; see the module docstring."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release what the object holds open."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
