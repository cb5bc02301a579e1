"""No backend password reaches the operator's log, an Event, a status or kopf's annotations;
TLS works end to end through the operator; a workload's Role opens its own binding only.

The passwords are distinctive (a random token inside characters that URL encoding changes), so
a leak is found in any form it could take: raw, URL-encoded, JSON-escaped, cut short, or inside
the base64 of a Secret's data. The search is proved to work on the binding Secret, which must
hold the current password (a workload needs it), so a clean result means no leak, not a blind
search.

Host process, not a pod: its whole log is searched from its file, and TLS files come from the
host; it needs only the control plane.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import socket
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from operator_harness import (
    Operators,
    condition,
    create_secret,
    create_store,
    eventually,
    read_secret,
    secrets_path,
    stores_path,
    update_secret,
    wait_condition,
)

import lockyard
from lockyard.backends import postgres as pg
from lockyard.config import PostgresConfig, RedisConfig, parse_url
from lockyard.errors import ConfigError
from lockyard.kube.api import KubeApi, KubeApiError, object_path
from lockyard_dev.cluster.controlplane import ControlPlane
from lockyard_dev.cluster.identities import service_account_token, token_kubeconfig
from lockyard_dev.servers.moto import MotoServer
from lockyard_dev.servers.postgres import PostgresServer
from lockyard_dev.servers.redis import RedisServer, TLSFiles, make_test_tls


class Password:
    """A password no other text contains by chance, and the forms a leak of it could take."""

    def __init__(self, label: str) -> None:
        self.token = secrets.token_hex(8)
        # Each of these characters changes under URL encoding; "%20" would change under a
        # second decoding.
        self.value = f"{label}-{self.token}-p@ss/w:rd %20?&=+#!$"

    def needles(self) -> dict[str, str]:
        """What to search for: the token (inside any text encoding) and base64 forms."""
        forms = {
            "raw": self.value,
            "url-encoded": quote(self.value, safe=""),
            "form-encoded": quote_plus(self.value),
            "token": self.token,
        }
        for offset, needle in enumerate(base64_needles(self.token.encode())):
            forms[f"token in base64 (offset {offset})"] = needle
        return forms

    def __str__(self) -> str:
        return self.value


def base64_needles(token: bytes) -> list[str]:
    """Substrings that every base64 encoding of a text containing ``token`` contains.

    Where the token starts modulo 3 decides how base64 groups its bytes: for each of the three
    offsets, keep only the characters encoding groups made of token bytes alone.
    """
    needles = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + token).decode()
        start = 4 if offset else 0
        end = len(encoded) - (4 if (offset + len(token)) % 3 else 0)
        needles.append(encoded[start:end])
    return needles


def find_leaks(sources: dict[str, str], passwords: dict[str, Password]) -> list[str]:
    found = []
    for source, text in sources.items():
        for who, password in passwords.items():
            for form, needle in password.needles().items():
                at = text.find(needle)
                if at >= 0:
                    around = text[max(0, at - 120) : at + len(needle) + 40]
                    found.append(f"{who} ({form}) in {source}: ...{around}...")
    return found


def test_the_search_finds_every_form() -> None:
    password = Password("probe")
    for text in (
        f"error: {password}",
        quote(password.value, safe=""),
        json.dumps({"message": str(password)}),
        base64.b64encode(password.value.encode()).decode(),
        base64.b64encode(f"a{password}".encode()).decode(),
        base64.b64encode(f"ab{password}".encode()).decode(),
        base64.b64encode(f"redis://:{quote(password.value)}@h".encode()).decode(),
        f"truncated ...{password.value[3:30]}",
    ):
        assert find_leaks({"text": text}, {"p": password}), text
    assert not find_leaks({"text": "nothing to see"}, {"p": password})


# -- servers -------------------------------------------------------------------------------------


@pytest.fixture
def redis_password() -> Password:
    return Password("redis")


@pytest.fixture
def postgres_password() -> Password:
    return Password("pg")


@pytest.fixture
def redis_tls(tmp_path: Path) -> TLSFiles:
    return make_test_tls(tmp_path / "redis-tls")


@pytest.fixture
def tls_redis(redis_tls: TLSFiles, redis_password: Password) -> Iterator[RedisServer]:
    """Redis over TLS only (rediss://), with this test's password (the test rotates it)."""
    with RedisServer(tls=redis_tls, password=redis_password.value) as server:
        yield server


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections, and stays ours (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture
def tls_postgres(postgres_password: Password) -> Iterator[PostgresServer]:
    """PostgreSQL with a test CA, so sslmode=verify-full has something to verify."""
    with PostgresServer(tls=True, password=postgres_password.value) as server:
        yield server


# -- the end-to-end secrecy test -----------------------------------------------------------------


async def collect(
    kube: KubeApi, namespace: str, operators: Operators, own_secrets: set[str]
) -> dict[str, str]:
    """Everything the operator wrote where others can read it, as text, by source: its logs,
    and every object in the namespace except the Secrets that must hold a password (the ones
    the test made, and the bindings)."""
    sources: dict[str, str] = {}
    for index, process in enumerate(operators.started):
        sources[f"operator log {index}"] = process.log()
    listed = {
        "Event": object_path("", "v1", "events", namespace),
        "StateStore": stores_path(namespace),
        "Role": object_path("rbac.authorization.k8s.io", "v1", "roles", namespace),
        "Lease": object_path("coordination.k8s.io", "v1", "leases", namespace),
        "ConfigMap": object_path("", "v1", "configmaps", namespace),
        "Secret": secrets_path(namespace),
    }
    for kind, path in listed.items():
        for item in (await kube.get(path)).get("items") or []:
            name = item["metadata"]["name"]
            if kind == "Secret" and (name in own_secrets or name.startswith("lockyard-store-")):
                continue
            sources[f"{kind} {name}"] = json.dumps(item)
    return sources


@pytest.mark.k8s
@pytest.mark.e2e
async def test_no_password_leaks_while_stores_fail_heal_and_rotate(
    kube: KubeApi,
    namespace: str,
    operators: Operators,
    installed: ControlPlane,
    tls_redis: RedisServer,
    redis_tls: TLSFiles,
    tls_postgres: PostgresServer,
    redis_password: Password,
    postgres_password: Password,
    closed_port: int,
    moto_server: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rotated, wrong_redis, wrong_pg = Password("rotated"), Password("wrong"), Password("wrongpg")
    sentinel, master, aws = Password("sentinel"), Password("master"), Password("aws")
    passwords = {
        "redis password (before rotation)": redis_password,
        "redis password (after rotation)": rotated,
        "postgres password": postgres_password,
        "wrong redis password": wrong_redis,
        "wrong postgres password": wrong_pg,
        "sentinel password": sentinel,
        "sentinel master password": master,
        "AWS secret access key": aws,
    }
    operators.secrets |= {p.value for p in passwords.values()}
    assert tls_postgres.ca is not None
    redis_ca = await asyncio.to_thread(Path(redis_tls.ca_file).read_text)
    pg_ca = await asyncio.to_thread(tls_postgres.ca.cert_file.read_text)
    await create_secret(kube, namespace, "redis-ca", {"ca.crt": redis_ca})
    await create_secret(kube, namespace, "pg-ca", {"ca.crt": pg_ca})
    await create_secret(kube, namespace, "redis-auth", {"password": redis_password.value})
    await create_secret(kube, namespace, "redis-wrong", {"password": wrong_redis.value})
    await create_secret(kube, namespace, "pg-auth", {"password": wrong_pg.value})
    await create_secret(kube, namespace, "pg-right", {"password": postgres_password.value})
    others = {"sentinel": sentinel.value, "master": master.value, "aws": aws.value}
    await create_secret(kube, namespace, "down-auth", others | {"key-id": "AKIDLOCKYARD"})
    # --debug: every line the operator can log is searched, not only the default ones.
    await operators.start("--debug")

    def redis_spec(secret: str) -> dict[str, Any]:
        return {
            "redis": {
                "host": "127.0.0.1",
                "port": tls_redis.port,
                "passwordSecretRef": {"name": secret, "key": "password"},
                "tls": {"enabled": True, "caSecretRef": {"name": "redis-ca", "key": "ca.crt"}},
            }
        }

    def pg_spec(secret: str) -> dict[str, Any]:
        return {
            "postgresql": {
                "host": "127.0.0.1",
                "port": tls_postgres.port,
                "user": tls_postgres.user,
                "database": tls_postgres.database,
                "passwordSecretRef": {"name": secret, "key": "password"},
                "sslmode": "verify-full",
                "sslrootcertSecretRef": {"name": "pg-ca", "key": "ca.crt"},
            }
        }

    await create_store(kube, namespace, "redis-ok", redis_spec("redis-auth"))
    await create_store(kube, namespace, "redis-bad", redis_spec("redis-wrong"))
    await create_store(kube, namespace, "pg-ok", pg_spec("pg-right"))
    await create_store(kube, namespace, "pg-fixed", pg_spec("pg-auth"))
    # Nobody answers for this one: only its error path sees the credentials.
    down = {"name": "down-auth", "key": "master"}
    await create_store(
        kube,
        namespace,
        "sentinel-down",
        {
            "redisSentinel": {
                "sentinels": [{"host": "127.0.0.1", "port": closed_port}],
                "master": "mymaster",
                "passwordSecretRef": down,
                "sentinelPasswordSecretRef": down | {"key": "sentinel"},
            },
            "operationTimeoutSeconds": 1,
        },
    )
    # moto takes any key: this one is Ready, so botocore's debug log of signed requests is
    # searched too. (Not an unreachable one: botocore logs tracebacks at debug level, which
    # the harness counts as crashes.)
    await create_store(
        kube,
        namespace,
        "dynamodb-ok",
        {
            "dynamodb": {
                "table": f"lockyard-{namespace}",
                "endpointUrl": moto_server.endpoint_url,
                "createTable": True,
                "accessKeyIdSecretRef": down | {"key": "key-id"},
                "secretAccessKeySecretRef": down | {"key": "aws"},
            }
        },
    )

    await wait_condition(kube, namespace, "redis-ok", "Ready", "True")
    await wait_condition(kube, namespace, "pg-ok", "Ready", "True")
    await wait_condition(kube, namespace, "dynamodb-ok", "Ready", "True")
    for name in ("redis-bad", "pg-fixed"):
        await wait_condition(kube, namespace, name, "Ready", "False", "AuthenticationFailed")
    await wait_condition(kube, namespace, "sentinel-down", "Ready", "False", "BackendUnreachable")

    # Rotation, the awkward order: the Secret changes before the server does, so the new
    # password is refused first (an error path holding it), then accepted.
    await update_secret(kube, namespace, "redis-auth", {"password": rotated.value})
    await wait_condition(kube, namespace, "redis-ok", "Ready", "False", "AuthenticationFailed")
    with tls_redis.admin() as admin:
        admin.config_set("requirepass", rotated.value)
    await wait_condition(kube, namespace, "redis-ok", "Ready", "True", timeout=30)
    # A Secret fixed: the other error path heals.
    await update_secret(kube, namespace, "pg-auth", {"password": postgres_password.value})
    await wait_condition(kube, namespace, "pg-fixed", "Ready", "True", timeout=30)

    async def events_posted() -> bool:
        items = (await kube.get(object_path("", "v1", "events", namespace)))["items"]
        seen = {(e["involvedObject"]["name"], e["reason"]) for e in items}
        return {
            ("redis-bad", "AuthenticationFailed"),
            ("redis-ok", "AuthenticationFailed"),
            ("redis-ok", "BackendRecovered"),
            ("pg-fixed", "AuthenticationFailed"),
            ("pg-fixed", "BackendRecovered"),
            ("sentinel-down", "BackendUnreachable"),
        } <= seen

    await eventually(events_posted, "the operator's Warning and recovery Events", timeout=20)

    # The bindings hold what a workload needs: the current password, TLS settings, the CA.
    redis_binding = await read_secret(kube, namespace, "lockyard-store-redis-ok")
    redis_config = parse_url(redis_binding["url"])
    assert isinstance(redis_config, RedisConfig)
    assert redis_binding["url"].startswith("rediss://")
    assert redis_config.password is not None
    assert redis_config.password.get_secret_value() == rotated.value
    assert redis_binding["tls_ca_file"] == redis_ca
    for name in ("pg-ok", "pg-fixed"):
        pg_binding = await read_secret(kube, namespace, f"lockyard-store-{name}")
        pg_config = parse_url(pg_binding["url"])
        assert isinstance(pg_config, PostgresConfig)
        assert pg_config.sslmode == "verify-full"
        assert pg_config.password is not None
        assert pg_config.password.get_secret_value() == postgres_password.value
        assert pg_binding["sslrootcert"] == pg_ca
    # ... and the search below would see it, had it leaked anywhere else.
    raw_binding = json.dumps(await kube.get(secrets_path(namespace, "lockyard-store-redis-ok")))
    assert find_leaks({"binding": raw_binding}, {"rotated": rotated})
    assert not find_leaks({"binding": raw_binding}, {"old": redis_password})

    # A workload opens both over TLS, the binding's CA verifying the server (and its name).
    monkeypatch.setenv("KUBECONFIG", str(installed.kubeconfig))
    monkeypatch.delenv("SERVICE_BINDING_ROOT", raising=False)
    async with await lockyard.connect_store("redis-ok", namespace) as ly:
        await ly.store.set("app:t:state:x", "over rediss")
        assert await ly.store.get("app:t:state:x") == "over rediss"
    async with await lockyard.connect_store("pg-ok", namespace) as ly:
        backend = ly._backend
        assert isinstance(backend, pg.PostgresBackend)
        query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        assert await backend.pool.fetchval(query) is True
        await ly.store.set("app:t:state:x", "over verify-full")
        assert await ly.store.get("app:t:state:x") == "over verify-full"

    # Stopped first, so the log includes shutting down (connections closed, tasks cancelled).
    assert all(p.running for p in operators.started), "the operator crashed"
    await asyncio.to_thread(operators.stop_all)
    own = {"redis-ca", "pg-ca", "redis-auth", "redis-wrong", "pg-auth", "pg-right", "down-auth"}
    sources = await collect(kube, namespace, operators, own)
    leaks = find_leaks(sources, passwords)
    assert not leaks, "\n".join(leaks)
    # Not a vacuous pass: the operator did log about the failures, and kopf's marks (its
    # diff base, and the progress annotation that carries a failing handler's message) were
    # among the texts searched.
    log = sources["operator log 0"]
    assert "AuthenticationFailed" in log
    assert "redis-bad" in log
    assert sum(source.startswith("Event ") for source in sources) >= 5
    healthy = json.loads(sources["StateStore pg-ok"])
    assert "lockyard.dev/last-handled-configuration" in healthy["metadata"]["annotations"]
    failing = json.loads(sources["StateStore redis-bad"])
    assert "authentication failed" in failing["metadata"]["annotations"]["lockyard.dev/reconcile"]
    assert condition(failing, "Ready")["reason"] == "AuthenticationFailed"
    # Every call the operator made was allowed (kopf logs a refused Event in lower case).
    refused = [
        line
        for line in log.splitlines()
        if "forbidden" in line.lower() or "Failed to post an event" in line
    ]
    assert not refused, refused


# -- the per-store Role ------------------------------------------------------------------------


@pytest.mark.k8s
@pytest.mark.e2e
async def test_a_workload_reads_its_own_binding_only(
    kube: KubeApi,
    namespace: str,
    operators: Operators,
    installed: ControlPlane,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await operators.start()
    for name in ("alpha", "beta"):
        await create_store(kube, namespace, name, {"memory": {}})
    for name in ("alpha", "beta"):
        await wait_condition(kube, namespace, name, "Ready", "True")
    await create_secret(kube, namespace, "unrelated", {"password": "not for workloads"})

    async def workload(account: str, store: str | None) -> Path:
        await kube.create(
            object_path("", "v1", "serviceaccounts", namespace),
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
        )
        if store is not None:
            await kube.create(
                object_path("rbac.authorization.k8s.io", "v1", "rolebindings", namespace),
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "RoleBinding",
                    "metadata": {"name": f"{account}-uses-{store}"},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "Role",
                        "name": f"lockyard-store-{store}",
                    },
                    "subjects": [
                        {"kind": "ServiceAccount", "name": account, "namespace": namespace}
                    ],
                },
            )
        token = await asyncio.to_thread(service_account_token, installed, namespace, account)
        return token_kubeconfig(tmp_path / account, installed, account, token, namespace)

    configs = {
        "app-alpha": await workload("app-alpha", "alpha"),
        "app-beta": await workload("app-beta", "beta"),
        "app-none": await workload("app-none", None),
    }

    async def status_of(kubeconfig: Path, path: str) -> int:
        async with await KubeApi.connect(str(kubeconfig)) as api:
            try:
                await api.get(path)
            except KubeApiError as exc:
                return exc.status
            return 200

    def binding(store: str) -> str:
        return secrets_path(namespace, f"lockyard-store-{store}")

    async def allowed(account: str) -> dict[str, int]:
        config = configs[account]
        return {
            "binding alpha": await status_of(config, binding("alpha")),
            "binding beta": await status_of(config, binding("beta")),
            "store alpha": await status_of(config, stores_path(namespace, "alpha")),
            "store beta": await status_of(config, stores_path(namespace, "beta")),
            "other secret": await status_of(config, secrets_path(namespace, "unrelated")),
            "list secrets": await status_of(config, secrets_path(namespace)),
            "list stores": await status_of(config, stores_path(namespace)),
        }

    denied = dict.fromkeys(await allowed("app-none"), 403)
    expected = {
        "app-alpha": denied | {"binding alpha": 200, "store alpha": 200},
        "app-beta": denied | {"binding beta": 200, "store beta": 200},
        "app-none": denied,
    }

    async def answers_are(account: str, answers: dict[str, int]) -> bool:
        return await allowed(account) == answers

    for account, answers in expected.items():
        # A new RoleBinding reaches the API server's authorizer through a watch: poll briefly.
        await eventually(partial(answers_are, account, answers), f"{account}: {answers}", 10)

    # connect_store says the same, in the workload's terms.
    monkeypatch.delenv("SERVICE_BINDING_ROOT", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(configs["app-alpha"]))
    async with await lockyard.connect_store("alpha") as ly:
        assert ly.prefix == f"{namespace}.alpha"
    with pytest.raises(ConfigError, match="not allowed to read StateStore"):
        await lockyard.connect_store("beta")
    monkeypatch.setenv("KUBECONFIG", str(configs["app-none"]))
    with pytest.raises(ConfigError, match="lockyard-store-alpha"):
        await lockyard.connect_store("alpha")
