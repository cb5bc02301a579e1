"""Real Redis for tests, benchmarks and the demo: one server, or a Sentinel setup.

Everything runs on free 127.0.0.1 ports in a temporary folder and is stopped by ``stop()`` (or
the ``with`` block); nothing here assumes a running service. Options:

- ``password`` sets ``requirepass`` (the default user); ``username`` adds an ACL user with the
  same password and the rules in ``acl`` (see ``docs/backends/redis.md`` for the minimal rules
  Lockyard needs).
- ``tls=make_test_tls(folder)`` serves TLS only (also replication and, in a Sentinel setup, the
  sentinels), with a throw-away CA from :mod:`lockyard_dev.servers.tls`.
- ``close()`` (also called ``remove()``) stops and deletes the folder, as leaving ``with`` does.
- ``RedisServer.restart()`` brings the server back on the same port (for outage tests); the
  servers keep no data on disk, so a restart starts empty.
- ``RedisSentinelSetup`` runs one master, one replica and three sentinels, and can force a
  failover with ``SENTINEL FAILOVER``. Replicas and sentinels authenticate as the default user
  (``masterauth``/``auth-pass``): the ACL user is for Lockyard only.

The admin helpers use the synchronous redis-py client.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from redis import Redis
from redis.exceptions import RedisError

from lockyard_dev.servers.process import (
    OneProcessControls,
    ServerHarness,
    ServerProcess,
    ServerStartError,
    free_port,
    require_binary,
)
from lockyard_dev.servers.tls import make_ca, make_client_certificate, make_server_certificate

HINT = "install the Debian packages redis-server and redis-sentinel (make system-deps)"
HOST = "127.0.0.1"
MASTER_NAME = "lockyard"
#: The ACL rules the harness gives ``username``: the least Lockyard needs (docs/backends/redis.md).
LOCKYARD_ACL = (
    "~lockyard:* &lockyard:* resetchannels &lockyard:* -@all "
    "+@read +@write +@keyspace +@scripting +@pubsub +@connection "
    "+info +wait +time -keys -flushall -flushdb -script|flush -script|kill"
)


@dataclass(frozen=True, slots=True)
class TLSFiles:
    """A test CA, a server certificate for 127.0.0.1/localhost, and a client certificate."""

    ca_file: str
    cert_file: str
    key_file: str
    client_cert_file: str
    client_key_file: str


def make_test_tls(folder: Path) -> TLSFiles:
    """Make a throw-away CA, a server and a client certificate under ``folder`` (openssl CLI)."""
    ca = make_ca(folder)
    server = make_server_certificate(ca, folder)
    client = make_client_certificate(ca, folder, "lockyard-test-client")
    return TLSFiles(
        ca_file=str(ca.cert_file),
        cert_file=str(server.cert_file),
        key_file=str(server.key_file),
        client_cert_file=str(client.cert_file),
        client_key_file=str(client.key_file),
    )


def _quote(value: str) -> str:
    """A value for a Redis config file (double-quoted, escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tls_config(port: int, tls: TLSFiles, auth_clients: bool) -> list[str]:
    return [
        "port 0",
        f"tls-port {port}",
        f"tls-cert-file {_quote(tls.cert_file)}",
        f"tls-key-file {_quote(tls.key_file)}",
        f"tls-ca-cert-file {_quote(tls.ca_file)}",
        f"tls-auth-clients {'yes' if auth_clients else 'no'}",
    ]


def _tls_client_kwargs(tls: TLSFiles) -> dict[str, Any]:
    """redis-py settings for the harness's own TLS connections (with the client certificate)."""
    return {
        "ssl": True,
        "ssl_ca_certs": tls.ca_file,
        "ssl_certfile": tls.client_cert_file,
        "ssl_keyfile": tls.client_key_file,
    }


class _Folder:
    """A temporary folder owned by the harness, or one the caller gave (kept)."""

    def __init__(self, folder: Path | None, prefix: str) -> None:
        self._owned = folder is None
        self.path = Path(tempfile.mkdtemp(prefix=prefix)) if folder is None else folder
        self.path.mkdir(parents=True, exist_ok=True)

    def remove(self) -> None:
        if self._owned:
            shutil.rmtree(self.path, ignore_errors=True)


class RedisServer(OneProcessControls, ServerHarness):
    """One redis-server on a free loopback port; ``stop()`` ends only this process."""

    def __init__(
        self,
        folder: Path | None = None,
        *,
        port: int | None = None,
        password: str | None = None,
        username: str | None = None,
        acl: str = LOCKYARD_ACL,
        tls: TLSFiles | None = None,
        tls_auth_clients: bool = False,
        replica_of: tuple[str, int] | None = None,
        name: str = "redis",
        extra_config: tuple[str, ...] = (),
    ) -> None:
        if username is not None and password is None:
            raise ValueError("an ACL user needs a password")
        self._folder = _Folder(folder, "lockyard-redis-")
        self.folder = self._folder.path
        self.port = port or free_port()
        self.password = password
        self.username = username
        self.tls = tls
        self.name = name
        binary = require_binary("redis-server", HINT)
        lines = [
            f"bind {HOST}",
            "protected-mode no",
            f"dir {_quote(str(self.folder))}",
            'save ""',
            "appendonly no",
            "daemonize no",
            f"pidfile {_quote(str(self.folder / 'redis.pid'))}",
            "loglevel notice",
            # A replica must be promotable and answer quickly in tests.
            "replica-priority 100",
            "repl-diskless-sync yes",
            "repl-diskless-sync-delay 0",
        ]
        if tls is None:
            lines.append(f"port {self.port}")
        else:
            lines += [*_tls_config(self.port, tls, tls_auth_clients), "tls-replication yes"]
        if password is not None:
            lines += [f"requirepass {_quote(password)}", f"masterauth {_quote(password)}"]
        if username is not None:
            lines.append(f"user {_quote(username)} on {_quote('>' + str(password))} {acl}")
        if replica_of is not None:
            lines.append(f"replicaof {replica_of[0]} {replica_of[1]}")
        lines += extra_config
        self.config_path = self.folder / f"{name}.conf"
        self.config_path.write_text("\n".join(lines) + "\n")
        self.process = ServerProcess(
            name, [binary, str(self.config_path)], self.folder / f"{name}.log", cwd=self.folder
        )

    # -- life cycle ------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> RedisServer:
        self.process.start()
        try:
            self.process.wait_ready(self._answers, timeout)
        except BaseException:
            self.process.stop()  # never leave a server behind that did not come up
            raise
        return self

    def restart(self, timeout: float = 30.0) -> None:
        """Stop (if running) and start again on the same port; the data starts empty."""
        self.stop()
        self.start(timeout)

    def close(self) -> None:
        """Stop the server and delete its folder (when the harness made it)."""
        self.stop()
        self._folder.remove()

    remove = close  # the name this method had first; callers still use it

    # -- access ----------------------------------------------------------------------------
    def connection_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"host": HOST, "port": self.port, "password": self.password}
        if self.tls is not None:
            kwargs |= _tls_client_kwargs(self.tls)
        return kwargs

    def admin(self, **kwargs: Any) -> Redis:
        """A synchronous client as the default user (close it, or use it in ``with``)."""
        options = self.connection_kwargs() | {"socket_timeout": 5, "decode_responses": True}
        return Redis(**(options | kwargs))

    def _answers(self) -> bool:
        try:
            with self.admin(socket_timeout=0.5, socket_connect_timeout=0.5) as client:
                return bool(client.ping())
        except (RedisError, OSError):
            return False

    def url(self, prefix: str = "lockyard", *, as_user: bool = True, **params: str) -> str:
        """The Lockyard URL of this server (as the ACL user when there is one)."""
        auth = ""
        if self.password is not None:
            user = quote(self.username, safe="") if self.username and as_user else ""
            auth = f"{user}:{quote(self.password, safe='')}@"
        query = {"prefix": prefix, **params}
        if self.tls is not None:
            query.setdefault("tls_ca_file", self.tls.ca_file)
        scheme = "rediss" if self.tls is not None else "redis"
        return f"{scheme}://{auth}{HOST}:{self.port}/0?{urlencode(query)}"


