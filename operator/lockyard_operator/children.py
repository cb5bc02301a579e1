"""The objects the operator makes for each StateStore: the binding Secret and the workload Role.

Both are owned by the StateStore (so garbage collection removes them) and labelled with its
name. :func:`publish` creates them, or replaces them when they differ; an object of that name
that the store does not own is a ``BindingConflict``, never overwritten.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from lockyard.config import BackendConfig
from lockyard.config.resource import StateStoreSpec
from lockyard.identity import API_GROUP, PLURAL
from lockyard.kube.binding import binding_data
from lockyard.kube.names import STORE_LABEL, store_label_value, store_object_name
from lockyard_operator import reasons
from lockyard_operator.kube import KubeApi, KubeApiError, roles_path, secrets_path
from lockyard_operator.state import Failed, StoreRef, StoreState

MANAGED_BY = {"app.kubernetes.io/managed-by": "lockyard-operator"}
BINDING_SECRET_TYPE = "servicebinding.io/lockyard"


def workload_rules(store: str, binding: str) -> list[dict[str, Any]]:
    """What a workload of this store may do: read its binding and StateStore, mirror Leases.

    ``create`` cannot be limited to names (the name is not known before the object exists), so
    Leases are granted namespace-wide.
    """
    return [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [binding], "verbs": ["get"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["create", "get", "update", "patch", "delete", "list", "watch"],
        },
        {
            "apiGroups": [API_GROUP],
            "resources": [PLURAL],
            "resourceNames": [store],
            "verbs": ["get"],
        },
    ]


def metadata(ref: StoreRef, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": ref.namespace,
        "labels": {STORE_LABEL: store_label_value(ref.name), **MANAGED_BY},
        "ownerReferences": [ref.owner_reference()],
    }


def binding_secret(
    ref: StoreRef, spec: StateStoreSpec, config: BackendConfig, files: Mapping[str, str]
) -> dict[str, Any]:
    data = binding_data(
        config,
        files=files,
        default_ttl_seconds=spec.locks.default_ttl_seconds,
        lease_mirroring=spec.locks.lease_mirroring,
    )
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": BINDING_SECRET_TYPE,
        "metadata": metadata(ref, store_object_name(ref.name)),
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def workload_role(ref: StoreRef) -> dict[str, Any]:
    name = store_object_name(ref.name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": metadata(ref, name),
        "rules": workload_rules(ref.name, name),
    }


async def publish(
    api: KubeApi,
    ref: StoreRef,
    store: StoreState,
    spec: StateStoreSpec,
    config: BackendConfig,
    files: Mapping[str, str],
) -> None:
    """The binding Secret and the workload Role, created or brought up to date.

    Records ``BindingPublished`` either way; skips the API when nothing changed since the last
    publication by this process.
    """
    secret, role = binding_secret(ref, spec, config, files), workload_role(ref)
    digest = hashlib.sha256(json.dumps([secret, role], sort_keys=True).encode()).hexdigest()
    if store.published != digest:
        try:
            await apply(api, ref, secrets_path(ref.namespace), secret)
            await apply(api, ref, roles_path(ref.namespace), role)
        except (KubeApiError, Failed) as exc:
            failure = (
                exc
                if isinstance(exc, Failed)
                else Failed(reasons.KUBERNETES_API_ERROR, f"publishing the binding: {exc}")
            )
            store.book.set(
                reasons.BINDING_PUBLISHED, False, failure.reason, failure.message, ref.generation
            )
            raise failure from None
        store.published = digest
    name = store_object_name(ref.name)
    store.book.binding = name
    store.book.set(
        reasons.BINDING_PUBLISHED,
        True,
        reasons.PUBLISHED,
        f"binding Secret and Role {name} are up to date",
        ref.generation,
    )


async def apply(api: KubeApi, ref: StoreRef, collection: str, body: dict[str, Any]) -> None:
    """Create ``body``, or replace the existing object if it is the store's and differs."""
    name = body["metadata"]["name"]
    try:
        await api.create(collection, body)
        return
    except KubeApiError as exc:
        if not exc.conflict:
            raise
    path = f"{collection}/{name}"
    existing = await api.get(path)
    owners = existing.get("metadata", {}).get("ownerReferences") or []
    if not any(owner.get("uid") == ref.uid for owner in owners):
        raise Failed(
            reasons.BINDING_CONFLICT,
            f'{body["kind"]} "{name}" exists and is not owned by this StateStore',
        )
    current = existing.get("metadata", {})
    same = all(existing.get(f) == body.get(f) for f in ("data", "type", "rules")) and all(
        current.get(k) == body["metadata"][k] for k in ("labels", "ownerReferences")
    )
    if not same:
        replacement = json.loads(json.dumps(body))
        replacement["metadata"]["resourceVersion"] = current.get("resourceVersion")
        await api.replace(path, replacement)
