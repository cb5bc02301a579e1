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

from lockyard.testing.fixtures import ConformanceBase, ConnectFactory
from lockyard.testing.suite_elections import ElectionConformance
from lockyard.testing.suite_fencing import FencingConformance
from lockyard.testing.suite_indexes import IndexConformance
from lockyard.testing.suite_locks import LockConformance
from lockyard.testing.suite_races import RaceConformance
from lockyard.testing.suite_rwlocks import ReadWriteLockConformance
from lockyard.testing.suite_scans import ScanConformance
from lockyard.testing.suite_semaphores import SemaphoreConformance
from lockyard.testing.suite_store import StoreConformance


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
