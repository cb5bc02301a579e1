"""The CRDs in crds/ are exactly what the models generate, and a valid structural schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from lockyard.config.resource import BACKEND_MEMBERS, EXACTLY_ONE_MESSAGE
from lockyard_dev.repository import repository_root
from lockyard_operator import crd

CRDS = repository_root() / "crds"


def test_committed_crds_match_the_models() -> None:
    rendered = crd.render()
    on_disk = {path.name: path.read_text() for path in CRDS.iterdir() if path.is_file()}
    assert sorted(on_disk) == sorted(rendered), "crds/ holds other files than `make crds` writes"
    for name, content in rendered.items():
        assert on_disk[name] == content, f"crds/{name} has drifted from the models: run make crds"


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    written = crd.write(tmp_path)
    assert {p.name for p in written} == set(crd.render())
    documents = list(yaml.safe_load_all((tmp_path / crd.STATESTORE_FILE).read_text()))
    assert documents == [crd.statestore_crd()]


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if "items" in schema:
        yield from _nodes(schema["items"], f"{path}[]")


def _schema() -> dict[str, Any]:
    version = crd.statestore_crd()["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def test_schema_is_structural() -> None:
    for path, node in _nodes(_schema()):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        for forbidden in ("anyOf", "oneOf", "allOf", "$ref", "$defs", "title", "const"):
            assert forbidden not in node, f"{path} has {forbidden}"
        assert node.get("additionalProperties") is None, path
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True, path
            assert "minimum" in node, path


def test_exactly_one_backend_is_a_cel_rule_with_the_documented_message() -> None:
    spec = _schema()["properties"]["spec"]
    (rule,) = spec["x-kubernetes-validations"]
    assert rule["message"] == EXACTLY_ONE_MESSAGE
    for member in BACKEND_MEMBERS:
        assert f"has(self.{member})" in rule["rule"]
        assert member in spec["properties"]


def test_credentials_are_only_secret_references() -> None:
    for path, node in _nodes(_schema()["properties"]["spec"]):
        leaf = path.rsplit(".", 1)[-1].lower()
        if any(word in leaf for word in ("password", "secret", "accesskey")):
            assert leaf.endswith("secretref"), path
            assert node["required"] == ["name", "key"], path


def test_printer_columns_status_subresource_and_names() -> None:
    spec = crd.statestore_crd()["spec"]
    version = spec["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]][:4] == [
        "Backend",
        "Ready",
        "Locks",
        "Age",
    ]
    assert version["subresources"] == {"status": {}}
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["shortNames"] == ["lystore"]


def test_defaults_and_bounds_come_from_the_backend_models() -> None:
    redis = _schema()["properties"]["spec"]["properties"]["redis"]["properties"]
    assert redis["port"]["default"] == 6379
    assert (redis["port"]["minimum"], redis["port"]["maximum"]) == (1, 65535)
    assert redis["tls"]["default"] == {}
    timeout = _schema()["properties"]["spec"]["properties"]["operationTimeoutSeconds"]
    assert timeout["minimum"] == 0
    assert timeout["exclusiveMinimum"] is True


def test_peering_crds_are_kopfs() -> None:
    names = {doc["metadata"]["name"]: doc["spec"]["scope"] for doc in crd.peering_crds()}
    assert names == {
        "clusterkopfpeerings.kopf.dev": "Cluster",
        "kopfpeerings.kopf.dev": "Namespaced",
    }
