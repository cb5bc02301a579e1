"""Ready means a new workload can connect: credentials changed on the backend side turn a store
not Ready within two probe intervals, with a Warning Event and a specific reason, although the
operator's own connection (authenticated earlier) goes on working; fixing the Secret or the
backend makes it Ready again within one probe interval, with a Normal Event.

The operator runs as its own process under its ServiceAccount; every backend is a real server.
DynamoDB runs on moto with its IAM checks switched on (``/moto-api/reset-auth``), so moto
refuses unknown access keys, wrong signatures and actions no policy allows, as AWS does.

Host process, not a pod: credentials change on five real backends (moto's IAM included) at
chosen moments, which needs only the control plane, no node.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import boto3
import pytest
from operator_harness import (
    PROBE_S,
    Operators,
    condition,
    create_secret,
    create_store,
    events_for,
    eventually,
    update_secret,
    wait_condition,
)
from redis import Redis

from lockyard.kube.api import KubeApi
from lockyard_dev.servers.moto import MotoServer
from lockyard_dev.servers.postgres import PostgresServer
from lockyard_dev.servers.redis import (
    LOCKYARD_ACL,
    RedisSentinelSetup,
    RedisServer,
    make_test_tls,
)
from lockyard_dev.servers.tls import CertificateAuthority, run_openssl

pytestmark = [pytest.mark.k8s, pytest.mark.e2e, pytest.mark.slow]

#: What a loaded machine needs beyond the probe intervals to run a probe, write the status and
#: let the test see it (as in test_outage.py).
SLACK_S = 4.0
#: A change on the backend side must show within two probe intervals...
NOTICE_S = 2 * PROBE_S + SLACK_S
#: ... and a fix within one.
HEAL_S = PROBE_S + SLACK_S

Action = Callable[[], Awaitable[None]]


@dataclass
class Store:
    """One StateStore of a test, and the steps that change what it sees."""

    kube: KubeApi
    namespace: str
    name: str

    async def events(self, type_: str, reason: str) -> int:
        found = await events_for(self.kube, self.namespace, self.name)
        return sum(1 for e in found if (e.get("type"), e.get("reason")) == (type_, reason))

    async def breaks(self, action: Action, reason: str) -> float:
        """Run ``action``; BackendReachable and Ready turn False with ``reason`` within
        ``NOTICE_S``, and a Warning Event of that reason is posted. The time it took."""
        return await self._expect(action, False, reason, ("Warning", reason), NOTICE_S)

    async def heals(self, action: Action) -> float:
        """Run ``action``; the store is Ready within ``HEAL_S``, with a BackendRecovered Event."""
        return await self._expect(action, True, None, ("Normal", "BackendRecovered"), HEAL_S)

    async def _expect(
        self,
        action: Action,
        ready: bool,
        reason: str | None,
        event: tuple[str, str],
        within: float,
    ) -> float:
        before = await self.events(*event)
        started = time.monotonic()
        await action()
        status = "True" if ready else "False"
        store = await wait_condition(
            self.kube, self.namespace, self.name, "BackendReachable", status, reason, within + 10
        )
        took = time.monotonic() - started
        print(f"{self.name}: BackendReachable={status} {reason or ''} after {took:.2f}s")
        assert took < within, f"{self.name}: {took:.2f}s, more than {within:.0f}s"
        if not ready:
            assert condition(store, "Ready")["status"] == "False"
            assert condition(store, "Ready")["reason"] == reason
        else:
            await wait_condition(self.kube, self.namespace, self.name, "Ready", "True", None, 10)

        async def posted() -> bool:
            return await self.events(*event) > before

        await eventually(posted, f"a {event[0]} {event[1]} Event about {self.name}", timeout=10)
        return took


async def ready_store(
    kube: KubeApi, namespace: str, name: str, spec: dict[str, Any], secret: dict[str, str]
) -> Store:
    await create_secret(kube, namespace, f"{name}-auth", secret)
    await create_store(kube, namespace, name, spec)
    await wait_condition(kube, namespace, name, "Ready", "True", timeout=60)
    return Store(kube, namespace, name)


def ref(name: str, key: str = "password") -> dict[str, str]:
    return {"name": f"{name}-auth", "key": key}


# -- Redis -------------------------------------------------------------------------------------


async def test_redis_password_changed_and_user_removed_on_the_server(
    kube: KubeApi, namespace: str, operators: Operators
) -> None:
    old, new, user_password = "redis-old-6d1f", "redis-new-0a9c", "redis-app-3e5b"
    operators.secrets |= {old, new, user_password}
    with RedisServer(password=old) as server:
        with server.admin() as admin:
            admin.execute_command("ACL", "SETUSER", "app", "on", f">{user_password}",
                                  *LOCKYARD_ACL.split())  # fmt: skip
        await operators.start()
        where = {"host": "127.0.0.1", "port": server.port}
        by_password = await ready_store(
            kube,
            namespace,
            "by-password",
            {"redis": {**where, "passwordSecretRef": ref("by-password")}},
            {"password": old},
        )
        by_user = await ready_store(
            kube,
            namespace,
            "by-user",
            {"redis": {**where, "username": "app", "passwordSecretRef": ref("by-user")}},
            {"password": user_password},
        )

        async def change_password() -> None:
            with server.admin() as admin:
                admin.config_set("requirepass", new)

        await by_password.breaks(change_password, "AuthenticationFailed")
        await by_password.heals(
            lambda: update_secret(kube, namespace, "by-password-auth", {"password": new})
        )

        async def remove_user() -> None:
            with server.admin(password=new) as admin:
                admin.acl_deluser("app")

        async def restore_user() -> None:
            with server.admin(password=new) as admin:
                admin.execute_command("ACL", "SETUSER", "app", "on", f">{user_password}",
                                      *LOCKYARD_ACL.split())  # fmt: skip

        await by_user.breaks(remove_user, "AuthenticationFailed")
        await by_user.heals(restore_user)
        for store in ("by-password", "by-user"):
            await wait_condition(kube, namespace, store, "Ready", "True", timeout=10)


def expired_server_certificate(ca: CertificateAuthority, folder: Path) -> tuple[str, str]:
    """A certificate for 127.0.0.1 signed by ``ca`` that expired in 2020 (``openssl ca``, the
    one openssl 3.0 command that takes explicit validity dates)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.txt").write_text("")
    (folder / "serial").write_text("01\n")
    (folder / "ca.cnf").write_text(
        "[ca]\ndefault_ca = test\n"
        "[test]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\n"
        "default_md = sha256\npolicy = any\nunique_subject = no\n"
        "[any]\ncommonName = supplied\n"
        "[server]\nbasicConstraints = critical,CA:FALSE\n"
        "keyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = serverAuth\n"
        "subjectAltName = IP:127.0.0.1,DNS:localhost\n"
    )
    run_openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "expired.key", "-out", "expired.csr", "-subj", "/CN=127.0.0.1",
        cwd=folder,
    )  # fmt: skip
    run_openssl(
        "ca", "-batch", "-config", "ca.cnf", "-cert", str(ca.cert_file),
        "-keyfile", str(ca.key_file), "-in", "expired.csr", "-out", "expired.crt",
        "-startdate", "20200101000000Z", "-enddate", "20200102000000Z",
        "-extensions", "server", "-notext",
        cwd=folder,
    )  # fmt: skip
    return str(folder / "expired.crt"), str(folder / "expired.key")


