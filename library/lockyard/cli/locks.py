"""``lockyard locks``: every held lock in the cluster, from the Leases that mirror them.

    lockyard locks [-A | -n NS] [--store NAME] [-o table|wide|json|yaml] [--watch] [--verify]
    lockyard locks break LOCK --store NAME [-n NS] [--yes]

Listing costs one LIST request whatever the scope (``-A`` is one cluster-wide LIST with the
``app.kubernetes.io/managed-by=lockyard`` label selector), so a thousand locks print in well
under two seconds. Columns: NAMESPACE (with ``-A``, as kubectl), STORE, LOCK (the exact name,
from the ``lockyard.dev/lock`` annotation), HOLDER (pod or host, and the acquisition's owner
token prefix), FENCING, ACQUIRED and RENEWED (ages), EXPIRES IN. ``-o wide`` adds the Lease
name, backend, lease transitions and holder pod.

``--verify`` opens each store in scope through its binding Secret and asks the backend
(``list_held``) about every lock: VERIFIED is ``held`` (the backend holds it under this
fencing token), ``stale`` (it does not: the holder died or the lock was broken, and the reaper
has not removed the Lease yet) or ``missing`` (a lock the backend holds with no Lease: mirroring
is off for that holder, or its mirror cannot reach the API server).

``break`` force-releases a lock on the backend (the next holder gets a higher fencing token, so
a protected resource can reject the old holder) and deletes its Lease. It asks first on a
terminal; without one it needs ``--yes``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from lockyard.cli._output import (
    EXIT_OK,
    EXIT_USAGE,
    Cell,
    CliError,
    add_kube_arguments,
    add_output_argument,
    add_scope_arguments,
    column_widths,
    dump,
    human_duration,
    remaining,
    render_table,
    use_color,
)

HEADERS = ("STORE", "LOCK", "HOLDER", "FENCING", "ACQUIRED", "RENEWED", "EXPIRES IN")
WIDE_HEADERS = ("LEASE", "BACKEND", "TRANSITIONS", "POD")

#: VERIFIED values.
HELD, STALE, MISSING, UNKNOWN = "held", "stale", "missing", "unknown"
_VERDICT_COLORS = {HELD: "green", STALE: "red", MISSING: "yellow", UNKNOWN: "dim"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``locks`` (and ``locks break``) to the ``lockyard`` command line."""
    parser = subparsers.add_parser(
        "locks",
        help="list held locks cluster-wide (from their Leases); break one",
        description="List the locks held in the cluster, from the Leases that mirror them.",
        epilog="Exit codes: 0 success, 1 error, 2 usage.",
    )
    add_scope_arguments(parser)
    parser.add_argument("--store", metavar="NAME", help="only this StateStore's locks")
    add_output_argument(parser)
    parser.add_argument(
        "-w", "--watch", action="store_true", help="after listing, print changes as they happen"
    )
    parser.add_argument(
        "--output-watch-events",
        action="store_true",
        help="with --watch, add an EVENT column (ADDED, MODIFIED, DELETED)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        metavar="SECONDS",
        help="give up on the API after this long; with --watch, stop watching then",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="ask each store's backend whether every listed lock is really held",
    )
    add_kube_arguments(parser)
    parser.set_defaults(handler=run_list)

    commands = parser.add_subparsers(dest="locks_command", metavar="COMMAND")
    breaker = commands.add_parser(
        "break",
        help="force-release a lock on its backend",
        description="Force-release LOCK on the backend of StateStore --store, whoever holds "
        "it. The next holder gets a higher fencing token. The lock's Lease is deleted.",
        epilog="Exit codes: 0 broken, 1 error (including: not held), 2 usage (including: "
        "no terminal to confirm on and no --yes).",
    )
    breaker.add_argument("lock", metavar="LOCK", help="the lock's exact name")
    breaker.add_argument("--store", metavar="NAME", required=True, help="the StateStore")
    # SUPPRESS: an option given before `break` (``locks -n ns break x``) must not be reset.
    breaker.add_argument(
        "-n", "--namespace", metavar="NS", default=argparse.SUPPRESS, help="the store's namespace"
    )
    breaker.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    breaker.add_argument("--kubeconfig", metavar="PATH", default=argparse.SUPPRESS)
    breaker.add_argument("--context", metavar="NAME", default=argparse.SUPPRESS)
    breaker.set_defaults(handler=run_break)


# -- reading -----------------------------------------------------------------------------------


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

    def as_dict(self, now: float) -> dict[str, Any]:
        from lockyard.mirror.leases import format_micro_time

        data: dict[str, Any] = {
            "namespace": self.namespace,
            "store": self.store,
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
    from lockyard.mirror.leases import MirroredLease

    rows = []
    for obj in objects:
        lease = MirroredLease.from_object(obj)
        if store is not None and lease.store != store:
            continue
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
            )
        )
    rows.sort(key=lambda r: (r.namespace, r.store, r.lock, r.fencing or 0))
    return rows


# -- rendering ---------------------------------------------------------------------------------


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


# -- list / watch ------------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    """``lockyard locks``."""
    return _list(args, sys.stdout)


