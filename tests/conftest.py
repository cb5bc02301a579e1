"""Project-wide test rules: tests are marked with the servers they use, and no test may leave
asyncio tasks running behind it.

``make unit`` deselects every server marker; a test that starts a server without its marker
fails there (``$LOCKYARD_NO_SERVERS``, see ``lockyard_dev.servers.process``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from lockyard_dev.repository import ENV_VAR as REPOSITORY_ENV

#: Session fixtures that start a server -> the marker of every test using them (directly or
#: through another fixture). Tests that start a server themselves carry the marker by hand.
SERVER_FIXTURES = {
    "redis_server": "redis",
    "redis_acl_server": "redis",
    "redis_tls_server": "redis",
    "own_redis_server": "redis",
    "redis_cluster": "redis",
    "own_redis_cluster": "redis",
    "redis_cluster_setup": "redis",
    "redis_sentinel": "sentinel",
    "sentinel_setup": "sentinel",
    "postgres_server": "postgres",
    "moto_server": "dynamodb",
    "control_plane": "k8s",
}


def pytest_configure(config: pytest.Config) -> None:
    # Tooling run as a child process from a temporary folder (make chaos, make bench) finds the
    # checkout through this, not through its working directory.
    os.environ.setdefault(REPOSITORY_ENV, str(config.rootpath))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = getattr(item, "fixturenames", ())
        for marker in sorted({SERVER_FIXTURES[name] for name in used if name in SERVER_FIXTURES}):
            item.add_marker(marker)


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
