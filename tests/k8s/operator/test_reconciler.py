"""The reconciler on its own (no kopf, no operator process) against the real API server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from operator_harness import condition, create_store, secrets_path, stores_path

from lockyard.config.resource import StateStoreSpec
from lockyard.kube.api import KubeApi
from lockyard_operator import reasons
from lockyard_operator.metrics import Metrics
from lockyard_operator.reconcile import Reconciler
from lockyard_operator.state import StoreRef

pytestmark = pytest.mark.k8s


class Events:
    def __init__(self) -> None:
        self.posted: list[tuple[str, str, str]] = []

    def __call__(self, ref: StoreRef, type_: str, reason: str, message: str) -> None:
        self.posted.append((type_, reason, message))


async def ref_of(kube: KubeApi, namespace: str, name: str) -> tuple[StoreRef, dict[str, Any]]:
    body = await kube.get(stores_path(namespace, name))
    meta = body["metadata"]
    return StoreRef(namespace, name, meta["uid"], meta["generation"]), body


async def test_reconcile_is_idempotent_across_restarts(
    kube: KubeApi, namespace: str, tmp_path: Path
) -> None:
    await create_store(kube, namespace, "idem", {"memory": {}})
    ref, body = await ref_of(kube, namespace, "idem")
    spec = StateStoreSpec.model_validate(body["spec"])
    first = Reconciler(kube, Metrics(), Events(), tmp_path)
    try:
        outcome = await first.reconcile(ref, spec, None)
        assert outcome.ready, outcome
    finally:
        await first.close()
    binding = await kube.get(secrets_path(namespace, "lockyard-store-idem"))
    ref, body = await ref_of(kube, namespace, "idem")
    stamp = condition(body, reasons.READY)["lastTransitionTime"]

    # A new process: same result, the binding untouched, the transition time kept.
    second = Reconciler(kube, Metrics(), Events(), tmp_path)
    try:
        outcome = await second.reconcile(ref, spec, body.get("status"))
        assert outcome.ready, outcome
    finally:
        await second.close()
    again = await kube.get(secrets_path(namespace, "lockyard-store-idem"))
    assert again["metadata"]["resourceVersion"] == binding["metadata"]["resourceVersion"]
    _, body = await ref_of(kube, namespace, "idem")
    assert condition(body, reasons.READY)["lastTransitionTime"] == stamp


async def test_a_foreign_secret_of_the_binding_name_is_a_conflict(
    kube: KubeApi, namespace: str, tmp_path: Path
) -> None:
    await kube.create(
        secrets_path(namespace),
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "lockyard-store-taken"},
         "stringData": {"mine": "not yours"}},
    )  # fmt: skip
    await create_store(kube, namespace, "taken", {"memory": {}})
    ref, body = await ref_of(kube, namespace, "taken")
    reconciler = Reconciler(kube, Metrics(), Events(), tmp_path)
    try:
        outcome = await reconciler.reconcile(ref, StateStoreSpec.model_validate(body["spec"]), None)
    finally:
        await reconciler.close()
    assert (outcome.ready, outcome.reason, outcome.retryable) == (
        False,
        reasons.BINDING_CONFLICT,
        True,
    )
    _, body = await ref_of(kube, namespace, "taken")
    assert condition(body, reasons.BINDING_PUBLISHED)["reason"] == reasons.BINDING_CONFLICT
    untouched = await kube.get(secrets_path(namespace, "lockyard-store-taken"))
    assert "ownerReferences" not in untouched["metadata"]


async def test_invalid_spec_and_finalize(kube: KubeApi, namespace: str, tmp_path: Path) -> None:
    await create_store(kube, namespace, "odd", {"memory": {}, "deletionPolicy": "Delete"})
    ref, body = await ref_of(kube, namespace, "odd")
    events = Events()
    reconciler = Reconciler(kube, Metrics(), events, tmp_path)
    try:
        outcome = await reconciler.invalid_spec(ref, "invalid spec: memory: nope", None)
        assert (outcome.reason, outcome.retryable) == (reasons.INVALID_SPEC, False)
        _, body = await ref_of(kube, namespace, "odd")
        assert condition(body, reasons.READY)["message"] == "invalid spec: memory: nope"

        spec = StateStoreSpec.model_validate(body["spec"])
        assert (await reconciler.reconcile(ref, spec, None)).ready
        outcome = await reconciler.finalize(ref, spec)
        assert outcome.ready
        assert ("Normal", reasons.DATA_PURGED) in [(t, r) for t, r, _ in events.posted]
        # Finalized: later calls for the same object change nothing.
        assert not (await reconciler.probe(ref, spec, None)).ready
    finally:
        await reconciler.close()
