"""Every async test in this folder runs on a virtual-time event loop: sleeps take no real time."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from lockyard.testing.virtual_time import VirtualTimeEventLoop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, type[VirtualTimeEventLoop]]:
    return {"virtual-time": VirtualTimeEventLoop}
