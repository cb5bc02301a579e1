"""Bad input: random StateStore specs and malformed Secrets never crash the operator or make it
spin, and each gets an answer that says what is wrong.

- Random specs (hypothesis, one operator for all examples): the API server rejects a spec with
  a message naming the field, or accepts it and the operator reports a ``Ready`` condition for
  that generation; a spec the model rejects is ``InvalidSpec``; a missing Secret or key is
  ``SecretNotFound`` and a key that is not text ``InvalidSpec``, naming the Secret and key.
  Afterwards, over a quiet window, no store is written or evented about more often than kopf's
  exponential retry backoff allows (the status is only written when it changes), and the
  operator uses a fraction of a core.
- Malformed Secrets (missing, without the key, empty, not UTF-8, control characters, a file
  that is not PEM): each store's condition names the key of the Secret at fault.

Host process, not a pod: hypothesis drives hundreds of specs through one operator whose CPU
is read from its pid; it needs only the control plane.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import math
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from operator_harness import (
    Operators,
    condition,
    create_raw_secret,
    create_secret,
    create_store,
    wait_condition,
)
from pydantic import ValidationError

from lockyard.config.resource import API_GROUP, API_VERSION, PLURAL, StateStoreSpec
from lockyard.kube.api import KubeApi
from lockyard.kube.binding import FILE_PARAMS
from lockyard_dev.servers.postgres import PostgresServer
from lockyard_dev.servers.redis import RedisServer, make_test_tls
from lockyard_operator import reasons

pytestmark = [pytest.mark.k8s, pytest.mark.e2e, pytest.mark.slow]

#: Secrets the random specs refer to (see ``random_secrets``); "missing" is never created.
SECRET_NAMES = ["good", "binary", "empty", "ctrl", "missing"]
KEYS = ["password", "ca.crt", "key-id", "absent"]
#: The only key holding PEM (a CA certificate); as a client file, any other is not PEM.
PEM_KEY = ("good", "ca.crt")
#: How an accepted, model-valid spec may fail once its Secrets are read.
BACKEND_REASONS = {
    reasons.BACKEND_UNREACHABLE,
    reasons.AUTHENTICATION_FAILED,
    reasons.TLS_FAILED,
    reasons.BACKEND_REFUSED,
    reasons.INVALID_SPEC,
}
#: Examples per run: each accepted one is a StateStore the operator must answer (2 cores).
EXAMPLES = 40
#: The quiet window over which the operator must not spin, in seconds.
WINDOW_S = 12


@pytest.fixture
def random_secrets(tmp_path: Path) -> dict[str, dict[str, bytes]]:
    """Values as bytes: some are not text, and only one is a PEM file."""
    ca = Path(make_test_tls(tmp_path / "tls").ca_file).read_bytes()
    return {
        "good": {"password": b"good-password", "key-id": b"AKIDGOOD", "ca.crt": ca},
        "binary": {"password": b"\xff\xfe\x00junk", "ca.crt": b"\x80\x81\x82"},
        "empty": {},
        "ctrl": {
            "password": "\x00\x07 ctrl \u202e".encode(),
            "ca.crt": b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        },
    }


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections, and stays ours (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


# -- strategies ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
texts = st.text(max_size=10)


def names(pattern: str) -> st.SearchStrategy[str]:
    return st.from_regex(pattern, fullmatch=True)


refs = st.fixed_dictionaries({"name": st.sampled_from(SECRET_NAMES), "key": st.sampled_from(KEYS)})
hosts = st.sampled_from(["127.0.0.1", "localhost", "::1", "no-such-host.invalid"]) | names(
    r"[A-Za-z0-9._:\[\]-]{1,12}"
)
pool_sizes = st.integers(1, 1024)


def redis_options() -> dict[str, st.SearchStrategy[Any]]:
    tls = st.fixed_dictionaries(
        {},
        optional={
            "enabled": st.booleans(),
            "verify": st.booleans(),
            "caSecretRef": refs,
            "certSecretRef": refs,
            "keySecretRef": refs,
        },
    )
    return {
        "db": st.integers(0, 15),
        "username": texts,
        "passwordSecretRef": refs,
        "tls": tls,
        "poolSize": pool_sizes,
        "waitReplicas": st.integers(0, 16),
    }


def sections(closed: int) -> dict[str, st.SearchStrategy[dict[str, Any]]]:
    """Each backend section with values the schema accepts (and the operator must handle)."""
    address = {"host": hosts, "port": st.just(closed)}
    return {
        "memory": st.just({}),
        "redis": st.fixed_dictionaries(address, optional=redis_options()),
        "redisSentinel": st.fixed_dictionaries(
            {
                "sentinels": st.lists(st.fixed_dictionaries(address), min_size=1, max_size=3),
                "master": st.text(min_size=1, max_size=10),
            },
            optional={
                **redis_options(),
                "sentinelUsername": texts,
                "sentinelPasswordSecretRef": refs,
            },
        ),
        "postgresql": st.fixed_dictionaries(
            address,
            optional={
                "user": st.text(min_size=1, max_size=63),
                "database": st.text(min_size=1, max_size=63),
                "schemaName": names(r"[a-z_][a-z0-9_]{0,8}"),
                "sslmode": st.sampled_from(
                    ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
                ),
                "sslrootcertSecretRef": refs,
                "sslcertSecretRef": refs,
                "sslkeySecretRef": refs,
                "passwordSecretRef": refs,
                "poolSize": pool_sizes,
                "migrate": st.booleans(),
            },
        ),
        "dynamodb": st.fixed_dictionaries(
            {
                "table": names(r"[A-Za-z0-9_.-]{3,12}"),
                # Any text passes the schema; only a URL gets as far as connecting.
                "endpointUrl": st.just(f"http://127.0.0.1:{closed}") | texts,
            },
            optional={
                "region": st.text(min_size=1, max_size=64),
                "createTable": st.booleans(),
                "accessKeyIdSecretRef": refs,
                "secretAccessKeySecretRef": refs,
                "poolSize": pool_sizes,
            },
        ),
    }


COMMON = {
    "prefix": names(r"[A-Za-z0-9][A-Za-z0-9._-]{0,10}"),
    "operationTimeoutSeconds": st.floats(min_value=0.2, max_value=3),
    "probeIntervalSeconds": st.integers(1, 4),
    "deletionPolicy": st.sampled_from(["Retain", "Delete"]),
    "locks": st.fixed_dictionaries(
        {},
        optional={
            "defaultTtlSeconds": st.floats(min_value=0.1, max_value=86400),
            "leaseMirroring": st.booleans(),
        },
    ),
}
#: Values the schema must refuse, by field (in a backend section, or at the top).
BAD_VALUES: dict[str, list[Any]] = {
    "host": ["", "bad host!", "x" * 254],
    "port": [0, 70000, "7", 2.5],
    "db": [-1, 16],
    "poolSize": [0, 1025, "16"],
    "waitReplicas": [-1, 17],
    "passwordSecretRef": [{"name": "Not_A_Name", "key": "k"}, {"name": "auth"}, "auth"],
    "tls": [{"enabled": "on"}, {"caSecretRef": {"key": "ca.crt"}}],
    "master": [""],
    "sentinels": [[], [{"port": 1}], "h:1"],
    "user": ["", "u" * 64],
    "database": [""],
    "schemaName": ["Bad-Name", "1st"],
    "sslmode": ["sometimes", True],
    "migrate": ["yes"],
    "table": ["ab", ""],
    "region": [""],
    "prefix": ["has space", "-dash", "p" * 129],
    "operationTimeoutSeconds": [0, -1, 301, "5"],
    "probeIntervalSeconds": [0, 3601, 2.5],
    "deletionPolicy": ["Forget", "delete"],
    "locks": [{"defaultTtlSeconds": 0}, {"leaseMirroring": "true"}, []],
}


def specs(closed: int) -> st.SearchStrategy[dict[str, Any]]:
    """StateStore specs: valid ones, valid ones with one thing wrong, and anything at all."""
    by_member = sections(closed)

    @st.composite
    def valid(draw: st.DrawFn) -> dict[str, Any]:
        member = draw(st.sampled_from(sorted(by_member)))
        spec: dict[str, Any] = {member: draw(by_member[member])}
        return spec | draw(st.fixed_dictionaries({}, optional=COMMON))

    @st.composite
    def one_wrong(draw: st.DrawFn) -> dict[str, Any]:
        spec = draw(valid())
        (member,) = (m for m in by_member if m in spec)
        how = draw(st.sampled_from(["bad value", "second backend", "unknown field", "no object"]))
        if how == "bad value":
            where = spec if member == "memory" else draw(st.sampled_from([spec, spec[member]]))
            fields = [f for f in BAD_VALUES if f in where or (f in COMMON and where is spec)]
            fields = fields or sorted(COMMON)
            field = draw(st.sampled_from(sorted(fields)))
            where[field] = draw(st.sampled_from(BAD_VALUES[field]))
        elif how == "second backend":
            other = draw(st.sampled_from(sorted(set(by_member) - {member})))
            spec[other] = draw(by_member[other])
        elif how == "unknown field":
            where = draw(st.sampled_from([spec, spec[member]]))
            where[draw(st.sampled_from(["password", "size", "Host", ""]) | texts)] = draw(
                json_values
            )
        else:
            spec[member] = draw(json_values.filter(lambda v: not isinstance(v, dict)))
        return spec

    anything = st.dictionaries(texts, json_values, max_size=4)
    return st.one_of(valid(), one_wrong(), anything)


# -- what the operator should say ----------------------------------------------------------


def secret_verdict(
    spec: StateStoreSpec, secrets: dict[str, dict[str, bytes]]
) -> tuple[str, str] | None:
    """The first problem with the spec's Secrets, in the operator's order, if any: every key
    is read first, then client files are checked."""
    for _, ref in spec.secret_refs():
        data = secrets.get(ref.name)
        if data is None:
            return reasons.SECRET_NOT_FOUND, f'Secret "{ref.name}" not found'
        if ref.key not in data:
            return reasons.SECRET_NOT_FOUND, f'key "{ref.key}" not found in Secret "{ref.name}"'
        try:
            data[ref.key].decode()
        except UnicodeDecodeError:
            return reasons.INVALID_SPEC, f'key "{ref.key}" of Secret "{ref.name}" is not UTF-8'
    for field, ref in spec.secret_refs():
        if field in FILE_PARAMS and (ref.name, ref.key) != PEM_KEY:
            return reasons.INVALID_SPEC, f'key "{ref.key}" of Secret "{ref.name}" is not a PEM'
    return None


def ready_for(store: dict[str, Any] | None) -> dict[str, Any] | None:
    """The Ready condition, once it describes the store's current generation."""
    found = condition(store, reasons.READY)
    generation = (store or {}).get("metadata", {}).get("generation")
    if found and found.get("observedGeneration") == generation:
        return found
    return None


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime: fields 14 and 15 of stat(5), counted from the state field (3).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the property ----------------------------------------------------------------------------


