"""The networked backends whose server these tests freeze (SIGSTOP: the kernel still accepts
connections, nothing answers them) or put behind a delaying relay: one :class:`Target` each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import pytest


class Frozen(Protocol):
    def freeze(self) -> None: ...

    def thaw(self) -> None: ...


@dataclass
class Target:
    """One backend's server: a URL (optionally through a relay port) and how to freeze it."""

    url: Callable[[str, int | None], str]
    upstream_port: int | None
    server: Frozen


def _port_swapped(url: str, port: int, relay_port: int | None) -> str:
    return url if relay_port is None else url.replace(f":{port}/", f":{relay_port}/", 1)


def target_for(request: pytest.FixtureRequest) -> Target:
    """The :class:`Target` of the backend named by ``request.param`` (the ``target`` fixture)."""
    backend = request.param
    if backend == "redis":
        redis = request.getfixturevalue("redis_server")
        return Target(
            lambda p, relay: _port_swapped(redis.url(p), redis.port, relay), redis.port, redis
        )
    if backend == "sentinel":
        setup = request.getfixturevalue("deadline_sentinel")
        master = setup.server_on(setup.master_address()[1])
        return Target(lambda p, relay: setup.url(p), None, master)
    if backend == "postgres":
        pg = request.getfixturevalue("postgres_server")
        return Target(lambda p, relay: _port_swapped(pg.url(prefix=p), pg.port, relay), pg.port, pg)
    assert backend == "dynamodb"
    moto = request.getfixturevalue("moto_server")

    def moto_url(prefix: str, relay: int | None) -> str:
        endpoint = moto.endpoint_url if relay is None else f"http://127.0.0.1:{relay}"
        url: str = moto.url("lockyard-deadlines", prefix, endpoint_url=endpoint)
        return url

    return Target(moto_url, moto.port, moto)


ALL = [
    pytest.param("redis", marks=pytest.mark.redis),
    pytest.param("sentinel", marks=pytest.mark.sentinel),
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("dynamodb", marks=pytest.mark.dynamodb),
]
#: Sentinel hands clients the master's own address, so a relay in front of it is not on the
#: path; the stalled-master case covers it.
RELAYED = [param for param in ALL if param.values != ("sentinel",)]
