"""The boundary every backend call passes through: one timeout and one error translation.

Each backend supplies one ``translate`` function that maps its driver's exceptions (by class or
error code, most specific first) onto the :mod:`lockyard.errors` tree. This module applies it
and the operation timeout uniformly, so no backend call can hang or leak a driver exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from lockyard.errors import OperationTimeoutError, StateError

T = TypeVar("T")

ErrorTranslator = Callable[[BaseException], StateError | None]


def default_translate(exc: BaseException) -> StateError | None:
    """Backends without a driver raise nothing to translate."""
    return None


class OperationRunner:
    """Runs backend coroutines under the operation timeout, translating driver errors."""

    __slots__ = ("backend", "timeout", "translate")

    def __init__(self, backend: str, timeout: float, translate: ErrorTranslator) -> None:
        self.backend = backend
        self.timeout = timeout
        self.translate = translate

    async def __call__(self, operation: str, awaitable: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.timeout):
                return await awaitable
        except StateError:
            raise
        except TimeoutError as exc:
            mapped = self.translate(exc)
            if mapped is not None and not isinstance(mapped, OperationTimeoutError):
                raise mapped from exc
            raise OperationTimeoutError(
                f"{self.backend}: {operation} took longer than the operation timeout of "
                f"{self.timeout:g}s (raise operation_timeout, or check the backend's load)"
            ) from exc
        except Exception as exc:
            mapped = self.translate(exc)
            if mapped is None:
                raise
            raise mapped from exc
