"""What the operator's probe sees of a Redis Cluster: the cluster's own state, credentials, the
ACL rules a least-privilege user needs (docs/backends/redis-cluster.md, *Credentials*), TLS."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import lockyard
from lockyard import BackendConnectionError, BackendError
from lockyard.config import parse_url
from lockyard.config.backends import RedisClusterConfig
from lockyard.testing.fixtures import unique_prefix
from lockyard_dev.servers.redis import make_test_tls
from lockyard_dev.servers.redis_cluster import RedisClusterSetup
from lockyard_operator.classify import classify
from lockyard_operator.fresh_login import LoginFailed, login_check

pytestmark = pytest.mark.redis

PASSWORD = "cluster pass/word"
USER = "lockyard-app"


def _config(url: str) -> RedisClusterConfig:
    config = parse_url(url)
    assert isinstance(config, RedisClusterConfig)
    return config


async def test_the_contract_basics_as_the_least_privilege_user(tmp_path: Path) -> None:
    with RedisClusterSetup(tmp_path / "acl", password=PASSWORD, username=USER) as cluster:
        url = cluster.url(unique_prefix())
        assert f"{USER}:" in url
        async with lockyard.connect(url) as ly:
            assert ly.backend == "redis-cluster"
            assert "cluster of 3 masters" in await ly.server_version()
            assert await ly.ping() >= 0
            await ly.store.set("ns:t:state:a", "1", ttl=60)
            assert await ly.store.increment("ns:t:counter:a", 2) == 2
            await ly.store.index_timeout("ns:t:state:a", 1)
            assert await ly.store.get_expired_timeouts(10) == ["ns:t:state:a"]
            async with ly.locks.hold("job", ttl=5) as guard:
                assert [info.name for info in await ly.locks.list_held()] == ["job"]
                assert guard.fencing_token >> 40 >= 1
            assert await ly.store.purge() == 2
            await login_check(_config(url)).check()
        wrong = url.replace("pass%2Fword", "wrong")
        with pytest.raises(BackendError) as refused:
            await lockyard.connect(wrong)
        assert not isinstance(refused.value, BackendConnectionError)
        with pytest.raises(LoginFailed) as failed:
            await login_check(_config(wrong)).check()
        assert classify(failed.value).reason == "AuthenticationFailed"


async def test_probe_fails_with_the_reason_while_the_cluster_is_down(tmp_path: Path) -> None:
    # Replicas that never fail over keep the cluster down once a master dies.
    with RedisClusterSetup(
        tmp_path / "down", extra_config=("cluster-replica-no-failover yes",)
    ) as cluster:
        url = cluster.url(unique_prefix(), timeout="1")
        async with lockyard.connect(url) as ly:
            await ly.ping()
            victim = cluster.masters()[0]
            await asyncio.to_thread(cluster.kill, victim)
            deadline = time.monotonic() + 30
            problem = None
            while time.monotonic() < deadline:
                try:
                    await ly.ping()
                except BackendConnectionError as exc:
                    problem = exc
                    break
                await asyncio.sleep(0.1)
            assert problem is not None, "the cluster never reported a failure"
            assert "cluster_state is 'fail'" in str(problem)
            probe = classify(problem)
            assert probe.reason == "BackendUnreachable"
            assert "cluster_state" in probe.message
            config = _config(cluster.url(unique_prefix()))
            live = [n for n in config.nodes if n.port != victim.port]
            login = login_check(config.model_copy(update={"nodes": live}))
            with pytest.raises(LoginFailed, match="cluster_state is 'fail'"):
                await login.check()
            await asyncio.to_thread(cluster.restart, victim)
            await ly.ping()
            await login.check()


async def test_opening_a_handle_on_a_stopped_cluster_fails_as_unreachable(
    own_redis_cluster: RedisClusterSetup,
) -> None:
    """Every node SIGSTOPped (connections accepted, never answered): opening fails at the
    operation timeout as an unreachable server, as on every backend
    (tests/lease_deadline/test_opening_on_a_stopped_server.py), and works once they thaw."""
    url = own_redis_cluster.url(unique_prefix(), timeout="1")
    for server in own_redis_cluster.servers:
        server.freeze()
    try:
        started = time.monotonic()
        with pytest.raises(BackendConnectionError, match="no answer within 1s while connecting"):
            await lockyard.connect(url)
        took = time.monotonic() - started
    finally:
        for server in own_redis_cluster.servers:
            server.thaw()
    assert 0.9 <= took < 11
    async with lockyard.connect(url) as ly:
        await ly.ping()


async def test_rediss_cluster_over_tls(tmp_path: Path) -> None:
    tls = make_test_tls(tmp_path / "tls")
    with RedisClusterSetup(tmp_path / "tls-cluster", tls=tls) as cluster:
        url = cluster.url(unique_prefix())
        assert url.startswith("rediss+cluster://")
        async with lockyard.connect(url) as ly:
            await ly.store.set("ns:t:state:a", "1")
            assert await ly.store.get("ns:t:state:a") == "1"
            async with ly.locks.hold("job", ttl=5):
                assert [info.name for info in await ly.locks.list_held()] == ["job"]
            assert await ly.ping() >= 0
            await login_check(_config(url)).check()
            await ly.store.purge()
