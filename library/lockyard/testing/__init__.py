"""The conformance suite: the whole state and lock contract, written once, for any backend.

Subclass :class:`Conformance` in a test module and provide a ``lockyard_connect`` fixture: an
async factory that opens a :class:`lockyard.Connection` for a given key prefix on your backend::

    from lockyard.testing import Conformance

    class TestMyBackend(Conformance):
        @pytest.fixture
        def lockyard_connect(self, my_server_url):
            async def connect(prefix: str) -> lockyard.Connection:
                return await lockyard.connect(f"{my_server_url}?prefix={prefix}")
            return connect

Every test is ``async`` and marked for pytest-asyncio, so the suite runs in strict mode too.
Class attributes tune the timing bounds a backend promises (``handover_bound_s``).
"""

import pkgutil

import pytest

# The suite's checks are plain ``assert`` statements: have pytest explain a failed one (the
# values on each side) as it does in test modules. Before the submodules are imported (this
# package itself is, by now: naming it would only warn).
pytest.register_assert_rewrite(*(f"{__name__}.{m.name}" for m in pkgutil.iter_modules(__path__)))

from lockyard.testing.fixtures import ConformanceBase, ConnectFactory  # noqa: E402
from lockyard.testing.suite_elections import ElectionConformance  # noqa: E402
from lockyard.testing.suite_fencing import FencingConformance  # noqa: E402
from lockyard.testing.suite_indexes import IndexConformance  # noqa: E402
from lockyard.testing.suite_locks import LockConformance  # noqa: E402
from lockyard.testing.suite_races import RaceConformance  # noqa: E402
from lockyard.testing.suite_rwlocks import ReadWriteLockConformance  # noqa: E402
from lockyard.testing.suite_scans import ScanConformance  # noqa: E402
from lockyard.testing.suite_semaphores import SemaphoreConformance  # noqa: E402
from lockyard.testing.suite_store import StoreConformance  # noqa: E402


class Conformance(
    StoreConformance,
    ScanConformance,
    IndexConformance,
    RaceConformance,
    LockConformance,
    ElectionConformance,
    FencingConformance,
    SemaphoreConformance,
    ReadWriteLockConformance,
):
    """Every part of the contract; what each backend's test module subclasses."""


__all__ = [
    "Conformance",
    "ConformanceBase",
    "ConnectFactory",
    "ElectionConformance",
    "FencingConformance",
    "IndexConformance",
    "LockConformance",
    "RaceConformance",
    "ReadWriteLockConformance",
    "ScanConformance",
    "SemaphoreConformance",
    "StoreConformance",
]
