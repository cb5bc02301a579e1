"""``lockyard locks --verify`` and ``lockyard locks break``: the two that ask a store's backend.

Both open the store through its binding Secret (:func:`lockyard.cli._cluster.open_store`), on
the CLI's API client run in worker threads (:class:`lockyard.kube.api.KubeApi`). ``break``
deletes the broken acquisition's Lease through the mirror's own
:class:`~lockyard.mirror.lease_writer.LeaseWriter` (conditional on the version read).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any, TextIO

from lockyard.cli._cluster import BACKEND_TIMEOUT_S, connect, list_stores, open_store
from lockyard.cli._lock_rows import HELD, MISSING, STALE, UNKNOWN, Row
from lockyard.cli._output import EXIT_OK, EXIT_USAGE, CliError
from lockyard.kube.api import KubeApi
from lockyard.kube.client import KubeClient
from lockyard.kube.errors import KubeApiError
from lockyard.mirror.lease_writer import LeaseWriter
from lockyard.mirror.leases import MirroredLease


async def verify(
    kube: KubeClient, rows: list[Row], namespace: str | None, store: str | None
) -> tuple[list[Row], list[str]]:
    """Mark every row held/stale, add rows for held locks with no Lease; and the problems met."""
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
    async with KubeApi(kube) as api:
        outcomes = await asyncio.gather(
            *(_held_locks(api, ns, name) for ns, name in sorted(stores))
        )
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


async def _held_locks(api: KubeApi, namespace: str, store: str) -> dict[str, Any] | str:
    """The locks the store's backend holds, by name; or a sentence saying why not."""
    try:
        async with asyncio.timeout(BACKEND_TIMEOUT_S):
            async with open_store(api, namespace, store) as (connection, _):
                return {info.name: info for info in await connection.locks.list_held()}
    except CliError as exc:
        return str(exc)
    except TimeoutError:
        return f"StateStore {namespace}/{store}: the backend did not answer in time"
    except Exception as exc:  # a backend error: report it, keep verifying the others
        return f"StateStore {namespace}/{store}: {exc}"


def _confirm(question: str, stdin: TextIO, stream: TextIO) -> bool:
    stream.write(f"{question} [y/N] ")
    stream.flush()
    answer = stdin.readline().strip().lower()
    return answer in ("y", "yes")


async def break_lock(args: argparse.Namespace, stdin: TextIO, stream: TextIO) -> int:
    """``lockyard locks break LOCK --store S``: force-release on the backend, delete the Lease."""
    if not args.yes and not stdin.isatty():
        raise CliError(
            f"refusing to break lock {args.lock!r} without confirmation: stdin is not a "
            "terminal; pass --yes to break it anyway",
            EXIT_USAGE,
        )
    kube, default_namespace = connect(args)
    namespace = getattr(args, "namespace", None) or default_namespace
    try:
        async with KubeApi(kube) as api:
            leases = LeaseWriter(api, args.store, namespace)
            async with open_store(api, namespace, args.store) as (connection, _):
                held = {info.name: info for info in await connection.locks.list_held()}
                info = held.get(args.lock)
                if info is None:
                    raise CliError(
                        f"lock {args.lock!r} of StateStore {namespace}/{args.store} is not held"
                    )
                if not args.yes:
                    holder = await _holder_of(leases, args.lock)
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
            await _delete_leases(leases, args.lock, info.fencing_token)
        stream.write(
            f"lock {args.lock!r} of StateStore {namespace}/{args.store} broken (fencing token "
            f"{info.fencing_token}); the next holder gets a higher one\n"
        )
        return EXIT_OK
    finally:
        kube.close()


async def _leases_of(leases: LeaseWriter, lock: str) -> list[MirroredLease]:
    found = [MirroredLease.from_object(obj) for obj in await leases.list()]
    return [lease for lease in found if lease.is_mirror_of(leases.store, lock)]


async def _holder_of(leases: LeaseWriter, lock: str) -> str:
    try:
        found = await _leases_of(leases, lock)
    except KubeApiError:
        return ""
    return found[0].holder if found else ""


async def _delete_leases(leases: LeaseWriter, lock: str, fencing: int) -> None:
    """Retire the broken acquisition's Lease(s) (delete; an election's is released); a newer
    holder's is left alone."""
    try:
        for lease in await _leases_of(leases, lock):
            if lease.fencing_token is None or lease.fencing_token <= fencing:
                try:
                    await leases.retire(lease)  # an election's Lease stays, naming no leader
                except KubeApiError as exc:
                    if not exc.conflict:
                        raise
    except KubeApiError as exc:
        # The lock is broken; a Lease left behind is the reaper's to remove.
        print(f"warning: the lock's Lease was not deleted: {exc}", file=sys.stderr)
