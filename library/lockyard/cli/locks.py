"""``lockyard locks``: every held lock in the cluster, from the Leases that mirror them.

    lockyard locks [-A | -n NS] [--store NAME] [-o table|wide|json|yaml] [--watch] [--verify]
    lockyard locks break LOCK --store NAME [-n NS] [--kind K] [--fencing TOKEN | --all] [--yes]

Listing costs one LIST request whatever the scope (``-A`` is one cluster-wide LIST with the
``app.kubernetes.io/managed-by=lockyard`` label selector), so a thousand locks print in well
under two seconds. Columns: NAMESPACE (with ``-A``, as kubectl), STORE, KIND (``lock``;
``election`` for the lock ``election/N`` a leader of ``ly.elections`` holds; ``semaphore``,
``rwlock-read`` or ``rwlock-write`` for one semaphore permit or read-write lock holder, each its
own Lease), LOCK (the exact name, from the ``lockyard.dev/lock`` annotation), HOLDER (pod or
host, and the acquisition's owner token prefix), FENCING, ACQUIRED and RENEWED (ages), EXPIRES
IN. ``-o wide`` adds the Lease name, backend, lease transitions and holder pod.

``--verify`` opens each store in scope through its binding Secret and asks the backend
(``list_held`` of its locks, semaphores and read-write locks) about every lock and permit: VERIFIED
is ``held`` (the backend holds it under this fencing token), ``stale`` (it does not: the holder
died or the lock was broken, and the reaper has not removed the Lease yet) or ``missing`` (a lock
the backend holds with no Lease: mirroring is off for that holder, or its mirror cannot reach the
API server).

``break`` force-releases a lock on the backend (the next holder gets a higher fencing token, so
a protected resource can reject the old holder) and deletes its Lease. A semaphore permit or a
read-write lock holder is broken the same way, one holder at a time (``--kind``, ``--fencing``)
or ``--all``: its ``hold()`` learns it lost at its next renewal, and its fenced writes are
refused from the break on. It asks first on a terminal; without one it needs ``--yes``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import TYPE_CHECKING, TextIO

from lockyard.cli._lock_rows import lease_rows, print_rows, table_cells
from lockyard.cli._output import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    add_kube_arguments,
    add_output_argument,
    add_scope_arguments,
    dump,
    render_table,
    use_color,
)

if TYPE_CHECKING:
    from lockyard.kube.client import KubeClient


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
        help="force-release a lock (or a semaphore permit, a read-write holder) on its backend",
        description="Force-release LOCK on the backend of StateStore --store, whoever holds "
        "it. The next holder gets a higher fencing token. The lock's Lease is deleted. "
        "For a semaphore or a read-write lock of that name, break one holder (--fencing) or "
        "--all; the holder's hold() learns it lost at its next renewal.",
        epilog="Exit codes: 0 broken, 1 error (including: not held), 2 usage (including: "
        "no terminal to confirm on and no --yes).",
    )
    breaker.add_argument("lock", metavar="LOCK", help="the lock's exact name")
    breaker.add_argument("--store", metavar="NAME", required=True, help="the StateStore")
    # SUPPRESS: an option given before `break` (``locks -n ns break x``) must not be reset.
    breaker.add_argument(
        "-n", "--namespace", metavar="NS", default=argparse.SUPPRESS, help="the store's namespace"
    )
    breaker.add_argument(
        "--kind",
        choices=("lock", "election", "semaphore", "rwlock", "rwlock-read", "rwlock-write"),
        help="what LOCK is, when a lock, a semaphore or a read-write lock share its name",
    )
    breaker.add_argument(
        "--fencing",
        type=int,
        metavar="TOKEN",
        help="the holder to break, when several hold LOCK (semaphore permits, readers)",
    )
    breaker.add_argument(
        "--all", action="store_true", help="break every holder that matches, not just one"
    )
    breaker.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    breaker.add_argument("--kubeconfig", metavar="PATH", default=argparse.SUPPRESS)
    breaker.add_argument("--context", metavar="NAME", default=argparse.SUPPRESS)
    breaker.set_defaults(handler=run_break)


def run_break(args: argparse.Namespace) -> int:
    """``lockyard locks break LOCK --store S``."""
    from lockyard.cli._lock_checks import break_lock

    return asyncio.run(break_lock(args, sys.stdin, sys.stdout))


# -- list / watch ------------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    """``lockyard locks``."""
    return _list(args, sys.stdout)


def _list(args: argparse.Namespace, stream: TextIO) -> int:
    from lockyard.cli._cluster import api_problem, connect_scope
    from lockyard.kube.errors import KubeApiError
    from lockyard.kube.paths import leases_path
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
            listed = kube.get(leases_path(namespace), {"labelSelector": selector})
        except KubeApiError as exc:
            raise api_problem(exc, "listing Leases") from exc
        rows = lease_rows(listed.get("items") or [], args.store)
        code = EXIT_OK
        if args.verify:
            from lockyard.cli._lock_checks import verify

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
    kube: KubeClient,
    args: argparse.Namespace,
    namespace: str | None,
    selector: str,
    resource_version: str | None,
    widths: list[int],
    stream: TextIO,
) -> None:
    """Print each change to the Leases in scope until ``--request-timeout`` (or Ctrl-C)."""
    from lockyard.cli._cluster import api_problem
    from lockyard.kube.errors import KubeApiError
    from lockyard.kube.paths import leases_path

    path = leases_path(namespace)
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
                params={"labelSelector": selector},
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
