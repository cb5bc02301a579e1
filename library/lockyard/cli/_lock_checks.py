"""``lockyard locks --verify`` and ``lockyard locks break``: the two that ask a store's backend.

Both open the store through its binding Secret (:func:`lockyard.cli._cluster.open_store`), on
the CLI's API client run in worker threads (:class:`lockyard.kube.api.KubeApi`), and compare
Leases with what the backend holds: locks, semaphore permits and read-write lock holders
(:mod:`lockyard.mirror.held`). ``break`` deletes the broken acquisition's Lease through the
mirror's own :class:`~lockyard.mirror.lease_writer.LeaseWriter` (conditional on the version
read). Breaking a permit or a read-write holder is one round trip: the backend's own release
of that owner's permit (which also signals the waiters that now fit).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import TextIO

from lockyard.cli._cluster import BACKEND_TIMEOUT_S, connect, list_stores, open_store
from lockyard.cli._lock_rows import HELD, MISSING, STALE, UNKNOWN, Row, sort_key
from lockyard.cli._output import EXIT_OK, EXIT_USAGE, CliError
from lockyard.connection import Connection
from lockyard.kube.api import KubeApi
from lockyard.kube.client import KubeClient
from lockyard.kube.errors import KubeApiError
from lockyard.mirror.held import Held, held_acquisitions
from lockyard.mirror.lease_names import LOCK_KIND, PERMIT_KINDS
from lockyard.mirror.lease_writer import LeaseWriter
from lockyard.mirror.leases import MirroredLease
from lockyard.mirror.registry import permit_tables

#: ``--kind`` of ``locks break``, and the kinds of acquisition each one names.
BREAK_KINDS = {
    "lock": ("lock", "election"),
    "election": ("election",),
    "semaphore": ("semaphore",),
    "rwlock": ("rwlock-read", "rwlock-write"),
    "rwlock-read": ("rwlock-read",),
    "rwlock-write": ("rwlock-write",),
}
#: How an acquisition of each kind is named in messages.
_WHAT = {
    "semaphore": "semaphore permit",
    "rwlock-read": "read lock",
    "rwlock-write": "write lock",
}


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
        entry = outcome.get(row.key)
        if entry is not None and entry.info.fencing_token == row.fencing:
            row.verified = HELD
            seen.add((row.namespace, row.store, row.key))
        else:
            row.verified = STALE
            row.note = (
                "not held" if entry is None else f"held as fencing {entry.info.fencing_token}"
            )
    extra: list[Row] = []
    now = time.time()
    for (ns, name), outcome in sorted(held_by_store.items()):
        if isinstance(outcome, str):
            problems.append(outcome)
            continue
        for key, entry in sorted(outcome.items()):
            if (ns, name, key) in seen:
                continue
            info = entry.info
            extra.append(
                Row(
                    namespace=ns,
                    store=name,
                    lock=info.name,
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
                    permit_kind=entry.kind if entry.space else "",
                )
            )
    merged = sorted([*rows, *extra], key=sort_key)
    return merged, problems


async def _held_locks(api: KubeApi, namespace: str, store: str) -> dict[str, Held] | str:
    """What the store's backend holds (locks, permits, read-write holders) by Lease key; or
    a sentence saying why not."""
    try:
        async with asyncio.timeout(BACKEND_TIMEOUT_S):
            async with open_store(api, namespace, store) as (connection, _):
                return await held_acquisitions(connection.locks, permit_tables(connection))
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
    """``lockyard locks break NAME --store S``: force-release on the backend, delete the Lease.

    NAME is a lock, or a semaphore or read-write lock: then each live holder is its own
    acquisition, chosen by ``--kind`` and ``--fencing`` (or all of them with ``--all``).
    """
    if not args.yes and not stdin.isatty():
        raise CliError(
            f"refusing to break lock {args.lock!r} without confirmation: stdin is not a "
            "terminal; pass --yes to break it anyway",
            EXIT_USAGE,
        )
    kube, default_namespace = connect(args)
    namespace = getattr(args, "namespace", None) or default_namespace
    where = f"StateStore {namespace}/{args.store}"
    try:
        async with KubeApi(kube) as api:
            leases = LeaseWriter(api, args.store, namespace)
            async with open_store(api, namespace, args.store) as (connection, _):
                targets = await _targets(connection, args, where)
                if not args.yes:
                    question = await _question(leases, targets, args.lock, where)
                    if not _confirm(question, stdin, stream):
                        raise CliError("not confirmed; nothing was changed")
                broken = [entry for entry in targets if await _break(connection, entry)]
            if not broken:
                raise CliError(f"{args.lock!r} was released before it could be broken")
            await _delete_leases(leases, broken)
        for entry in broken:
            fencing = entry.info.fencing_token
            if entry.space is None:
                stream.write(
                    f"lock {args.lock!r} of {where} broken (fencing token {fencing}); the next "
                    "holder gets a higher one\n"
                )
            else:
                stream.write(
                    f"{_WHAT[entry.kind]} {args.lock!r} of {where} broken (fencing token "
                    f"{fencing}); its holder learns it lost at its next renewal\n"
                )
        return EXIT_OK
    finally:
        kube.close()


async def _targets(connection: Connection, args: argparse.Namespace, where: str) -> list[Held]:
    """The live acquisitions named by NAME, ``--kind`` and ``--fencing`` (all of them, or
    exactly one unless ``--all``)."""
    if args.kind:
        allowed = set(BREAK_KINDS[args.kind])
    else:
        allowed = {kind for kinds in BREAK_KINDS.values() for kind in kinds}
    spaces = {PERMIT_KINDS[kind] for kind in allowed if kind in PERMIT_KINDS}
    locks = connection.locks if allowed & {LOCK_KIND, "election"} else None
    tables = [table for table in permit_tables(connection) if table.space in spaces]
    held = await held_acquisitions(locks, tables)
    targets = [
        entry
        for entry in held.values()
        if entry.name == args.lock
        and entry.kind in allowed
        and (args.fencing is None or entry.info.fencing_token == args.fencing)
    ]
    if not targets:
        what = "lock" if args.kind is None else _WHAT.get(args.kind, args.kind)
        raise CliError(f"{what} {args.lock!r} of {where} is not held")
    targets.sort(key=lambda entry: (entry.kind, entry.info.fencing_token))
    if len(targets) > 1 and not args.all:
        found = ", ".join(
            f"{_WHAT.get(entry.kind, entry.kind)} (fencing token {entry.info.fencing_token})"
            for entry in targets
        )
        raise CliError(
            f"{args.lock!r} of {where} has {len(targets)} holders: {found}; pass --kind and "
            "--fencing TOKEN to break one, or --all to break them all",
            EXIT_USAGE,
        )
    return targets


async def _question(leases: LeaseWriter, targets: list[Held], name: str, where: str) -> str:
    holders = await _holders(leases)
    parts = []
    for entry in targets:
        holder = holders.get(entry.key, "")
        who = f"held by {holder}, " if holder else ""
        parts.append(f"{who}fencing token {entry.info.fencing_token}")
    what = "lock" if targets[0].space is None else _WHAT[targets[0].kind]
    if len(targets) == 1:
        return f"Break {what} {name!r} of {where} ({parts[0]})?"
    return f"Break all {len(targets)} holders of {name!r} of {where} ({'; '.join(parts)})?"


async def _break(connection: Connection, entry: Held) -> bool:
    """Break one acquisition on the backend (one round trip); ``False`` if it was over."""
    if entry.space is None:
        return await connection.locks.break_lock(entry.name)
    if entry.space == "semaphore":
        return await connection.semaphores.break_permit(entry.name, entry.info.owner)
    return await connection.rwlocks.break_holder(entry.name, entry.info.owner)


async def _store_leases(leases: LeaseWriter) -> list[MirroredLease]:
    """The store's Leases (one LIST)."""
    return [MirroredLease.from_object(obj) for obj in await leases.list()]


async def _holders(leases: LeaseWriter) -> dict[str, str]:
    """Each Lease's holder by its key (empty when the API cannot say: only for the question)."""
    try:
        return {lease.key: lease.holder for lease in await _store_leases(leases)}
    except KubeApiError:
        return {}


async def _delete_leases(leases: LeaseWriter, broken: list[Held]) -> None:
    """Retire the broken acquisitions' Leases (delete; an election's is released); a newer
    holder's is left alone."""
    try:
        found = await _store_leases(leases)
        for entry in broken:
            fencing = entry.info.fencing_token
            for lease in found:
                if not lease.is_mirror_of(leases.store, entry.key):
                    continue
                if lease.fencing_token is None or lease.fencing_token <= fencing:
                    try:
                        await leases.retire(lease)  # an election's stays, naming no leader
                    except KubeApiError as exc:
                        if not exc.conflict:
                            raise
    except KubeApiError as exc:
        # The lock is broken; a Lease left behind is the reaper's to remove.
        print(f"warning: the lock's Lease was not deleted: {exc}", file=sys.stderr)
