"""Helpers the PostgreSQL backend's own tests share (fixtures are in conftest.py)."""

from __future__ import annotations

import lockyard
from lockyard.backends import postgres as pg


def backend_of(ly: lockyard.Connection) -> pg.PostgresBackend:
    """The PostgreSQL backend under a handle, for tests that look at its statements or pool."""
    backend = ly._backend
    assert isinstance(backend, pg.PostgresBackend)
    return backend