def _list(args: argparse.Namespace, stream: TextIO) -> int:
    from lockyard.cli._cluster import api_problem, connect_scope
    from lockyard.mirror.kubeapi import KubeApiError
    from lockyard.mirror.lease_names import store_selector

    if args.output_watch_events and not args.watch:
        raise CliError("--output-watch-events needs --watch", EXIT_USAGE)
    kube, namespace = connect_scope(args)
    try:
        if args.request_timeout:
            kube.timeout = (min(kube.timeout[0], args.request_timeout), args.request_timeout)
        args.resolved_namespace = namespace
        selector = store_selector(args.store)
        try:
            listed = kube.list_leases(namespace, selector)
        except KubeApiError as exc:
            raise api_problem(exc, "listing Leases") from exc
        rows = lease_rows(listed.get("items") or [], args.store)
        code = EXIT_OK
        if args.verify:
            rows, problems = asyncio.run(verify(kube, rows, namespace, args.store))
            for problem in problems:
                print(f"error: {problem}", file=sys.stderr)
            code = 1 if problems else EXIT_OK
        widths = print_rows(rows, args, stream)
        if args.watch:
            resource_version = (listed.get("metadata") or {}).get("resourceVersion")
            watch(kube, args, namespace, selector, resource_version, widths, stream)
        return code
    finally:
        kube.close()


def watch(
    kube: Any,
    args: argparse.Namespace,
    namespace: str | None,
    selector: str,
    resource_version: str | None,
    widths: list[int],
    stream: TextIO,
) -> None:
    """Print each change to the Leases in scope until ``--request-timeout`` (or Ctrl-C)."""
    from lockyard.cli._cluster import api_problem
    from lockyard.mirror.kubeapi import LEASES, KubeApiError

    path = f"{LEASES}/namespaces/{namespace}/leases" if namespace else f"{LEASES}/leases"
    deadline = None if args.request_timeout is None else time.monotonic() + args.request_timeout
    events = args.output_watch_events
    wide = args.output == "wide"
    color = use_color(stream)
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            return
        try:
            for event in kube.watch(
                path,
                query=[("labelSelector", selector)],
                resource_version=resource_version,
                timeout_seconds=None if left is None else max(1, int(left)),
            ):
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    resource_version = None  # 410 Gone: start again from now
                    break
                resource_version = (obj.get("metadata") or {}).get("resourceVersion")
                rows = lease_rows([obj], args.store)
                if not rows:
                    continue
                if args.output in ("json", "yaml"):
                    dump({"type": kind, **rows[0].as_dict(time.time())}, args.output, stream)
                    stream.flush()
                    continue
                cells = table_cells(
                    rows[0],
                    time.time(),
                    all_namespaces=args.all_namespaces,
                    wide=wide,
                    verify=False,
                    deleted=kind == "DELETED",
                )
                if events:
                    cells.insert(0, str(kind))
                if args.verify:
                    cells.append(("-", None))
                plain = [c if isinstance(c, str) else c[0] for c in cells]
                if len(widths) != len(plain):
                    widths = [len(text) for text in plain]
                widths = [max(w, len(text)) for w, text in zip(widths, plain, strict=True)]
                (line,) = render_table([""] * len(cells), [cells], color=color,
                                       no_headers=True, widths=widths)  # fmt: skip
                stream.write(line + "\n")
                stream.flush()
        except KubeApiError as exc:
            raise api_problem(exc, "watching Leases") from exc


# -- verify ------------------------------------------------------------------------------------


async def verify(
    kube: Any, rows: list[Row], namespace: str | None, store: str | None
) -> tuple[list[Row], list[str]]:
    """Mark every row held/stale, add rows for held locks with no Lease; and the problems met."""
    from lockyard.cli._cluster import list_stores

    stores: set[tuple[str, str]] = {(row.namespace, row.store) for row in rows}
    if store is not None:
        if namespace is not None:
            stores.add((namespace, store))
    else:
        for obj in await asyncio.to_thread(list_stores, kube, namespace):
            metadata = obj.get("metadata") or {}
            stores.add((str(metadata.get("namespace", "")), str(metadata.get("name", ""))))
    if store is not None:
        stores = {pair for pair in stores if pair[1] == store}
    outcomes = await asyncio.gather(*(_held_locks(kube, ns, name) for ns, name in sorted(stores)))
    held_by_store = dict(zip(sorted(stores), outcomes, strict=True))
    problems: list[str] = []
    seen: set[tuple[str, str, str]] = set()
    for row in rows:
        outcome = held_by_store.get((row.namespace, row.store))
        if outcome is None or isinstance(outcome, str):
            row.verified = UNKNOWN
            continue
        info = outcome.get(row.lock)
        if info is not None and info.fencing_token == row.fencing:
            row.verified = HELD
            seen.add((row.namespace, row.store, row.lock))
        else:
            row.verified = STALE
            row.note = "not held" if info is None else f"held as fencing {info.fencing_token}"
    extra: list[Row] = []
    now = time.time()
    for (ns, name), outcome in sorted(held_by_store.items()):
        if isinstance(outcome, str):
            problems.append(outcome)
            continue
        for lock, info in sorted(outcome.items()):
            if (ns, name, lock) in seen:
                continue
            extra.append(
                Row(
                    namespace=ns,
                    store=name,
                    lock=lock,
                    holder="",
                    fencing=info.fencing_token,
                    acquired=None,
                    renewed=None,
                    expires_at=now + info.expires_in_ms / 1000,
                    lease="",
                    backend="",
                    transitions=None,
                    pod="",
                    verified=MISSING,
                    note="no Lease",
                )
            )
    merged = sorted([*rows, *extra], key=lambda r: (r.namespace, r.store, r.lock, r.fencing or 0))
    return merged, problems


