"""Servers that these tests may freeze (SIGSTOP): their own, never shared ones."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from frozen_servers import Target, target_for

from lockyard_dev.servers.redis import RedisSentinelSetup


@pytest.fixture(scope="session")
def deadline_sentinel() -> Iterator[RedisSentinelSetup]:
    # Sentinels that never fail over during a test: what is under test is a stalled master.
    with RedisSentinelSetup(down_after_ms=60_000) as setup:
        yield setup


@pytest.fixture
def target(request: pytest.FixtureRequest) -> Target:
    """The backend's server named by the test's parameter (``frozen_servers.ALL``)."""
    return target_for(request)
