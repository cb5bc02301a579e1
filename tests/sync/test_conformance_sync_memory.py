"""The blocking facade passes the whole contract on the memory backend (one process)."""

from __future__ import annotations

import pytest

import lockyard.sync
from lockyard.sync.conformance import sync_connect_factory
from lockyard.testing import Conformance, ConnectFactory


class TestSyncMemoryConformance(Conformance):
    @pytest.fixture
    def lockyard_connect(self) -> ConnectFactory:
        return sync_connect_factory(
            lambda prefix: lockyard.sync.connect(f"memory://?prefix={prefix}")
        )
