"""The blocking facade offers every async method, built from that very method.

Adding a method to the async core without its blocking twin fails here; so does a twin that
wraps anything but the async method of the same name (there is one implementation).
"""

from __future__ import annotations

import inspect

import pytest

import lockyard
import lockyard.sync
from lockyard.locks import LockGuard as AsyncLockGuard
from lockyard.rwlocks import ReadWriteGuard as AsyncReadWriteGuard
from lockyard.rwlocks import ReadWriteLocks as AsyncReadWriteLocks
from lockyard.semaphores import Permit as AsyncPermit
from lockyard.semaphores import Semaphores as AsyncSemaphores
from lockyard.sync.bridge import Blocking
from lockyard.sync.connection import _describe

#: Async members the facade deliberately shapes differently, each for a reason docs/sync.md gives.
DIFFERENT = {
    "close",  # Connection.close(timeout=None): stops the loop thread too
    "hold",  # a sync context manager with on_lost=, not an async one
    "hold_read",  # the same, for read-write locks
    "hold_write",
    "campaign",  # the same, for elections (and .wait() for `await campaign`)
    "watch_releases",  # a backend's waiting internals, not public API
}
#: Plain methods that return an async iterator: their twins return a blocking iterator.
ITERATING = {"observe", "observe_prefix"}

PAIRS = [
    (lockyard.StateStore, lockyard.sync.StateStore),
    (lockyard.DistributedLock, lockyard.sync.DistributedLock),
    (AsyncLockGuard, lockyard.sync.LockGuard),
    (lockyard.Connection, lockyard.sync.Connection),
    (lockyard.Elections, lockyard.sync.Elections),
    (lockyard.Leadership, lockyard.sync.Leadership),
    (AsyncSemaphores, lockyard.sync.Semaphores),
    (AsyncPermit, lockyard.sync.Permit),
    (AsyncReadWriteLocks, lockyard.sync.ReadWriteLocks),
    (AsyncReadWriteGuard, lockyard.sync.ReadWriteGuard),
]
#: Data attributes (slots) of the async guards that the blocking guards show too.
GUARD_FIELDS = {"name", "owner", "fencing_token", "lease_ms", "lease_deadline"}


def public_coroutine_methods(cls: type) -> dict[str, object]:
    found = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") or name in DIFFERENT:
            continue
        if inspect.iscoroutinefunction(inspect.unwrap(member)) or name in ITERATING:
            found[name] = member
    return found


@pytest.mark.parametrize(("async_cls", "sync_cls"), PAIRS, ids=lambda c: c.__qualname__)
def test_every_async_method_has_a_blocking_twin_built_from_it(
    async_cls: type, sync_cls: type
) -> None:
    methods = public_coroutine_methods(async_cls)
    assert methods, async_cls
    for name, method in methods.items():
        twin = inspect.getattr_static(sync_cls, name, None)
        assert isinstance(twin, Blocking), f"{sync_cls.__qualname__}.{name} is missing"
        # Arguments are passed on untouched, so the same method means the same signature.
        assert twin.method is method, f"{sync_cls.__qualname__}.{name} wraps something else"
        assert twin.__doc__ == method.__doc__
        assert twin.plain == (name in ITERATING)


@pytest.mark.parametrize(("async_cls", "sync_cls"), PAIRS, ids=lambda c: c.__qualname__)
def test_plain_attributes_are_there_too(async_cls: type, sync_cls: type) -> None:
    plain = {
        name
        for name, member in inspect.getmembers(async_cls)
        if isinstance(member, property) and not name.startswith("_")
    }
    if async_cls is AsyncLockGuard:
        plain |= GUARD_FIELDS | {"renewed_at"}
    if async_cls is AsyncPermit:
        plain |= GUARD_FIELDS | {"weight", "limit"}
    if async_cls is AsyncReadWriteGuard:
        plain |= GUARD_FIELDS | {"weight", "mode"}
    if async_cls is lockyard.Leadership:
        plain |= {"name", "identity", "term", "since", "lost", "guard"}
    if sync_cls in (lockyard.sync.Connection, lockyard.sync.Leadership):
        with lockyard.sync.connect("memory://?prefix=surface") as ly:
            subject: object = ly
            if sync_cls is lockyard.sync.Leadership:
                subject = ly.elections.campaign("surface", "me", 5).wait()
            missing = {name for name in plain if not hasattr(subject, name)}
    else:
        missing = {name for name in plain if not hasattr(sync_cls, name)}
    assert not missing, f"{sync_cls.__qualname__} lacks {missing}"


def test_the_description_of_a_handle_never_holds_the_url() -> None:
    described = _describe("redis://app:s3cret@redis.shop.svc:6379/0?prefix=orders")
    assert described == "backend=redis"
    assert "s3cret" not in _describe({"backend": "postgresql", "password": "s3cret"})
