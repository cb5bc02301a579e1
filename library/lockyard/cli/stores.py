"""``lockyard stores``: the StateStores in the cluster and their conditions.

    lockyard stores [NAME] [-A | -n NS] [-o table|wide|json|yaml]

Columns: NAMESPACE (with ``-A``), NAME, BACKEND, READY (the ``Ready`` condition), REASON (its
reason), LOCKS (``status.locks.held``), AGE. ``-o wide`` adds the key prefix, the binding Secret,
every condition as ``Type=Status`` and the Ready condition's message. ``-o json``/``yaml`` print
the StateStore objects as a ``List``, as kubectl does.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from lockyard.cli._output import (
    EXIT_OK,
    Cell,
    CliError,
    add_kube_arguments,
    add_output_argument,
    add_scope_arguments,
    dump,
    human_duration,
    render_table,
    use_color,
)

HEADERS = ("NAME", "BACKEND", "READY", "REASON", "LOCKS", "AGE")
WIDE_HEADERS = ("PREFIX", "BINDING", "CONDITIONS", "MESSAGE")
#: Spec members whose backend name differs from the member's.
_BACKEND_NAMES = {"redisSentinel": "redis-sentinel", "redisCluster": "redis-cluster"}
_BACKEND_MEMBERS = (
    "memory",
    "redis",
    "redisSentinel",
    "redisCluster",
    "postgresql",
    "dynamodb",
)
_STATUS_COLORS = {"True": "green", "False": "red", "Unknown": "yellow"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``stores`` to the ``lockyard`` command line."""
    parser = subparsers.add_parser(
        "stores",
        help="list StateStores with their conditions",
        description="List StateStores (lockyard.dev/v1alpha1) with their conditions.",
        epilog="Exit codes: 0 success, 1 error, 2 usage.",
    )
    parser.add_argument("name", nargs="?", metavar="NAME", help="only this StateStore")
    add_scope_arguments(parser)
    add_output_argument(parser)
    add_kube_arguments(parser)
    parser.set_defaults(handler=run_stores)


def run_stores(args: argparse.Namespace) -> int:
    return _stores(args, sys.stdout)


def _stores(args: argparse.Namespace, stream: TextIO) -> int:
    from lockyard.cli._cluster import connect_scope, list_stores

    kube, namespace = connect_scope(args)
    try:
        objects = list_stores(kube, namespace)
    finally:
        kube.close()
    if args.name is not None:
        objects = [o for o in objects if (o.get("metadata") or {}).get("name") == args.name]
        if not objects:
            where = f" in namespace {namespace}" if namespace else ""
            raise CliError(f'statestore "{args.name}" not found{where}')
    objects.sort(key=lambda o: ((o.get("metadata") or {}).get("namespace", ""),
                                (o.get("metadata") or {}).get("name", "")))  # fmt: skip
    if args.output in ("json", "yaml"):
        document = {"apiVersion": "v1", "kind": "List", "items": objects,
                    "metadata": {"resourceVersion": ""}}  # fmt: skip
        dump(document, args.output, stream)
        return EXIT_OK
    if not objects:
        where = "any namespace" if namespace is None else f"{namespace} namespace"
        print(f"No StateStores found in {where}.", file=sys.stderr)
        return EXIT_OK
    wide = args.output == "wide"
    headers = list(HEADERS) + (list(WIDE_HEADERS) if wide else [])
    if args.all_namespaces:
        headers.insert(0, "NAMESPACE")
    now = time.time()
    rows = [store_cells(obj, now, all_namespaces=args.all_namespaces, wide=wide) for obj in objects]
    for line in render_table(headers, rows, color=use_color(stream), no_headers=args.no_headers):
        stream.write(line + "\n")
    return EXIT_OK


def backend_of(obj: dict[str, Any]) -> str:
    status_backend = ((obj.get("status") or {}).get("backend") or {}).get("name")
    if isinstance(status_backend, str) and status_backend:
        return status_backend
    spec = obj.get("spec") or {}
    member = next((m for m in _BACKEND_MEMBERS if spec.get(m) is not None), None)
    return "<unknown>" if member is None else _BACKEND_NAMES.get(member, member)


def store_cells(obj: dict[str, Any], now: float, *, all_namespaces: bool, wide: bool) -> list[Cell]:
    from lockyard.mirror.leases import parse_time

    metadata = obj.get("metadata") or {}
    status = obj.get("status") or {}
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, dict)]
    ready = next((c for c in conditions if c.get("type") == "Ready"), {})
    ready_status = str(ready.get("status") or "Unknown")
    held = (status.get("locks") or {}).get("held")
    created = parse_time(metadata.get("creationTimestamp"))
    cells: list[Cell] = [
        str(metadata.get("name", "")),
        backend_of(obj),
        (ready_status, _STATUS_COLORS.get(ready_status)),
        str(ready.get("reason") or "<none>"),
        "<unknown>" if held is None else str(held),
        "<unknown>" if created is None else human_duration(now - created),
    ]
    if all_namespaces:
        cells.insert(0, str(metadata.get("namespace", "")))
    if wide:
        summary = ",".join(f"{c.get('type')}={c.get('status')}" for c in conditions)
        message = " ".join(str(ready.get("message") or "").split())
        cells += [
            str(status.get("prefix") or "<none>"),
            str((status.get("binding") or {}).get("name") or "<none>"),
            summary or "<none>",
            message or "<none>",
        ]
    return cells
