"""Who is calling, for the rules that refuse one caller twice (a read-write lock re-entered).

In async code the caller is the current task. The blocking API (``lockyard.sync``) runs each
call of a thread in a task of its own, so it names the thread instead, in :data:`CALLER`.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar

#: The caller's identity when it is not the task (set by ``lockyard.sync`` for each call).
CALLER: ContextVar[object | None] = ContextVar("lockyard_caller", default=None)


def current_caller() -> object | None:
    """The calling thread's token under ``lockyard.sync``, else the current task."""
    return CALLER.get() or asyncio.current_task()