async def test_random_specs_are_rejected_or_answered_and_never_spin(
    kube: KubeApi,
    namespace: str,
    operators: Operators,
    k8s_api: client.ApiClient,
    closed_port: int,
    random_secrets: dict[str, dict[str, bytes]],
) -> None:
    for name, data in random_secrets.items():
        await create_raw_secret(kube, namespace, name, data)
    operator = await operators.start()
    # The official client is typed loosely; so is this boundary.
    custom: Any = client.CustomObjectsApi(k8s_api)
    counter = itertools.count()
    accepted: dict[str, dict[str, Any]] = {}
    rejected: list[str] = []
    model_rejected: list[str] = []
    answers: collections.Counter[str] = collections.Counter()

    def get(name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = custom.get_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return found

    def admit(body: dict[str, Any]) -> dict[str, Any] | ApiException:
        try:
            # Strict, as kubectl: an unknown field is an error, not silently dropped.
            created: dict[str, Any] = custom.create_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURAL, body, field_validation="Strict"
            )
        except ApiException as exc:
            return exc
        return created

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(spec=specs(closed_port))
    @example(spec={"memory": {}, "probeIntervalSeconds": 1})
    @example(spec={"redis": {"host": "127.0.0.1", "port": closed_port}})
    @example(
        spec={
            "redis": {
                "port": closed_port,
                "passwordSecretRef": {"name": "binary", "key": "password"},
            }
        }
    )
    @example(
        spec={
            "postgresql": {
                "port": closed_port,
                "passwordSecretRef": {"name": "empty", "key": "password"},
            }
        }
    )
    @example(spec={"dynamodb": {"table": "t-1", "endpointUrl": "no url"}})
    @example(spec={"memory": {}, "redis": {}})
    @example(spec={"redis": {"port": 70000}})
    def check(spec: dict[str, Any]) -> None:
        name = f"r{next(counter)}"
        body = {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": "StateStore",
            "metadata": {"name": name},
            "spec": spec,
        }
        created = admit(body)
        if isinstance(created, ApiException):
            assert created.status in (400, 422), (created.status, created.body)
            message = json.loads(created.body or "{}").get("message", "")
            assert "spec" in message, message
            rejected.append(message)
            return
        accepted[name] = created
        try:
            parsed: StateStoreSpec | None = StateStoreSpec.model_validate(created["spec"])
        except ValidationError:
            parsed = None
        deadline = time.monotonic() + 60
        while (ready := ready_for(get(name))) is None:
            assert operator.running, "the operator exited"
            assert time.monotonic() < deadline, f"no Ready condition for {created['spec']}"
            time.sleep(0.1)
        answers[ready["reason"]] += 1
        print(f"{name}: {ready['reason']}: {ready['message'][:160]}")
        what = f"{created['spec']} -> {ready}"
        if parsed is None:
            model_rejected.append(name)
            assert (ready["status"], ready["reason"]) == ("False", reasons.INVALID_SPEC), what
            assert ready["message"].startswith("invalid spec: "), what
            return
        verdict = secret_verdict(parsed, random_secrets)
        if verdict is not None:
            assert (ready["status"], ready["reason"]) == ("False", verdict[0]), what
            assert verdict[1] in ready["message"], what
        elif parsed.member == "memory":
            assert ready["status"] == "True", what
        else:
            assert ready["status"] == "False", what
            assert ready["reason"] in BACKEND_REASONS, what

    started = time.monotonic()
    await asyncio.to_thread(check)
    print(
        f"\n{len(accepted)} accepted, {len(rejected)} rejected in "
        f"{time.monotonic() - started:.0f}s ({len(model_rejected)} of them refused by the "
        f"model only); answers: {dict(answers)}"
    )
    assert len(accepted) >= 5, "the examples include accepted specs"
    assert len(rejected) >= 3, "the examples include rejected specs"

    # A quiet window: nothing changes, so the operator should write and say next to nothing.
    def changes_and_cpu() -> tuple[collections.Counter[str], float]:
        listed = custom.list_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL)
        modified: collections.Counter[str] = collections.Counter()
        cpu = cpu_seconds(operator.pid)
        watcher: Any = watch.Watch
        stream = watcher().stream(
            custom.list_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            namespace,
            PLURAL,
            resource_version=listed["metadata"]["resourceVersion"],
            timeout_seconds=WINDOW_S,
        )
        for event in stream:
            modified[event["object"]["metadata"]["name"]] += 1
        return modified, cpu_seconds(operator.pid) - cpu

    core: Any = client.CoreV1Api(k8s_api)
    listed_events = await asyncio.to_thread(core.list_namespaced_event, namespace)
    events_before = {e.metadata.name for e in listed_events.items}
    window_start = time.monotonic()
    modified, cpu = await asyncio.to_thread(changes_and_cpu)
    window = time.monotonic() - window_start
    new_events = collections.Counter(
        e.involved_object.name
        for e in (await asyncio.to_thread(core.list_namespaced_event, namespace)).items
        if e.metadata.name not in events_before
    )
    print(
        f"quiet window {window:.1f}s: operator CPU {cpu:.2f}s; writes {dict(modified)}; "
        f"events {dict(new_events)}"
    )
    for name, created in accepted.items():
        # Nothing changes, so the status is not written (but for the latency, once a minute)
        # and no Event is posted. What remains are kopf's retries of a failed store, backing
        # off exponentially from the probe interval, each writing the object twice (its
        # progress annotation, then a touch that wakes kopf when the delay is over). A hot
        # loop, or a store rewritten on every probe at 1 s, would exceed this.
        probe = created["spec"]["probeIntervalSeconds"]
        retries = math.ceil(math.log2(1 + window / probe)) + 1
        allowed = 2 * retries + 2
        assert modified[name] <= allowed, f"{name} written {modified[name]}x: {created['spec']}"
        assert new_events[name] <= allowed, f"{name}: {new_events[name]} Events"
    assert cpu < 0.5 * window, f"the operator used {cpu:.1f}s of CPU in {window:.1f}s"
    assert operator.running
    assert await asyncio.to_thread(operator.healthy)


