"""The rows of ``lockyard locks``: one per Lease (or, with ``--verify``, per held lock without
one), and how they print: a kubectl-style table, ``-o wide``, ``-o json|yaml``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from lockyard.cli._output import (
    Cell,
    column_widths,
    dump,
    human_duration,
    remaining,
    render_table,
    use_color,
)
from lockyard.identity import ELECTION_LOCK_PREFIX
from lockyard.mirror.lease_names import LOCK_KIND, PERMIT_KINDS, permit_key
from lockyard.mirror.leases import MirroredLease, format_micro_time

HEADERS = ("STORE", "KIND", "LOCK", "HOLDER", "FENCING", "ACQUIRED", "RENEWED", "EXPIRES IN")
WIDE_HEADERS = ("LEASE", "BACKEND", "TRANSITIONS", "POD")

#: VERIFIED values.
HELD, STALE, MISSING, UNKNOWN = "held", "stale", "missing", "unknown"
_VERDICT_COLORS = {HELD: "green", STALE: "red", MISSING: "yellow", UNKNOWN: "dim"}


@dataclass(slots=True)
class Row:
    """One line of output: a Lease, or (with --verify) a held lock without one."""

    namespace: str
    store: str
    lock: str
    holder: str
    fencing: int | None
    acquired: float | None
    renewed: float | None
    expires_at: float | None
    lease: str
    backend: str
    transitions: int | None
    pod: str
    verified: str | None = None
    note: str = ""
    #: ``semaphore``, ``rwlock-read`` or ``rwlock-write`` for a permit; ``""``: a lock's or an
    #: election's, told apart by the lock name (see :attr:`kind`).
    permit_kind: str = ""

    @property
    def kind(self) -> str:
        """The permit's kind; ``election`` for an election's lock (``lockyard.elections``);
        else ``lock``."""
        if self.permit_kind:
            return self.permit_kind
        return "election" if self.lock.startswith(ELECTION_LOCK_PREFIX) else LOCK_KIND

    @property
    def key(self) -> str:
        """The lock's name, or the permit's key (its space, name and fencing token)."""
        space = PERMIT_KINDS.get(self.permit_kind)
        return self.lock if space is None else permit_key(space, self.lock, self.fencing or 0)

    def as_dict(self, now: float) -> dict[str, Any]:
        data: dict[str, Any] = {
            "namespace": self.namespace,
            "store": self.store,
            "kind": self.kind,
            "lock": self.lock,
            "holder": self.holder or None,
            "fencingToken": self.fencing,
            "acquireTime": None if self.acquired is None else format_micro_time(self.acquired),
            "renewTime": None if self.renewed is None else format_micro_time(self.renewed),
            "expiresInSeconds": None
            if self.expires_at is None
            else round(self.expires_at - now, 3),
            "lease": self.lease or None,
            "backend": self.backend or None,
            "leaseTransitions": self.transitions,
            "holderPod": self.pod or None,
        }
        if self.verified is not None:
            data["verified"] = self.verified
            if self.note:
                data["verifyNote"] = self.note
        return data


def lease_rows(objects: Iterable[dict[str, Any]], store: str | None) -> list[Row]:
    rows = []
    for obj in objects:
        lease = MirroredLease.from_object(obj)
        if (store is not None and lease.store != store) or lease.released:
            continue  # another store's, or an election's Lease between terms (nothing held)
        rows.append(
            Row(
                namespace=lease.namespace,
                store=lease.store,
                lock=lease.lock,
                holder=lease.holder,
                fencing=lease.fencing_token,
                acquired=lease.acquire_time,
                renewed=lease.renew_time,
                expires_at=lease.expires_at,
                lease=lease.name,
                backend=lease.backend,
                transitions=lease.transitions,
                pod=lease.holder_pod,
                permit_kind=lease.kind if lease.permit_space else "",
            )
        )
    rows.sort(key=sort_key)
    return rows


def sort_key(row: Row) -> tuple[str, str, str, str, int]:
    """Rows by namespace, store, lock name, kind and fencing token."""
    return (row.namespace, row.store, row.lock, row.kind, row.fencing or 0)


def table_cells(
    row: Row, now: float, *, all_namespaces: bool, wide: bool, verify: bool, deleted: bool = False
) -> list[Cell]:
    def age(at: float | None) -> str:
        return "<unknown>" if at is None else human_duration(now - at)

    if deleted:
        expires: Cell = ("released", "dim")
    elif row.expires_at is None:
        expires = "<unknown>"
    elif row.expires_at <= now:
        expires = ("expired", "red")
    else:
        expires = remaining(row.expires_at - now)
    cells: list[Cell] = [
        row.store,
        row.kind,
        row.lock,
        row.holder or "<none>",
        "<none>" if row.fencing is None else str(row.fencing),
        age(row.acquired),
        age(row.renewed),
        expires,
    ]
    if all_namespaces:
        cells.insert(0, row.namespace)
    if wide:
        cells += [
            row.lease or "<none>",
            row.backend or "<unknown>",
            "<none>" if row.transitions is None else str(row.transitions),
            row.pod or "<none>",
        ]
    if verify:
        verdict = row.verified or UNKNOWN
        text = f"{verdict} ({row.note})" if row.note else verdict
        cells.append((text, _VERDICT_COLORS.get(verdict)))
    return cells


def headers_for(*, all_namespaces: bool, wide: bool, verify: bool, events: bool) -> list[str]:
    headers = list(HEADERS)
    if all_namespaces:
        headers.insert(0, "NAMESPACE")
    if wide:
        headers += WIDE_HEADERS
    if verify:
        headers.append("VERIFIED")
    if events:
        headers.insert(0, "EVENT")
    return headers


def print_rows(rows: Sequence[Row], args: argparse.Namespace, stream: TextIO) -> list[int]:
    """Print ``rows`` as asked; the table's column widths (for --watch to keep)."""
    now = time.time()
    if args.output in ("json", "yaml"):
        dump({"items": [row.as_dict(now) for row in rows]}, args.output, stream)
        return []
    events = bool(args.watch and args.output_watch_events)
    headers = headers_for(
        all_namespaces=args.all_namespaces,
        wide=args.output == "wide",
        verify=args.verify,
        events=events,
    )
    prefix: list[Cell] = ["ADDED"] if events else []
    cells = [
        prefix
        + table_cells(
            row,
            now,
            all_namespaces=args.all_namespaces,
            wide=args.output == "wide",
            verify=args.verify,
        )
        for row in rows
    ]
    if not rows and not args.watch:
        where = "any namespace" if args.all_namespaces else f"{args.resolved_namespace} namespace"
        print(f"No locks found in {where}.", file=sys.stderr)
        return []
    plain = [[c if isinstance(c, str) else c[0] for c in row] for row in cells]
    widths = column_widths(headers, plain, no_headers=args.no_headers)
    for line in render_table(
        headers, cells, color=use_color(stream), no_headers=args.no_headers, widths=widths
    ):
        stream.write(line + "\n")
    stream.flush()
    return widths
