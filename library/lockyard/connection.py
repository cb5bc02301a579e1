"""``lockyard.connect``: a URL or config in, an open handle out.

``connect()`` returns an object that is both awaitable (``ly = await lockyard.connect(url)``) and
an async context manager (``async with lockyard.connect(url) as ly:``),
like ``asyncpg.create_pool``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from lockyard._resource import AsyncResource
from lockyard.backend import Backend, load_opener
from lockyard.config import BackendConfig, parse_url, validate_config
from lockyard.config.backends import CommonSettings
from lockyard.errors import ConfigError
from lockyard.fenced_writes import FENCE_KINDS
from lockyard.guarantees import Guarantees
from lockyard.keys import KeyLike, canonical_key
from lockyard.locks import DistributedLock, check_lock_name
from lockyard.store import StateStore
from lockyard.telemetry.attributes import open_described

if TYPE_CHECKING:
    from lockyard.elections import Elections
    from lockyard.rwlocks import ReadWriteLocks
    from lockyard.semaphores import Semaphores


class Connection(AsyncResource):
    """An open backend: ``.store``, ``.locks``, ``.elections``, ``.backend``, ``.guarantees``,
    ``close()``."""

    def __init__(self, backend: Backend, config: BackendConfig) -> None:
        self._backend = backend
        self.config = config
        self._closed = False
        self._close_callbacks: list[Callable[[], Awaitable[None]]] = []
        self._elections: Elections | None = None

    @property
    def store(self) -> StateStore:
        return self._backend.store

    @property
    def locks(self) -> DistributedLock:
        return self._backend.locks

    @property
    def elections(self) -> Elections:
        """Leader elections on this store's locks (:mod:`lockyard.elections`)."""
        if self._elections is None:
            from lockyard.elections import Elections

            self._elections = Elections(self.locks, self.store)
        return self._elections

    @property
    def semaphores(self) -> Semaphores:
        """Counting semaphores on this store (:mod:`lockyard.semaphores`)."""
        offered: Semaphores = self._offered("semaphores")
        return offered

    @property
    def rwlocks(self) -> ReadWriteLocks:
        """Read-write locks on this store (:mod:`lockyard.rwlocks`)."""
        offered: ReadWriteLocks = self._offered("rwlocks")
        return offered

    def colocated_name(self, name: str, key: KeyLike, *, guard: str = "lock") -> str:
        """A name, based on ``name``, for a lock (or a ``"semaphore"``, ``"rwlock"``) whose lease
        lives beside ``key``, so a guard of that name can fence writes of ``key``, and of every
        key naming the same ``{group}``, on a backend that needs the two in one place: on Redis
        Cluster a fenced write is one script, which touches one hash slot. Every other backend
        returns ``name``: there any guard fences any key (docs/backends/redis-cluster.md)."""
        checked = check_lock_name(name)
        k = canonical_key(key)
        if guard not in FENCE_KINDS:
            raise ValueError(f"guard must be one of {', '.join(FENCE_KINDS)}, got {guard!r}")
        place = getattr(self._backend, "colocated_name", None)
        if place is None:
            return checked
        placed: str = place(checked, k, guard)
        return placed

    def _offered(self, feature: str) -> Any:
        """A feature a backend may lack (third-party backends predate it)."""
        offered = getattr(self._backend, feature, None)
        if offered is None:
            raise ConfigError(f"the {self.backend} backend does not offer {feature}")
        return offered

    @property
    def backend(self) -> str:
        """The backend's name: ``memory``, ``redis``, ``redis-sentinel``, ``postgresql``, ..."""
        return self._backend.name

    @property
    def guarantees(self) -> Guarantees:
        return self._backend.guarantees

    @property
    def prefix(self) -> str:
        return self.config.prefix

    @property
    def closed(self) -> bool:
        return self._closed

    async def ping(self) -> float:
        """One round trip to the backend; its latency in seconds."""
        return await self._backend.ping()

    async def server_version(self) -> str:
        return await self._backend.server_version()

    def on_close(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Await ``callback()`` when the handle closes, before the backend (latest first).

        Helpers tied to the handle's life (the Lease mirror) stop with it this way.
        """
        self._close_callbacks.append(callback)

    async def close(self) -> None:
        """Run the ``on_close`` callbacks, then close the backend's connections; idempotent."""
        if not self._closed:
            self._closed = True
            try:
                while self._close_callbacks:
                    await self._close_callbacks.pop()()
            finally:
                await self._backend.close()

    def __repr__(self) -> str:
        return f"<lockyard.Connection backend={self.backend} prefix={self.prefix!r}>"


def resolve_config(target: str | CommonSettings | Mapping[str, Any]) -> BackendConfig:
    """A URL, a config model or a mapping of settings, as a validated config model."""
    if isinstance(target, str):
        return parse_url(target)
    if isinstance(target, CommonSettings):
        return validate_config(target.model_dump())
    if isinstance(target, Mapping):
        return validate_config(dict(target))
    raise ConfigError(
        f"connect() takes a URL, a lockyard.config model or a mapping, got {type(target).__name__}"
    )


async def open_connection(target: str | CommonSettings | Mapping[str, Any]) -> Connection:
    config = resolve_config(target)
    opener = load_opener(config.backend)
    backend = await open_described(opener, config)  # labelled for telemetry, never with secrets
    return Connection(backend, config)


class _Connecting:
    """Awaitable and async context manager around :func:`open_connection`."""

    def __init__(self, target: str | CommonSettings | Mapping[str, Any]) -> None:
        self._target = target
        self._connection: Connection | None = None

    def __await__(self) -> Generator[Any, None, Connection]:
        return open_connection(self._target).__await__()

    async def __aenter__(self) -> Connection:
        self._connection = await open_connection(self._target)
        return self._connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._connection is not None:
            await self._connection.close()


def connect(url_or_config: str | CommonSettings | Mapping[str, Any]) -> _Connecting:
    """Open a backend from a URL (``redis://...``) or a ``lockyard.config`` model.

    ``ly = await lockyard.connect(url)`` or ``async with lockyard.connect(url) as ly:``.
    """
    return _Connecting(url_or_config)
