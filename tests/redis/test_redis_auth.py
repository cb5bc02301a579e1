"""AUTH and ACL: the whole contract as a least-privilege ACL user, and refused credentials."""

from __future__ import annotations

import time

import pytest

import lockyard
from lockyard import BackendError
from lockyard.testing import Conformance, ConnectFactory
from lockyard.testing.fixtures import unique_prefix
from lockyard_dev.servers.redis import LOCKYARD_ACL, RedisServer

pytestmark = pytest.mark.redis


class TestAclUserConformance(Conformance):
    """Every operation works for a user limited to ``LOCKYARD_ACL`` (docs/backends/redis.md)."""

    @pytest.fixture
    def lockyard_connect(self, redis_acl_server: RedisServer) -> ConnectFactory:
        async def connect(prefix: str) -> lockyard.Connection:
            return await lockyard.connect(redis_acl_server.url(prefix))

        return connect


async def test_the_acl_user_is_really_limited(redis_acl_server: RedisServer) -> None:
    assert "-@all" in LOCKYARD_ACL
    with redis_acl_server.admin() as admin:
        admin.set("outside", "x")
        user = admin.acl_getuser(redis_acl_server.username or "")
        assert user is not None
    async with lockyard.connect(redis_acl_server.url(unique_prefix())) as ly:
        assert await ly.ping() > 0
        assert (await ly.server_version()).startswith("Redis 7")
        client = ly._backend.client  # type: ignore[attr-defined]
        with pytest.raises(Exception, match=r"NOPERM|permission"):
            await client.get("outside")
        with pytest.raises(Exception, match=r"NOPERM|permission"):
            await client.execute_command("FLUSHALL")


async def test_a_wrong_password_is_refused_at_connect(redis_acl_server: RedisServer) -> None:
    url = redis_acl_server.url(unique_prefix()).replace("s3cret", "wrong", 1)
    started = time.monotonic()
    with pytest.raises(BackendError, match="credentials"):
        await lockyard.connect(url)
    assert time.monotonic() - started < 2


async def test_no_password_is_refused_at_connect(redis_acl_server: RedisServer) -> None:
    url = f"redis://127.0.0.1:{redis_acl_server.port}/0?prefix={unique_prefix()}"
    with pytest.raises(BackendError):
        await lockyard.connect(url)


async def test_the_default_user_with_requirepass_works(redis_acl_server: RedisServer) -> None:
    async with lockyard.connect(redis_acl_server.url(unique_prefix(), as_user=False)) as ly:
        assert await ly.store.check_and_set("ns:acme:dedup:x", "v")
        assert await ly.store.get("ns:acme:dedup:x") == "v"
        await ly.store.purge()
