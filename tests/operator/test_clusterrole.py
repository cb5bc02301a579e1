"""The operator's ClusterRole is exactly the reviewed list below: it cannot silently grow.

Adding a permission means adding it here, with the reason the operator needs it, in the same
change; removing one means removing it here. ``docs/operator.md`` shows the same list. That
the operator works under this role is proved by every end-to-end test in ``tests/k8s/operator``:
they run it under the ``lockyard-operator`` ServiceAccount bound to ``deploy/clusterrole.yaml``
and fail on any "Forbidden" in its log (the ``operators`` fixture); ``test_security.py`` also
fails on an Event the API server refused (kopf logs that one in lower case).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from lockyard.config.resource import API_GROUP, PLURAL
from lockyard_dev.repository import repository_root
from lockyard_operator.children import workload_rules

REPO = repository_root()
CLUSTERROLE = REPO / "deploy" / "clusterrole.yaml"
GUIDE = REPO / "docs" / "operator.md"


@dataclass(frozen=True)
class Needed:
    group: str
    resource: str
    verbs: tuple[str, ...]
    why: str


#: What the operator does with the API, and why. The code that does it is named.
NEEDED = (
    Needed(API_GROUP, PLURAL, ("list", "watch"),
           "kopf lists and watches the StateStores it reconciles"),
    Needed(API_GROUP, PLURAL, ("get",),
           "handlers.reconcile_by_name reads a store when a Secret it uses changes; and the "
           "workload Role grants it (RBAC lets no one grant what it lacks)"),
    Needed(API_GROUP, PLURAL, ("patch",),
           "kopf patches its finalizer and its progress/diff-base annotations"),
    Needed(API_GROUP, f"{PLURAL}/status", ("patch",),
           "Reconciler._write_status merge-patches the status subresource"),
    Needed(API_GROUP, f"{PLURAL}/finalizers", ("update",),
           "blockOwnerDeletion on the binding Secret and Role, where the "
           "OwnerReferencesPermissionEnforcement admission plugin is on"),
    Needed("", "secrets", ("get",),
           "Reconciler._resolve_secrets reads referenced Secrets; the workload Role grants get "
           "on the binding"),
    Needed("", "secrets", ("list", "watch"),
           "kopf watches Secrets so a rotation re-reconciles its stores at once"),
    Needed("", "secrets", ("create", "update"),
           "Reconciler._apply creates or replaces the binding Secret"),
    Needed("rbac.authorization.k8s.io", "roles", ("get", "create", "update"),
           "Reconciler._apply creates, reads (on conflict) and replaces the workload Role"),
    Needed("coordination.k8s.io", "leases", ("list", "deletecollection"),
           "the finalizer removes a store's mirrored Leases by label"),
    Needed("coordination.k8s.io", "leases", ("update", "delete"),
           "the reaper corrects or deletes stale mirrored Leases"),
    Needed("coordination.k8s.io", "leases", ("get", "list", "watch", "create", "update",
                                              "patch", "delete"),
           "the workload Role grants these for lease mirroring (RBAC lets no one grant what "
           "it lacks)"),
    Needed("", "events", ("create",),
           "kopf.event posts the reconciler's Events (kopf only ever creates them)"),
    Needed("apiextensions.k8s.io", "customresourcedefinitions", ("list", "watch"),
           "kopf notices the CRD appearing and going"),
    Needed("", "namespaces", ("list", "watch"),
           "kopf follows namespace patterns (--namespace 'team-*')"),
)  # fmt: skip

#: The leader election's own Role, in the operator's namespace (deploy/leader-election-role.yaml).
ELECTION_ROLE = REPO / "deploy" / "leader-election-role.yaml"
ELECTION_NEEDED = (
    Needed("coordination.k8s.io", "leases", ("get", "create", "update"),
           "LeaseElector reads the election Lease, the first replica creates it, and every "
           "renewal, take-over and release replaces it conditionally"),
)  # fmt: skip

Grant = tuple[str, str, str]


def flatten(rules: list[dict[str, Any]]) -> set[Grant]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def reviewed() -> set[Grant]:
    return {(n.group, n.resource, verb) for n in NEEDED for verb in n.verbs}


def clusterrole() -> dict[str, Any]:
    role: dict[str, Any] = yaml.safe_load(CLUSTERROLE.read_text())
    return role


def describe(grants: set[Grant]) -> str:
    return ", ".join(f"{g or 'core'}/{r}:{v}" for g, r, v in sorted(grants))


def test_the_clusterrole_is_exactly_the_reviewed_list() -> None:
    granted = flatten(clusterrole()["rules"])
    added, removed = granted - reviewed(), reviewed() - granted
    assert not added, f"deploy/clusterrole.yaml grants more than reviewed: {describe(added)}"
    assert not removed, f"deploy/clusterrole.yaml lacks reviewed permissions: {describe(removed)}"


def test_no_wildcards_names_or_urls() -> None:
    role = clusterrole()
    assert (role["kind"], role["metadata"]["name"]) == ("ClusterRole", "lockyard-operator")
    assert "aggregationRule" not in role
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule
        assert "*" not in str(rule), rule
    for needed in NEEDED:
        assert len(needed.why) > 20, needed


def test_the_operator_holds_everything_the_workload_role_grants() -> None:
    # Creating a Role that grants a permission its creator lacks is refused as escalation.
    granted = flatten(clusterrole()["rules"])
    grants = flatten(workload_rules("orders", "lockyard-store-orders"))
    assert grants, "the workload Role grants something"
    assert grants <= granted, describe(grants - granted)


def guide_table() -> set[Grant]:
    """The ``Operator RBAC`` table of docs/operator.md, flattened."""
    section = GUIDE.read_text().split("## Operator RBAC", 1)[1].split("\n## ", 1)[0]
    grants: set[Grant] = set()
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 4 or cells[0] in ("API group", "") or set(cells[0]) <= set("-"):
            continue
        group = re.sub(r'["`]', "", cells[0])
        for resource in cells[1].split(","):
            for verb in cells[2].split(","):
                grants.add((group, resource.strip(" `"), verb.strip(" `")))
    return grants


def test_the_operator_guide_lists_the_same_permissions() -> None:
    documented = guide_table()
    assert documented, "docs/operator.md has an Operator RBAC table"
    assert documented == reviewed(), (
        f"only documented: {describe(documented - reviewed())}; "
        f"only reviewed: {describe(reviewed() - documented)}"
    )


def test_the_leader_election_role_is_exactly_its_lease_verbs() -> None:
    role, binding = list(yaml.safe_load_all(ELECTION_ROLE.read_text()))
    assert (role["kind"], role["metadata"]["namespace"]) == ("Role", "lockyard-system")
    granted = flatten(role["rules"])
    assert granted == {(n.group, n.resource, v) for n in ELECTION_NEEDED for v in n.verbs}
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "lockyard-operator", "namespace": "lockyard-system"}
    ]
    lines = ELECTION_ROLE.read_text().splitlines()
    for index, line in enumerate(lines):
        if line.strip().startswith("- apiGroups:"):
            assert lines[index - 1].strip().startswith("# "), f"line {index + 1} lacks a why"