class SentinelProcess:
    """One sentinel watching ``MASTER_NAME``."""

    def __init__(
        self,
        folder: Path,
        index: int,
        master_port: int,
        *,
        password: str | None,
        down_after_ms: int,
        failover_timeout_ms: int,
        tls: TLSFiles | None = None,
    ) -> None:
        self.port = free_port()
        self.tls = tls
        binary = require_binary("redis-server", HINT)
        lines = [
            f"bind {HOST}",
            "protected-mode no",
            f"dir {_quote(str(folder))}",
            "daemonize no",
            "sentinel resolve-hostnames no",
            f"sentinel monitor {MASTER_NAME} {HOST} {master_port} 2",
            f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}",
            f"sentinel failover-timeout {MASTER_NAME} {failover_timeout_ms}",
            f"sentinel parallel-syncs {MASTER_NAME} 1",
        ]
        if tls is None:
            lines.append(f"port {self.port}")
        else:
            lines += [*_tls_config(self.port, tls, auth_clients=False), "tls-replication yes"]
        if password is not None:
            lines.append(f"sentinel auth-pass {MASTER_NAME} {_quote(password)}")
        # Sentinel rewrites its own config file: it must be writable and its own.
        config = folder / f"sentinel-{index}.conf"
        config.write_text("\n".join(lines) + "\n")
        self.process = ServerProcess(
            f"sentinel-{index}",
            [binary, str(config), "--sentinel"],
            folder / f"sentinel-{index}.log",
            cwd=folder,
        )

    def client(self) -> Redis:
        tls = {} if self.tls is None else _tls_client_kwargs(self.tls)
        return Redis(host=HOST, port=self.port, socket_timeout=5, decode_responses=True, **tls)

    def answers(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except (RedisError, OSError):
            return False

    def master_state(self) -> dict[str, Any]:
        with self.client() as client:
            state: dict[str, Any] = client.sentinel_master(MASTER_NAME)
            return state


class RedisSentinelSetup(ServerHarness):
    """One master, ``replicas`` replicas and ``sentinels`` sentinels on loopback ports."""

    def __init__(
        self,
        folder: Path | None = None,
        *,
        password: str | None = None,
        username: str | None = None,
        replicas: int = 1,
        sentinels: int = 3,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 10_000,
        tls: TLSFiles | None = None,
    ) -> None:
        self._folder = _Folder(folder, "lockyard-sentinel-")
        self.folder = self._folder.path
        self.password = password
        self.username = username
        self.tls = tls
        self.master = RedisServer(
            self.folder / "master", name="master", password=password, username=username, tls=tls
        )
        self.replicas = [
            RedisServer(
                self.folder / f"replica-{i}",
                name=f"replica-{i}",
                replica_of=(HOST, self.master.port),
                password=password,
                username=username,
                tls=tls,
            )
            for i in range(replicas)
        ]
        self.sentinels = [
            SentinelProcess(
                self.folder,
                i,
                self.master.port,
                password=password,
                down_after_ms=down_after_ms,
                failover_timeout_ms=failover_timeout_ms,
                tls=tls,
            )
            for i in range(sentinels)
        ]

    @property
    def servers(self) -> list[RedisServer]:
        return [self.master, *self.replicas]

    def server_on(self, port: int) -> RedisServer:
        for server in self.servers:
            if server.port == port:
                return server
        raise KeyError(port)

    # -- life cycle ------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> RedisSentinelSetup:
        try:
            for server in self.servers:
                server.start()
            for sentinel in self.sentinels:
                sentinel.process.start()
            for sentinel in self.sentinels:
                sentinel.process.wait_ready(sentinel.answers, timeout)
            self.wait_settled(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.process.stop()
        for server in self.servers:
            server.stop()

    def close(self) -> None:
        """Stop every process and delete the folders (when the harness made them)."""
        self.stop()
        for server in self.servers:
            server.close()
        self._folder.remove()

    remove = close  # the name this method had first; callers still use it

    # -- state -----------------------------------------------------------------------------
    def _settled(self) -> bool:
        """Every sentinel agrees on a healthy master that sees all replicas and sentinels."""
        masters = set()
        for sentinel in self.sentinels:
            try:
                state = sentinel.master_state()
            except (RedisError, OSError):
                return False
            if not state["is_master"] or state["is_sdown"] or state["is_odown"]:
                return False
            if state["num-other-sentinels"] < len(self.sentinels) - 1:
                return False
            if state["num-slaves"] < len(self.replicas):
                return False
            if state.get("failover-state", "none") not in {"none", ""}:
                return False
            masters.add((state["ip"], state["port"]))
        if len(masters) != 1:
            return False
        with contextlib.suppress(RedisError, OSError):
            return self._replicas_online(next(iter(masters))[1])
        return False

    def _replicas_online(self, master_port: int) -> bool:
        with self.server_on(master_port).admin() as client:
            info = client.info("replication")
        online = [
            value
            for key, value in info.items()
            if key.startswith("slave")
            and isinstance(value, dict)
            and value.get("state") == "online"
        ]
        return info.get("role") == "master" and len(online) >= len(self.replicas)

    def wait_settled(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._settled():
                return
            time.sleep(0.1)
        logs = "\n".join(f"{s.process.name}: {s.process.log_path}" for s in self.sentinels)
        raise ServerStartError(f"the Sentinel setup did not settle after {timeout:g}s\n{logs}")

    def master_address(self) -> tuple[str, int]:
        state = self.sentinels[0].master_state()
        return str(state["ip"]), int(state["port"])

    def config_epoch(self) -> int:
        return int(self.sentinels[0].master_state()["config-epoch"])

    def failover(self, timeout: float = 60.0) -> tuple[int, int]:
        """Force ``SENTINEL FAILOVER``; returns (old master port, new master port) once every
        sentinel agrees on the new master and it serves writes (not waiting for the old master
        to finish resyncing as a replica)."""
        old = self.master_address()[1]
        with self.sentinels[0].client() as client:
            client.sentinel_failover(MASTER_NAME)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(RedisError, OSError):
                ports = {s.master_state()["port"] for s in self.sentinels}
                if len(ports) == 1 and old not in ports:
                    new = int(ports.pop())
                    with self.server_on(new).admin() as admin:
                        if admin.info("replication").get("role") == "master":
                            return old, new
            time.sleep(0.05)
        raise ServerStartError(f"SENTINEL FAILOVER did not complete after {timeout:g}s")

    def url(self, prefix: str = "lockyard", **params: str) -> str:
        auth = ""
        if self.password is not None:
            user = quote(self.username, safe="") if self.username else ""
            auth = f"{user}:{quote(self.password, safe='')}@"
        hosts = ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
        query = {"prefix": prefix, **params}
        if self.tls is not None:
            query.setdefault("tls_ca_file", self.tls.ca_file)
        scheme = "rediss+sentinel" if self.tls is not None else "redis+sentinel"
        return f"{scheme}://{auth}{hosts}/{MASTER_NAME}/0?{urlencode(query)}"
