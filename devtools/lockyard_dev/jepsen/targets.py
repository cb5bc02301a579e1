"""The backends a Jepsen run tests, each started on loopback with toxiproxy in front of it.

A :class:`Target` names the servers a client talks to (``upstreams``: label -> port) and builds
a client URL from the ports of the proxies in front of them. Usually every worker gets proxies
of its own, so one client can be cut off alone. Redis Sentinel cannot: Sentinel tells clients
the address a server announces, one address per server, so each server announces its proxy
(``replica-announce-port``), the sentinels monitor the master through its proxy, and the
replica replicates through it too. Those proxies are shared by every client (and by the
sentinels and the replica), so a fault there is a fault of the server's network, which may
well make Sentinel fail over: what this backend is tested for.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from redis.exceptions import RedisError

from lockyard_dev.jepsen.spec import KUBE, STORE
from lockyard_dev.jepsen.toxiproxy import Toxiproxy
from lockyard_dev.servers.process import ServerStartError, free_port

if TYPE_CHECKING:
    from lockyard_dev.servers.redis import SentinelProcess

HOST = "127.0.0.1"
BACKENDS = ("redis", "sentinel", "postgresql", "dynamodb", "kube")
#: Where every run's URL puts its keys (each run also has a tenant of its own in every key).
DYNAMODB_TABLE = "lockyard-jepsen"
#: Sentinel: how long a master may be silent before it is considered down.
SENTINEL_DOWN_AFTER_MS = 2000


#: (proxy port by upstream label, prefix, operation timeout in seconds) -> client URL
UrlMaker = Callable[[dict[str, int], str, float], str]


@dataclass
class Target:
    backend: str
    upstreams: dict[str, int]
    make_url: UrlMaker
    close: Callable[[], None]
    #: Proxies of the target's own, shared by every client (label -> listen port).
    shared_proxies: dict[str, str] = field(default_factory=dict)
    #: The URL straight to the server, for reading final values after a run.
    direct_url: Callable[[str], str] = lambda prefix: ""
    #: STORE (a Lockyard backend: store, counters and locks) or KUBE (Leases over the API)
    kind: str = STORE
    #: Forces a failover and returns once it is done (Sentinel), or None.
    failover: Callable[[], None] | None = None

    @property
    def per_client(self) -> bool:
        return not self.shared_proxies


def _clean_up_on_failure(start: Callable[[], object], clean_up: Callable[[], None]) -> None:
    try:
        start()
    except BaseException:
        clean_up()
        raise


def launch(backend: str, toxiproxy: Toxiproxy, folder: Path) -> Target:
    """Start ``backend``'s server(s); :meth:`Target.close` stops them."""
    if backend == "redis":
        return _redis(folder)
    if backend == "sentinel":
        return _sentinel(toxiproxy, folder)
    if backend == "postgresql":
        return _postgres()
    if backend == "dynamodb":
        return _moto(folder)
    if backend == "kube":
        return _kube(folder)
    raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}")


def _redis(folder: Path) -> Target:
    from lockyard_dev.servers.redis import RedisServer

    server = RedisServer(folder / "redis")
    _clean_up_on_failure(server.start, server.close)

    def url(ports: dict[str, int], prefix: str, timeout: float) -> str:
        query = urlencode({"prefix": prefix, "timeout": f"{timeout:g}"})
        return f"redis://{HOST}:{ports['redis']}/0?{query}"

    return Target(
        "redis",
        {"redis": server.port},
        url,
        server.close,
        direct_url=lambda prefix: url({"redis": server.port}, prefix, 5.0),
    )


def _postgres() -> Target:
    from lockyard_dev.servers.postgres import PostgresServer

    server = PostgresServer()
    _clean_up_on_failure(server.start, server.close)
    assert server.port is not None
    auth = f"{quote(server.user, safe='')}:{quote(server.password, safe='')}"

    def url(ports: dict[str, int], prefix: str, timeout: float) -> str:
        query = urlencode({"sslmode": "disable", "prefix": prefix, "timeout": f"{timeout:g}"})
        return f"postgresql://{auth}@{HOST}:{ports['postgresql']}/{server.database}?{query}"

    port = server.port
    return Target(
        "postgresql",
        {"postgresql": port},
        url,
        server.close,
        direct_url=lambda prefix: url({"postgresql": port}, prefix, 5.0),
    )


def _moto(folder: Path) -> Target:
    from lockyard_dev.servers.moto import DEFAULT_REGION, DUMMY_KEY_ID, DUMMY_SECRET, MotoServer

    server = MotoServer(folder / "moto")
    (folder / "moto").mkdir(parents=True, exist_ok=True)
    _clean_up_on_failure(server.start, server.close)

    def url(ports: dict[str, int], prefix: str, timeout: float) -> str:
        query = urlencode(
            {
                "region": DEFAULT_REGION,
                "endpoint_url": f"http://{HOST}:{ports['dynamodb']}",
                "prefix": prefix,
                "create_table": "true",
                "timeout": f"{timeout:g}",
            }
        )
        return f"dynamodb://{DUMMY_KEY_ID}:{DUMMY_SECRET}@{DYNAMODB_TABLE}?{query}"

    return Target(
        "dynamodb",
        {"dynamodb": server.port},
        url,
        server.close,
        direct_url=lambda prefix: url({"dynamodb": server.port}, prefix, 5.0),
    )


