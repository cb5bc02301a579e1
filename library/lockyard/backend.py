"""The contract between the core and a backend module, and the registry of backends by name.

A backend module exposes ``async def open_backend(config) -> Backend``. Built-in backends are
imported lazily by name, so a missing driver only matters to whoever uses that backend; third
parties register theirs under the ``lockyard.backends`` entry-point group (as tooz does).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from importlib.metadata import entry_points
from typing import Any, Protocol

from lockyard.errors import ConfigError
from lockyard.guarantees import Guarantees
from lockyard.locks import DistributedLock
from lockyard.store import StateStore


class Backend(Protocol):
    """An open backend: one store and one lock manager over shared connections."""

    name: str
    guarantees: Guarantees
    store: StateStore
    locks: DistributedLock

    async def ping(self) -> float:
        """One round trip; returns its latency in seconds."""
        ...

    async def server_version(self) -> str: ...

    async def close(self) -> None: ...


BackendOpener = Callable[[Any], Awaitable[Backend]]

#: backend name -> (module, the extra that brings its driver)
BUILTIN_BACKENDS: dict[str, tuple[str, str | None]] = {
    "memory": ("lockyard.backends.memory", None),
    "redis": ("lockyard.backends.redis", "redis"),
    "redis-sentinel": ("lockyard.backends.redis", "redis"),
    "redis-cluster": ("lockyard.backends.redis", "redis"),
    "postgresql": ("lockyard.backends.postgres", "postgres"),
    "dynamodb": ("lockyard.backends.dynamodb", "dynamodb"),
}

ENTRY_POINT_GROUP = "lockyard.backends"


def load_opener(backend: str) -> BackendOpener:
    """The ``open_backend`` function of ``backend``, or a ``ConfigError`` saying how to get it."""
    if backend in BUILTIN_BACKENDS:
        module_name, extra = BUILTIN_BACKENDS[backend]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and exc.name.startswith(module_name):
                raise ConfigError(
                    f"the {backend} backend is not available in this version of lockyard"
                ) from exc
            hint = f": pip install 'lockyard[{extra}]'" if extra else ""
            raise ConfigError(
                f"the {backend} backend needs the Python package {exc.name!r}{hint}"
            ) from exc
        opener: BackendOpener = module.open_backend
        return opener
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == backend:
            loaded: BackendOpener = entry.load()
            return loaded
    known = ", ".join(sorted(BUILTIN_BACKENDS))
    raise ConfigError(f"unknown backend {backend!r}; known backends: {known}")
