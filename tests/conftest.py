"""Project-wide test rules: tests are marked with the servers they use, and no test may leave
asyncio tasks running behind it. The plain servers (``redis_server``, ``postgres_server``,
``moto_server``) are defined once here and started on first use, once per session (per
pytest-xdist worker); every test keeps to its own prefix in them. A folder that needs another
kind (a password, TLS, a server it may stop for good) defines its own under another name, or
overrides the name in its conftest.

Under pytest-xdist (``make test``), every test under ``tests/node/`` runs on one worker: one
kubelet per host, and two node clusters on 127.0.0.1 take each other's ports.

``make unit`` deselects every server marker; a test that starts a server without its marker
fails there (``$LOCKYARD_NO_SERVERS``, see ``lockyard_dev.servers.process``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from xdist.remote import Producer
from xdist.scheduler import LoadScopeScheduling

from lockyard_dev.repository import ENV_VAR as REPOSITORY_ENV
from lockyard_dev.servers.moto import MotoServer
from lockyard_dev.servers.postgres import PostgresServer
from lockyard_dev.servers.redis import RedisServer

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


#: Test ids under this prefix form one unit of work for pytest-xdist.
NODE_TESTS = "tests/node/"


class NodeTestsOnOneWorker(LoadScopeScheduling):  # type: ignore[misc]  # xdist is untyped
    """``--dist loadgroup`` with the node tests as the one group, every other test on its own.

    Why not the ``xdist_group`` marker: pytest-xdist 3.8 writes the group into ``item._nodeid``,
    which pytest 9 no longer reads (``nodeid`` is built from ``_id``), so the marker silently did
    nothing and four node clusters started at once in CI. The scope is decided here, from the id.
    """

    def _split_scope(self, nodeid: str) -> str:
        return "node" if nodeid.startswith(NODE_TESTS) else nodeid


def pytest_xdist_make_scheduler(
    config: pytest.Config, log: Producer
) -> NodeTestsOnOneWorker | None:
    if config.getvalue("dist") != "loadgroup":
        return None
    return NodeTestsOnOneWorker(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        used = getattr(item, "fixturenames", ())
        for marker in sorted({SERVER_FIXTURES[name] for name in used if name in SERVER_FIXTURES}):
            item.add_marker(marker)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A plain redis-server: no password, no TLS."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    with MotoServer(tmp_path_factory.mktemp("moto")) as server:
        yield server


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
