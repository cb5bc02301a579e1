"""Background-task helpers that survive drivers which swallow a cancellation.

On Python 3.11, ``asyncio.wait_for`` inside a driver (redis-py, asyncpg) can absorb the
``CancelledError`` meant for the task around it (cpython gh-86296). A loop that keeps running
after that would never stop; these helpers make the cancellation stick.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

#: How long :func:`stop_task` waits for a cancelled task before cancelling it again.
STOP_RECHECK_S = 0.5


def raise_if_cancelled() -> None:
    """Re-raise a cancellation of the current task that a library call swallowed."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def stop_task(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for it, cancelling again if a cancellation got lost."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=STOP_RECHECK_S)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