async def _held_locks(kube: Any, namespace: str, store: str) -> dict[str, Any] | str:
    """The locks the store's backend holds, by name; or a sentence saying why not."""
    from lockyard.cli._cluster import BACKEND_TIMEOUT_S, open_store

    try:
        async with asyncio.timeout(BACKEND_TIMEOUT_S):
            async with open_store(kube, namespace, store) as (connection, _):
                return {info.name: info for info in await connection.locks.list_held()}
    except CliError as exc:
        return str(exc)
    except TimeoutError:
        return f"StateStore {namespace}/{store}: the backend did not answer in time"
    except Exception as exc:  # a backend error: report it, keep verifying the others
        return f"StateStore {namespace}/{store}: {exc}"


# -- break -------------------------------------------------------------------------------------


def run_break(args: argparse.Namespace) -> int:
    """``lockyard locks break LOCK --store S``."""
    return asyncio.run(_break(args, sys.stdin, sys.stdout))


def _confirm(question: str, stdin: TextIO, stream: TextIO) -> bool:
    stream.write(f"{question} [y/N] ")
    stream.flush()
    answer = stdin.readline().strip().lower()
    return answer in ("y", "yes")


async def _break(args: argparse.Namespace, stdin: TextIO, stream: TextIO) -> int:
    from lockyard.cli._cluster import connect, open_store

    if not args.yes and not stdin.isatty():
        raise CliError(
            f"refusing to break lock {args.lock!r} without confirmation: stdin is not a "
            "terminal; pass --yes to break it anyway",
            EXIT_USAGE,
        )
    kube, default_namespace = connect(args)
    namespace = getattr(args, "namespace", None) or default_namespace
    try:
        async with open_store(kube, namespace, args.store) as (connection, _):
            held = {info.name: info for info in await connection.locks.list_held()}
            info = held.get(args.lock)
            if info is None:
                raise CliError(
                    f"lock {args.lock!r} of StateStore {namespace}/{args.store} is not held"
                )
            holder = await asyncio.to_thread(_holder_of, kube, namespace, args.store, args.lock)
            if not args.yes:
                who = f"held by {holder}, " if holder else ""
                question = (
                    f"Break lock {args.lock!r} of StateStore {namespace}/{args.store} "
                    f"({who}fencing token {info.fencing_token})?"
                )
                if not _confirm(question, stdin, stream):
                    raise CliError("not confirmed; nothing was changed")
            broken = await connection.locks.break_lock(args.lock)
        if not broken:
            raise CliError(f"lock {args.lock!r} was released before it could be broken")
        await asyncio.to_thread(
            _delete_leases, kube, namespace, args.store, args.lock, info.fencing_token
        )
        stream.write(
            f"lock {args.lock!r} of StateStore {namespace}/{args.store} broken (fencing token "
            f"{info.fencing_token}); the next holder gets a higher one\n"
        )
        return EXIT_OK
    finally:
        kube.close()


def _store_leases(kube: Any, namespace: str, store: str, lock: str) -> list[Any]:
    from lockyard.mirror.lease_names import store_selector
    from lockyard.mirror.leases import MirroredLease

    listed = kube.list_leases(namespace, store_selector(store))
    leases = [MirroredLease.from_object(obj) for obj in listed.get("items") or []]
    return [lease for lease in leases if lease.is_mirror_of(store, lock)]


def _holder_of(kube: Any, namespace: str, store: str, lock: str) -> str:
    from lockyard.mirror.kubeapi import KubeApiError

    try:
        leases = _store_leases(kube, namespace, store, lock)
    except KubeApiError:
        return ""
    return leases[0].holder if leases else ""


def _delete_leases(kube: Any, namespace: str, store: str, lock: str, fencing: int) -> None:
    """Delete the broken acquisition's Lease(s); a newer holder's is left alone."""
    from lockyard.mirror.kubeapi import KubeApiError

    try:
        for lease in _store_leases(kube, namespace, store, lock):
            if lease.fencing_token is None or lease.fencing_token <= fencing:
                try:
                    kube.delete_lease(namespace, lease.name, lease.resource_version)
                except KubeApiError as exc:
                    if exc.status not in (404, 409):
                        raise
    except KubeApiError as exc:
        # The lock is broken; a Lease left behind is the reaper's to remove.
        print(f"warning: the lock's Lease was not deleted: {exc}", file=sys.stderr)
