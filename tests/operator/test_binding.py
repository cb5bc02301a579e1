"""The binding Secret's layout, names of per-store objects, and connect_store from a mount."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import lockyard
from lockyard.config import parse_url
from lockyard.errors import ConfigError
from lockyard.kube import binding_data, read_binding, store_label_value, store_object_name
from lockyard.kube.connect_store import current_namespace, open_store

LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def test_binding_round_trips_url_secrets_and_files() -> None:
    config = parse_url("rediss://user:p%40ss@redis:6380/2?prefix=team.orders&tls_ca_file=/op/ca")
    data = binding_data(
        config, files={"ca_file": "CA PEM"}, default_ttl_seconds=12.5, lease_mirroring=True
    )
    assert data["type"] == "lockyard"
    assert data["provider"] == data["backend"] == "redis"
    assert data["prefix"] == "team.orders"
    assert data["tls_ca_file"] == "CA PEM"
    assert "/op/ca" not in data["url"], "the operator's file path must not reach workloads"
    binding = read_binding(data, lambda key: f"/bindings/orders/{key}")
    assert (binding.default_ttl_seconds, binding.lease_mirroring) == (12.5, True)
    reparsed = parse_url(binding.url)
    assert (
        reparsed.model_dump()
        == config.model_copy(
            update={
                "tls": config.tls.model_copy(update={"ca_file": "/bindings/orders/tls_ca_file"})
            }
        ).model_dump()
    )


def test_a_secret_that_is_not_a_binding_is_refused() -> None:
    with pytest.raises(ConfigError, match="not a Lockyard binding"):
        read_binding({"type": "postgresql", "url": "x", "prefix": "p"}, str)
    with pytest.raises(ConfigError, match="lacks url"):
        read_binding({"type": "lockyard", "prefix": "p"}, str)


def test_object_names_and_label_values_stay_valid() -> None:
    assert store_object_name("orders") == "lockyard-store-orders"
    assert store_label_value("orders") == "orders"
    long_a, long_b = "a" * 253, "a" * 252 + "b"
    assert len(store_object_name(long_a)) <= 253
    assert store_object_name(long_a) != store_object_name(long_b)
    assert store_label_value(long_a) != store_label_value(long_b)
    for value in (store_label_value(long_a), store_label_value("x." * 40 + "y")):
        assert len(value) <= 63
        assert LABEL_VALUE.match(value), value


async def test_connect_store_reads_a_mounted_binding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "scratch"
    folder.mkdir()
    data = binding_data(
        parse_url("memory://?prefix=demo.scratch"),
        files={},
        default_ttl_seconds=30,
        lease_mirroring=False,
    )
    for key, value in data.items():
        (folder / key).write_text(value + "\n")  # mounted files often end in a newline
    monkeypatch.setenv("SERVICE_BINDING_ROOT", str(tmp_path))
    connection = await open_store("scratch")
    try:
        assert isinstance(connection, lockyard.Connection)
        assert (connection.backend, connection.prefix) == ("memory", "demo.scratch")
        assert await connection.store.check_and_set("demo:t:dedup:1", "seen")
    finally:
        await connection.close()


def test_namespace_comes_from_the_kubeconfig_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "shop"}}],
        "current-context": "x",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    monkeypatch.setenv("KUBECONFIG", str(path))
    assert current_namespace() == "shop"
    del config["contexts"][0]["context"]["namespace"]
    path.write_text(json.dumps(config))
    assert current_namespace() == "default"
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    assert current_namespace() == "default"
