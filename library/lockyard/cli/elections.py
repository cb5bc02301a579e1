"""``lockyard elections``: every leader election in the cluster, from its Lease.

    lockyard elections [-A | -n NS] [--store NAME] [-o table|wide|json|yaml]

One LIST request with the ``app.kubernetes.io/managed-by=lockyard,lockyard.dev/kind=election``
selector. An election of ``ly.elections`` on a store with Lease mirroring shows as its store, the
election's name, the leader's identity (``holderIdentity``), its term (the fencing token),
ACQUIRED and RENEWED (ages) and EXPIRES IN; a native election on a Lease (the operator's own,
:mod:`lockyard.kube.lease_election`) has no store and shows the Lease's name. ``-o wide`` adds
the Lease name and ``leaseTransitions``. ``lockyard locks break election/NAME --store S`` ends
a mirrored election's term (its leader learns it lost at its next renewal).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from lockyard.cli._output import (
    EXIT_OK,
    Cell,
    add_kube_arguments,
    add_output_argument,
    add_scope_arguments,
    dump,
    human_duration,
    remaining,
    render_table,
    use_color,
)

HEADERS = ("STORE", "ELECTION", "LEADER", "TERM", "ACQUIRED", "RENEWED", "EXPIRES IN")
WIDE_HEADERS = ("LEASE", "TRANSITIONS")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``elections`` to the ``lockyard`` command line."""
    parser = subparsers.add_parser(
        "elections",
        help="list leader elections cluster-wide (from their Leases)",
        description="List the leader elections in the cluster, from their Leases.",
        epilog="Exit codes: 0 success, 1 error, 2 usage.",
    )
    add_scope_arguments(parser)
    parser.add_argument("--store", metavar="NAME", help="only this StateStore's elections")
    add_output_argument(parser)
    add_kube_arguments(parser)
    parser.set_defaults(handler=run_list)


def run_list(args: argparse.Namespace) -> int:
    """``lockyard elections``."""
    return _list(args, sys.stdout)


def election_selector(store: str | None) -> str:
    """Mirrored Leases of elections (of one store when ``store`` is given)."""
    from lockyard.kube.leader_record import ELECTION_KIND, KIND_LABEL
    from lockyard.mirror.lease_names import store_selector

    return f"{store_selector(store)},{KIND_LABEL}={ELECTION_KIND}"


def election_rows(objects: list[dict[str, Any]], store: str | None) -> list[dict[str, Any]]:
    """One JSON-ready row per election Lease (``store`` given: only that store's)."""
    from lockyard.identity import ELECTION_LOCK_PREFIX
    from lockyard.mirror.leases import MirroredLease

    rows = []
    for obj in objects:
        lease = MirroredLease.from_object(obj)
        if store is not None and lease.store != store:
            continue
        mirrored = lease.lock.startswith(ELECTION_LOCK_PREFIX)
        rows.append(
            {
                "namespace": lease.namespace,
                "store": lease.store or None,
                "election": lease.lock[len(ELECTION_LOCK_PREFIX) :] if mirrored else lease.name,
                "leader": lease.holder or None,
                "term": lease.fencing_token,
                "acquireTime": lease.acquire_time,
                "renewTime": lease.renew_time,
                "expiresAt": lease.expires_at,
                "lease": lease.name,
                "leaseTransitions": lease.transitions,
            }
        )
    rows.sort(key=lambda r: (r["namespace"], r["store"] or "", r["election"]))
    return rows


def _list(args: argparse.Namespace, stream: TextIO) -> int:
    from lockyard.cli._cluster import api_problem, connect_scope
    from lockyard.kube.errors import KubeApiError
    from lockyard.kube.paths import leases_path
    from lockyard.mirror.leases import format_micro_time

    kube, namespace = connect_scope(args)
    selector = {"labelSelector": election_selector(args.store)}
    try:
        try:
            listed = kube.get(leases_path(namespace), selector)
        except KubeApiError as exc:
            raise api_problem(exc, "listing Leases") from exc
    finally:
        kube.close()
    rows = election_rows(listed.get("items") or [], args.store)
    now = time.time()
    if args.output in ("json", "yaml"):
        items = []
        for row in rows:
            item = dict(row)
            for field in ("acquireTime", "renewTime"):
                item[field] = None if row[field] is None else format_micro_time(row[field])
            expires_at = item.pop("expiresAt")
            item["expiresInSeconds"] = None if expires_at is None else round(expires_at - now, 3)
            items.append(item)
        dump({"items": items}, args.output, stream)
        return EXIT_OK
    if not rows:
        where = "any namespace" if args.all_namespaces else f"{namespace} namespace"
        print(f"No elections found in {where}.", file=sys.stderr)
        return EXIT_OK
    wide = args.output == "wide"
    headers = list(HEADERS)
    if args.all_namespaces:
        headers.insert(0, "NAMESPACE")
    if wide:
        headers += WIDE_HEADERS
    cells = [_cells(row, now, all_namespaces=args.all_namespaces, wide=wide) for row in rows]
    for line in render_table(headers, cells, color=use_color(stream), no_headers=args.no_headers):
        stream.write(line + "\n")
    stream.flush()
    return EXIT_OK


def _cells(row: dict[str, Any], now: float, *, all_namespaces: bool, wide: bool) -> list[Cell]:
    def age(at: float | None) -> str:
        return "<unknown>" if at is None else human_duration(now - at)

    expires_at = row["expiresAt"]
    expires: Cell
    if not row["leader"]:
        expires = ("<no leader>", "dim")
    elif expires_at is None:
        expires = "<unknown>"
    elif expires_at <= now:
        expires = ("expired", "red")
    else:
        expires = remaining(expires_at - now)
    cells: list[Cell] = [
        row["store"] or "<none>",
        row["election"],
        row["leader"] or "<none>",
        "<none>" if row["term"] is None else str(row["term"]),
        age(row["acquireTime"]),
        age(row["renewTime"]),
        expires,
    ]
    if all_namespaces:
        cells.insert(0, row["namespace"])
    if wide:
        cells += [row["lease"], str(row["leaseTransitions"])]
    return cells