async def test_redis_tls_certificate_expired_or_replaced(
    kube: KubeApi, namespace: str, operators: Operators, tmp_path: Path
) -> None:
    first, second = make_test_tls(tmp_path / "first"), make_test_tls(tmp_path / "second")
    first_ca = CertificateAuthority(Path(first.ca_file), Path(first.ca_file).with_suffix(".key"))
    expired = expired_server_certificate(first_ca, tmp_path / "expired")
    with RedisServer(tls=first) as server:
        await operators.start()
        ca = await asyncio.to_thread(Path(first.ca_file).read_text)
        store = await ready_store(
            kube,
            namespace,
            "tls",
            {
                "redis": {
                    "host": "127.0.0.1",
                    "port": server.port,
                    "tls": {"enabled": True, "caSecretRef": ref("tls", "ca.crt")},
                }
            },
            {"ca.crt": ca},
        )

        def serve(cert: str, key: str) -> Action:
            async def swap() -> None:
                # Unverified: the admin connection must work whatever the server presents.
                with server.admin(ssl_cert_reqs="none", ssl_check_hostname=False) as admin:
                    admin.execute_command(
                        "CONFIG", "SET", "tls-cert-file", cert, "tls-key-file", key
                    )

            return swap

        await store.breaks(serve(*expired), "TLSFailed")
        await store.heals(serve(first.cert_file, first.key_file))
        await store.breaks(serve(second.cert_file, second.key_file), "TLSFailed")
        new_ca = await asyncio.to_thread(Path(second.ca_file).read_text)
        await store.heals(lambda: update_secret(kube, namespace, "tls-auth", {"ca.crt": new_ca}))