def _kube(folder: Path) -> Target:
    """etcd, kube-apiserver and the controller manager; clients get kubeconfig files whose
    server is their proxy (the serving certificate names 127.0.0.1, so TLS still verifies)."""
    from lockyard_dev.cluster.controlplane import ControlPlane

    plane = ControlPlane(folder / "controlplane")
    _clean_up_on_failure(plane.start, plane.stop)
    admin = json.loads(plane.kubeconfig.read_text())
    port = int(plane.server.rsplit(":", 1)[1])
    configs = folder / "kubeconfigs"
    configs.mkdir(exist_ok=True)

    def kubeconfig(ports: dict[str, int], prefix: str, timeout: float) -> str:
        config = json.loads(json.dumps(admin))
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = f"https://{HOST}:{ports['apiserver']}"
        path = configs / f"{prefix}-{ports['apiserver']}.json"
        path.write_text(json.dumps(config))
        return str(path)

    return Target("kube", {"apiserver": port}, kubeconfig, plane.stop, kind=KUBE)


def _sentinel(toxiproxy: Toxiproxy, folder: Path) -> Target:
    from lockyard_dev.servers.redis import MASTER_NAME, RedisServer, SentinelProcess

    base = Path(tempfile.mkdtemp(prefix="lockyard-jepsen-sentinel-", dir=folder))
    labels = ("master", "replica")
    ports = {label: free_port() for label in labels}
    proxies = {label: toxiproxy.create_proxy(f"sentinel-{label}", ports[label]) for label in labels}

    def announce(label: str) -> tuple[str, ...]:
        return (
            f"replica-announce-ip {HOST}",
            f"replica-announce-port {proxies[label].listen_port}",
        )

    master = RedisServer(
        base / "master", port=ports["master"], name="master", extra_config=announce("master")
    )
    replica = RedisServer(
        base / "replica",
        port=ports["replica"],
        name="replica",
        replica_of=(HOST, proxies["master"].listen_port),
        extra_config=announce("replica"),
    )
    sentinels = [
        SentinelProcess(
            base,
            i,
            proxies["master"].listen_port,
            password=None,
            down_after_ms=SENTINEL_DOWN_AFTER_MS,
            failover_timeout_ms=10_000,
        )
        for i in range(3)
    ]
    sentinel_proxies = {
        f"sentinel-{i}": toxiproxy.create_proxy(f"sentinel-sentinel-{i}", s.port)
        for i, s in enumerate(sentinels)
    }

    def stop() -> None:
        for sentinel in sentinels:
            sentinel.process.stop()
        master.close()
        replica.close()
        shutil.rmtree(base, ignore_errors=True)

    def start() -> None:
        master.start()
        replica.start()
        for sentinel in sentinels:
            sentinel.process.start()
        for sentinel in sentinels:
            sentinel.process.wait_ready(sentinel.answers, 30)
        _wait_sentinels_settled(sentinels)

    _clean_up_on_failure(start, stop)

    def url(ports: dict[str, int], prefix: str, timeout: float) -> str:
        hosts = ",".join(f"{HOST}:{ports[label]}" for label in sentinel_proxies)
        query = urlencode({"prefix": prefix, "timeout": f"{timeout:g}"})
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/0?{query}"

    shared = {label: proxy.name for label, proxy in {**proxies, **sentinel_proxies}.items()}
    shared_ports = {label: p.listen_port for label, p in sentinel_proxies.items()}

    def direct(prefix: str) -> str:
        hosts = ",".join(f"{HOST}:{s.port}" for s in sentinels)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/0?{urlencode({'prefix': prefix})}"

    def failover() -> None:
        """SENTINEL FAILOVER, straight to a sentinel; back once all name a new master."""
        old = sentinels[0].master_state()["port"]
        with sentinels[0].client() as client:
            client.sentinel_failover(MASTER_NAME)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(RedisError, OSError):
                if all(s.master_state()["port"] != old for s in sentinels):
                    return
            time.sleep(0.05)

    return Target(
        "sentinel",
        {},
        lambda _ports, prefix, timeout: url(shared_ports, prefix, timeout),
        stop,
        shared_proxies=shared,
        direct_url=direct,
        failover=failover,
    )


def _wait_sentinels_settled(sentinels: Sequence[SentinelProcess], timeout: float = 60.0) -> None:
    """Every sentinel sees the master up, the replica and the other sentinels."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        settled = True
        for sentinel in sentinels:
            with contextlib.suppress(RedisError, OSError):
                state = sentinel.master_state()
                if (
                    state["is_master"]
                    and not state["is_sdown"]
                    and state["num-slaves"] >= 1
                    and state["num-other-sentinels"] >= len(sentinels) - 1
                ):
                    continue
            settled = False
            break
        if settled:
            return
        time.sleep(0.2)
    raise ServerStartError(f"the Sentinel setup behind toxiproxy did not settle in {timeout:g}s")
