"""The memory backend passes the whole contract: it is the executable specification."""

from __future__ import annotations

import pytest

import lockyard
from lockyard.testing import Conformance, ConnectFactory


class TestMemoryConformance(Conformance):
    @pytest.fixture
    def lockyard_connect(self) -> ConnectFactory:
        async def connect(prefix: str) -> lockyard.Connection:
            return await lockyard.connect(f"memory://?prefix={prefix}")

        return connect