async def test_sentinel_master_user_removed(
    kube: KubeApi, namespace: str, operators: Operators, sentinel_setup: RedisSentinelSetup
) -> None:
    password = "sentinel-app-8c4d"
    operators.secrets.add(password)

    def on_every_server(*command: str) -> None:
        for server in sentinel_setup.servers:
            with server.admin() as admin:
                admin.execute_command(*command)

    def master() -> Redis:
        _, port = sentinel_setup.master_address()
        return sentinel_setup.server_on(port).admin()

    acl = ("ACL", "SETUSER", "app", "on", f">{password}", *LOCKYARD_ACL.split())
    on_every_server(*acl)
    try:
        await operators.start()
        spec = {
            "redisSentinel": {
                "sentinels": [
                    {"host": "127.0.0.1", "port": s.port} for s in sentinel_setup.sentinels
                ],
                "master": "lockyard",
                "username": "app",
                "passwordSecretRef": ref("sentinel"),
            }
        }
        store = await ready_store(kube, namespace, "sentinel", spec, {"password": password})

        async def remove_user() -> None:
            with master() as admin:
                admin.acl_deluser("app")

        async def restore_user() -> None:
            with master() as admin:
                admin.execute_command(*acl)

        await store.breaks(remove_user, "AuthenticationFailed")
        await store.heals(restore_user)
    finally:
        on_every_server("ACL", "DELUSER", "app")