# -- malformed Secrets -----------------------------------------------------------------------


async def test_malformed_secrets_get_a_condition_naming_the_key(
    kube: KubeApi,
    namespace: str,
    operators: Operators,
    redis_server: RedisServer,
    postgres_server: PostgresServer,
) -> None:
    junk_pem = b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n"
    raw = {
        "bag": {"other": b"x"},
        "empty": {},
        "latin1": {"password": "p\u00e4ssword".encode("latin-1")},
        "binary": {"password": b"\xff\xfe\x00\x01", "ca.crt": b"\x30\x82\x01\x0a\xff"},
        "ctrl": {"password": "\x00\x1b[31m\u202e".encode()},
        "blank": {"password": b""},
        "junk-pem": {"ca.crt": junk_pem},
        "not-pem": {"ca.crt": b"just some text"},
    }
    for name, data in raw.items():
        await create_raw_secret(kube, namespace, name, data)
    await operators.start()

    def redis(secret: str, key: str = "password") -> dict[str, Any]:
        return {
            "redis": {
                "host": "127.0.0.1",
                "port": redis_server.port,
                "passwordSecretRef": {"name": secret, "key": key},
            }
        }

    def postgres(**fields: Any) -> dict[str, Any]:
        return {
            "postgresql": {
                "host": "127.0.0.1",
                "port": postgres_server.port,
                "user": postgres_server.user,
                "passwordSecretRef": {"name": "pg-auth", "key": "password"},
                **fields,
            }
        }

    await create_secret(kube, namespace, "pg-auth", {"password": postgres_server.password})
    tls_ca = {"tls": {"enabled": True, "caSecretRef": {"name": "junk-pem", "key": "ca.crt"}}}
    cases: dict[str, tuple[dict[str, Any], str, list[str]]] = {
        "absent": (redis("nowhere"), reasons.SECRET_NOT_FOUND, ['"nowhere"', '"password"']),
        "no-key": (redis("bag"), reasons.SECRET_NOT_FOUND, ['key "password"', '"bag"']),
        "empty": (redis("empty"), reasons.SECRET_NOT_FOUND, ['key "password"', '"empty"']),
        "latin1": (redis("latin1"), reasons.INVALID_SPEC, ['key "password"', '"latin1"']),
        "binary": (redis("binary"), reasons.INVALID_SPEC, ['key "password"', '"binary"']),
        "binary-ca": (
            postgres(sslrootcertSecretRef={"name": "binary", "key": "ca.crt"}),
            reasons.INVALID_SPEC,
            ['key "ca.crt"', '"binary"'],
        ),
        # Text, but the backend refuses it: the message need not name the key (a wrong
        # password is the backend's verdict), but it must not quote the value either.
        "ctrl": (redis("ctrl"), reasons.AUTHENTICATION_FAILED, []),
        "blank": (redis("blank"), reasons.AUTHENTICATION_FAILED, []),
        "junk-pem": (
            {"redis": {**redis("ctrl")["redis"], **tls_ca}},
            reasons.INVALID_SPEC,
            ['key "ca.crt"', '"junk-pem"', "not a PEM file"],
        ),
        "not-pem-pg": (
            postgres(
                sslmode="verify-full", sslrootcertSecretRef={"name": "not-pem", "key": "ca.crt"}
            ),
            reasons.INVALID_SPEC,
            ['key "ca.crt"', '"not-pem"', "not a PEM file"],
        ),
    }
    for name, (spec, _, _) in cases.items():
        await create_store(kube, namespace, name, spec)
    problems = []
    for name, (_, reason, named) in cases.items():
        store = await wait_condition(kube, namespace, name, "Ready", "False", timeout=45)
        ready = condition(store, "Ready")
        print(f"{name}: {ready['reason']}: {ready['message']}")
        if ready["reason"] != reason or not all(text in ready["message"] for text in named):
            problems.append(f"{name}: expected {reason} naming {named}, got {ready}")
        for value in raw.get(name, {}).values():
            text = json.dumps(value.decode(errors="ignore").strip("\x00"))[1:-1]
            if len(text) > 3:
                assert text not in json.dumps(store), f"{name}: the value reached the status"
    assert not problems, "\n".join(problems)
    assert all(p.running for p in operators.started)
