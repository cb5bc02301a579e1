"""The servers the blocking facade's conformance runs need, started once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lockyard_dev.servers.redis import RedisSentinelSetup


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinelSetup]:
    with RedisSentinelSetup(password="sync s3cret") as setup:
        yield setup