# -- PostgreSQL --------------------------------------------------------------------------------


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A server this test may change roles and pg_hba.conf of."""
    with PostgresServer(password="pg-admin-2b7e") as server:
        yield server


async def test_postgres_password_login_and_pg_hba_changes(
    kube: KubeApi, namespace: str, operators: Operators, own_postgres: PostgresServer
) -> None:
    old, new = "pg-app-old-4f1a", "pg-app-new-93cd"
    operators.secrets |= {old, new, own_postgres.password}

    async def admin(*statements: str) -> None:
        connection = await asyncpg.connect(own_postgres.dsn())
        try:
            for statement in statements:
                await connection.execute(statement)
        finally:
            await connection.close()

    await admin(
        f"CREATE ROLE app LOGIN PASSWORD '{old}'", "GRANT CREATE ON DATABASE postgres TO app"
    )
    await operators.start()
    spec = {
        "postgresql": {
            "host": "127.0.0.1",
            "port": own_postgres.port,
            "user": "app",
            "database": own_postgres.database,
            "passwordSecretRef": ref("pg"),
        }
    }
    store = await ready_store(kube, namespace, "pg", spec, {"password": old})

    await store.breaks(lambda: admin(f"ALTER ROLE app PASSWORD '{new}'"), "AuthenticationFailed")
    await store.heals(lambda: update_secret(kube, namespace, "pg-auth", {"password": new}))
    await store.breaks(lambda: admin("ALTER ROLE app NOLOGIN"), "AuthenticationFailed")
    await store.heals(lambda: admin("ALTER ROLE app LOGIN"))

    hba = own_postgres.data_dir / "pg_hba.conf"
    original = await asyncio.to_thread(hba.read_text)

    async def hba_rules(text: str) -> None:
        await asyncio.to_thread(hba.write_text, text)
        await admin("SELECT pg_reload_conf()")

    await store.breaks(
        lambda: hba_rules("host all app 127.0.0.1/32 reject\n" + original), "AuthenticationFailed"
    )
    await store.heals(lambda: hba_rules(original))


# -- DynamoDB ----------------------------------------------------------------------------------


@dataclass
class IamMoto:
    """A moto server checking signatures and IAM policies, an admin IAM client, and the
    access key of the user ``app`` whose policy allows DynamoDB."""

    server: MotoServer
    iam: Any
    key_id: str
    secret: str


APP_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"}],
    }
)


@pytest.fixture
def iam_moto() -> Iterator[IamMoto]:
    with MotoServer() as server:
        anyone = {
            "endpoint_url": server.endpoint_url,
            "region_name": "us-east-1",
            "aws_access_key_id": "bootstrap",
            "aws_secret_access_key": "bootstrap",
        }
        iam = boto3.client("iam", **anyone)
        everything = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        )
        iam.create_user(UserName="admin")
        iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=everything)
        admin_key = iam.create_access_key(UserName="admin")["AccessKey"]
        iam.create_user(UserName="app")
        iam.put_user_policy(UserName="app", PolicyName="dynamodb", PolicyDocument=APP_POLICY)
        app_key = iam.create_access_key(UserName="app")["AccessKey"]
        # From the next request on, every call must be signed by a known key and allowed.
        request = urllib.request.Request(
            f"{server.endpoint_url}/moto-api/reset-auth",
            data=b"0",
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
        admin_iam = boto3.client(
            "iam",
            **{
                **anyone,
                "aws_access_key_id": admin_key["AccessKeyId"],
                "aws_secret_access_key": admin_key["SecretAccessKey"],
            },
        )
        try:
            yield IamMoto(server, admin_iam, app_key["AccessKeyId"], app_key["SecretAccessKey"])
        finally:
            admin_iam.close()
            iam.close()


async def test_dynamodb_policy_and_access_key_changes(
    kube: KubeApi, namespace: str, operators: Operators, iam_moto: IamMoto
) -> None:
    operators.secrets.add(iam_moto.secret)
    await operators.start()
    spec = {
        "dynamodb": {
            "table": "lockyard-fresh-login",
            "endpointUrl": iam_moto.server.endpoint_url,
            "createTable": True,
            "accessKeyIdSecretRef": ref("ddb", "key-id"),
            "secretAccessKeySecretRef": ref("ddb"),
        }
    }
    store = await ready_store(
        kube, namespace, "ddb", spec, {"key-id": iam_moto.key_id, "password": iam_moto.secret}
    )
    iam = iam_moto.iam

    async def call(method: str, **kwargs: str) -> Any:
        return await asyncio.to_thread(getattr(iam, method), **kwargs)

    async def drop_policy() -> None:
        await call("delete_user_policy", UserName="app", PolicyName="dynamodb")

    async def restore_policy() -> None:
        await call("put_user_policy", UserName="app", PolicyName="dynamodb",
                   PolicyDocument=APP_POLICY)  # fmt: skip

    await store.breaks(drop_policy, "AuthenticationFailed")
    await store.heals(restore_policy)

    async def delete_key() -> None:
        await call("delete_access_key", UserName="app", AccessKeyId=iam_moto.key_id)

    await store.breaks(delete_key, "AuthenticationFailed")
    fresh = (await call("create_access_key", UserName="app"))["AccessKey"]
    operators.secrets.add(fresh["SecretAccessKey"])
    await store.heals(
        lambda: update_secret(
            kube,
            namespace,
            "ddb-auth",
            {"key-id": fresh["AccessKeyId"], "password": fresh["SecretAccessKey"]},
        )
    )
