"""Project-wide test rules: no test may leave asyncio tasks running behind it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio


@pytest_asyncio.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves tasks running (kopf does the same)."""
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)
    leaked = [
        task
        for task in asyncio.all_tasks() - before
        if not task.done() and task is not asyncio.current_task()
    ]
    for task in leaked:
        task.cancel()
    assert not leaked, f"test left asyncio tasks running: {[t.get_name() for t in leaked]}"
