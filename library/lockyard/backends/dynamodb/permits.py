"""DynamoDB permit tables (semaphores, read-write locks): one item per name, conditional writes.

The item ``P#s#<name>`` (semaphores) or ``P#w#<name>`` (read-write locks) holds the limit
``lim``, the fencing counter ``fence`` (never removed), a version ``ver`` that every grant
bumps, the holders ``h`` (owner -> ``{w: weight, dl: lease end ms, t: token}``) and the queue
``q`` (owner -> ``{w, dl: waiter lease end ms, at: first join ms}``; order by ``(at, owner)``,
client clocks). A condition expression cannot sum a map, so the rule of :mod:`lockyard.permits`
is applied by the client to its latest view of the item, and the grant is a write conditioned
on what the decision relied on: no grant since that view (``ver``), and every holder it counted
as expired still expired at the deadline it saw (not extended by a holder whose clock runs
behind). Releases only make room, so they do not disturb a grant. A refused condition returns
the current item, which becomes the next view.

Cost: a grant is one conditional write when the client's view is current (it keeps the item
each write returns); a stale view costs one more. A refusal is decided on a view read in the
same call: a consistent ``GetItem``, or for a waiting caller the write that renews its queue
entry. Release, extend and leaving the queue are one write each. No release signal exists, so
waiters poll (as DynamoDB locks do) and the queue orders who may take a permit when they do.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final

from lockyard.errors import BackendError
from lockyard.operations import OperationRunner
from lockyard.permits import HolderInfo, PermitAttempt, PermitTable
from lockyard.rwlocks import ReadWriteLocks
from lockyard.semaphores import Semaphores

from . import layout
from .client import ConditionFailed, TableClient
from .items import Item, as_n, as_s, int_of

#: The tag after ``P#`` of each space's items.
SPACE_TAGS: Final = {"semaphore": "s", "rwlock": "w"}
#: Conditional writes one attempt makes at most before giving up (each needs a concurrent
#: change of the same name in between).
MAX_ROUNDS: Final = 8
#: Rounds of a waiting caller's attempt (it is refused, and re-attempts, after these).
WAITING_ROUNDS: Final = 2
#: A queued waiter polls this much more slowly per holder that must leave before it fits
#: (beyond the first), up to this many steps (and a third of its waiter lease).
CALM_STEP_MS: Final = 50
MAX_CALM_STEPS: Final = 20
#: A queue entry whose waiter lease ended this long ago is removed by the next grant (a live
#: waiter renews its entry well within its waiter lease, so it cannot be one of them).
STALE_WAITER_MS: Final = 10_000


@dataclass(frozen=True, slots=True)
class _Entry:
    weight: int
    deadline_ms: int
    token_or_joined: int


def _entries(item: Item | None, attribute: str, third: str) -> dict[str, _Entry]:
    if not item or attribute not in item:
        return {}
    return {
        owner: _Entry(int(v["M"]["w"]["N"]), int(v["M"]["dl"]["N"]), int(v["M"][third]["N"]))
        for owner, v in item[attribute]["M"].items()
    }


@dataclass(slots=True)
class _View:
    """What the client decides on: the item as last seen (``None``: it does not exist)."""

    item: Item | None

    @property
    def limit(self) -> int | None:
        return None if not self.item or "lim" not in self.item else int_of(self.item, "lim")

    @property
    def fencing(self) -> int:
        return (
            0
            if not self.item or layout.FENCING not in self.item
            else int_of(self.item, layout.FENCING)
        )

    @property
    def version(self) -> int | None:
        return (
            None
            if not self.item or layout.VERSION not in self.item
            else int_of(self.item, layout.VERSION)
        )

    def holders(self) -> dict[str, _Entry]:
        return _entries(self.item, "h", "t")

    def waiters(self) -> dict[str, _Entry]:
        return _entries(self.item, "q", "at")


def _item_map(entries: dict[str, Any]) -> dict[str, Any]:
    return {"M": {k: as_n(v) for k, v in entries.items()}}


class DynamoDBPermits(PermitTable):
    #: No release signal exists in DynamoDB: waiters poll, at least this often once backed off.
    poll_cap_s = 0.1

    def __init__(self, runner: OperationRunner, space: str, table: TableClient) -> None:
        super().__init__(runner, space, table.clock)
        self._t = table
        self._client = table.client
        self._tag = SPACE_TAGS[space]
        self._views: dict[str, _View] = {}
        #: When each waiting (name, owner) first joined the queue (its place in it).
        self._joined: dict[tuple[str, str], int] = {}

    def key(self, name: str) -> Item:
        return self._t.pk(self._tag, name)

    def _remember(self, name: str, item: Item | None) -> _View:
        view = self._views[name] = _View(item)
        if len(self._views) > 4096:  # a cache, not a registry: forget the oldest
            del self._views[next(iter(self._views))]
        return view

    async def _read(self, name: str) -> _View:
        response = await self._t.call(
            self._client.get_item, Key=self.key(name), ConsistentRead=True
        )
        return self._remember(name, response.get("Item"))

    # -- the rule -------------------------------------------------------------------------
    def _fits(
        self, view: _View, owner: str, weight: int, limit: int, waiting: bool, count_queue: bool,
        now: int,
    ) -> bool:  # fmt: skip
        used = sum(h.weight for h in view.holders().values() if h.deadline_ms > now)
        ahead = 0
        if waiting or count_queue:
            place = self._place(view, owner) if waiting else None
            ahead = sum(
                w.weight
                for o, w in view.waiters().items()
                if w.deadline_ms > now and o != owner
                and (place is None or (w.token_or_joined, o) < place)
            )  # fmt: skip
        return used + ahead + weight <= limit

    def _place(self, view: _View, owner: str) -> tuple[int, str] | None:
        entry = view.waiters().get(owner)
        return None if entry is None else (entry.token_or_joined, owner)

    def _calm_ms(
        self, view: _View, owner: str, weight: int, limit: int, wait_ms: int | None, now: int
    ) -> int | None:
        """How long a queued waiter may wait before its next poll: ``CALM_STEP_MS`` per holder
        that must leave before it fits, beyond the first (the head polls at the usual pace),
        and never so long that its queue entry lapses."""
        if wait_ms is None:
            return None
        used = sum(h.weight for h in view.holders().values() if h.deadline_ms > now)
        place = self._place(view, owner)
        ahead = sum(
            w.weight
            for o, w in view.waiters().items()
            if w.deadline_ms > now and o != owner
            and (place is None or (w.token_or_joined, o) < place)
        )  # fmt: skip
        must_leave = min(used + ahead + weight - limit, MAX_CALM_STEPS)
        if must_leave <= 1:
            return None
        return min((must_leave - 1) * CALM_STEP_MS, wait_ms // 3)

    @staticmethod
    def _entry_fresh(view: _View | None, owner: str, wait_ms: int, now: int) -> bool:
        """Whether ``owner``'s queue entry (in ``view``) has more than half its lease left."""
        entry = None if view is None else view.waiters().get(owner)
        return entry is not None and entry.deadline_ms - now > wait_ms / 2

    @staticmethod
    def _retry_after(view: _View, owner: str, now: int) -> int:
        live = [h.deadline_ms for h in view.holders().values() if h.deadline_ms > now]
        if not live:
            waiting = [w for o, w in view.waiters().items() if w.deadline_ms > now and o != owner]
            live = [min(waiting, key=lambda w: w.token_or_joined).deadline_ms] if waiting else []
        return max(0, min(live) - now) if live else 0

    # -- writes ---------------------------------------------------------------------------
    async def _grant(
        self, name: str, view: _View, owner: str, weight: int, limit: int, ttl_ms: int, now: int
    ) -> Item | ConditionFailed:
        """Add ``owner`` as a holder if the item is still as ``view`` saw it. The token is the
        view's counter + 1: only grants move the counter, and each moves the version too."""
        token = view.fencing + 1
        holder = _item_map({"w": weight, "dl": now + ttl_ms, "t": token})
        names: dict[str, str] = {}
        values: Item = {
            ":token": as_n(token),
            ":one": as_n(1),
            ":zero": as_n(0),
            ":lim": as_n(limit),
            ":kp": as_s(f"{self._t.prefix}#{self._tag}"),
            ":name": as_s(name),
        }
        if view.item and "h" in view.item:
            sets = ["h.#me = :holder"]
            values[":holder"] = holder
            names["#me"] = owner
        else:
            sets = ["h = :holders"]
            values[":holders"] = {"M": {owner: holder}}
        sets.append(
            "fence = :token, ver = if_not_exists(ver, :zero) + :one, "
            "lim = if_not_exists(lim, :lim), kp = :kp, k = :name"
        )
        removed: list[str] = []
        unchanged: list[str] = []
        for number, (other, held) in enumerate(view.holders().items()):
            if held.deadline_ms <= now:
                names[f"#x{number}"] = other
                values[f":x{number}"] = as_n(held.deadline_ms)
                removed.append(f"h.#x{number}")
                unchanged.append(f"h.#x{number}.dl = :x{number}")
        if view.item and "q" in view.item:
            names["#me"] = owner
            removed.append("q.#me")
            for number, (other, waiter) in enumerate(view.waiters().items()):
                if other != owner and waiter.deadline_ms < now - STALE_WAITER_MS:
                    names[f"#y{number}"] = other
                    removed.append(f"q.#y{number}")
        update = "SET " + ", ".join(sets)
        if removed:
            update += " REMOVE " + ", ".join(removed)
        version = view.version
        if version is None:
            condition = "attribute_not_exists(ver)"
        else:
            condition = "ver = :ver"
            values[":ver"] = as_n(version)
        condition = " AND ".join([condition, *unchanged])
        params: dict[str, Any] = {}
        if names:
            params["ExpressionAttributeNames"] = names
        result = await self._t.write(
            self._client.update_item,
            Key=self.key(name),
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
            **params,
        )
        if isinstance(result, ConditionFailed):
            return result
        item: Item = result["Attributes"]
        return item

    async def _enqueue(self, name: str, owner: str, weight: int, wait_ms: int, now: int) -> _View:
        """Join the queue or renew the entry (keeping its place); the item as written."""
        joined = self._joined.setdefault((name, owner), now)
        entry = _item_map({"w": weight, "dl": now + wait_ms, "at": joined})
        for _ in range(MAX_ROUNDS):
            result = await self._t.write(
                self._client.update_item,
                Key=self.key(name),
                UpdateExpression="SET q.#me = :entry",
                ConditionExpression="attribute_exists(q)",
                ExpressionAttributeNames={"#me": owner},
                ExpressionAttributeValues={":entry": entry},
                ReturnValues="ALL_NEW",
            )
            if not isinstance(result, ConditionFailed):
                return self._remember(name, result["Attributes"])
            result = await self._t.write(
                self._client.update_item,
                Key=self.key(name),
                UpdateExpression="SET q = :queue",
                ConditionExpression="attribute_not_exists(q)",
                ExpressionAttributeValues={":queue": {"M": {owner: entry}}},
                ReturnValues="ALL_NEW",
            )
            if not isinstance(result, ConditionFailed):
                return self._remember(name, result["Attributes"])
        raise BackendError(f"dynamodb: queueing for {name!r} kept racing concurrent writers")

    async def _acquire(
        self,
        name: str,
        owner: str,
        weight: int,
        limit: int,
        ttl_ms: int,
        wait_ms: int | None,
        count_queue: bool,
    ) -> PermitAttempt:
        view = self._views.get(name)
        fresh = False
        # A waiting caller re-attempts anyway: it gives the write up early under contention
        # rather than hold an attempt open (every round is a request to the same item).
        for _ in range(MAX_ROUNDS if wait_ms is None else WAITING_ROUNDS):
            now = self._t.now_ms()
            if view is not None:
                first = view.limit
                if first is not None and first != limit:
                    if fresh:  # a cached item may be from before a purge: read it first
                        return PermitAttempt(None, limit_conflict=first)
                elif self._fits(view, owner, weight, limit, wait_ms is not None, count_queue, now):
                    result = await self._grant(name, view, owner, weight, limit, ttl_ms, now)
                    if not isinstance(result, ConditionFailed):
                        self._remember(name, result)
                        self._joined.pop((name, owner), None)
                        return PermitAttempt(int_of(result, layout.FENCING))
                    view, fresh = self._remember(name, result.old), True
                    continue
                elif fresh:
                    retry = self._retry_after(view, owner, now)
                    calm = self._calm_ms(view, owner, weight, limit, wait_ms, now)
                    return PermitAttempt(None, retry, queued=wait_ms is not None, calm_ms=calm)
            if wait_ms is not None and not self._entry_fresh(view, owner, wait_ms, now):
                view = await self._enqueue(name, owner, weight, wait_ms, now)
            else:
                # A read costs less than a write, and the entry has most of its lease left.
                view = await self._read(name)
            fresh = True
        if wait_ms is not None:
            return PermitAttempt(None, 0, queued=True)
        raise BackendError(f"dynamodb: an attempt on {name!r} kept racing concurrent writers")

    async def _held_write(self, name: str, owner: str, update: str, values: Item) -> bool:
        now = self._t.now_ms()
        result = await self._t.write(
            self._client.update_item,
            Key=self.key(name),
            UpdateExpression=update,
            ConditionExpression="h.#me.dl > :now",
            ExpressionAttributeNames={"#me": owner},
            ExpressionAttributeValues={**values, ":now": as_n(now)},
            ReturnValues="ALL_NEW",
        )
        if isinstance(result, ConditionFailed):
            return False
        self._remember(name, result["Attributes"])
        return True

    async def _extend(self, name: str, owner: str, ttl_ms: int) -> bool:
        # A grant that judged this holder expired (by its own clock) names its old deadline in
        # its condition, so this change makes that grant fail.
        values = {":dl": as_n(self._t.now_ms() + ttl_ms)}
        return await self._held_write(name, owner, "SET h.#me.dl = :dl", values)

    async def _release(self, name: str, owner: str) -> bool:
        return await self._held_write(name, owner, "REMOVE h.#me", {})

    async def _is_held(self, name: str, owner: str) -> bool:
        response = await self._t.call(
            self._client.get_item,
            Key=self.key(name),
            ConsistentRead=True,
            ProjectionExpression="h.#me",
            ExpressionAttributeNames={"#me": owner},
        )
        holder = _View(response.get("Item")).holders().get(owner)
        return holder is not None and holder.deadline_ms > self._t.now_ms()

    async def _leave_queue(self, name: str, owner: str) -> None:
        self._joined.pop((name, owner), None)
        await self._t.write(
            self._client.update_item,
            Key=self.key(name),
            UpdateExpression="REMOVE q.#me",
            ConditionExpression="attribute_exists(q)",
            ExpressionAttributeNames={"#me": owner},
        )

    async def _list_held(self) -> list[HolderInfo]:
        items = await self._t.query(
            IndexName=layout.BY_KIND,
            KeyConditionExpression=layout.KEYS_OF_PART,
            ProjectionExpression=layout.SORT_KEY,
            ExpressionAttributeValues={":kp": as_s(f"{self._t.prefix}#{self._tag}")},
        )
        names = [item[layout.SORT_KEY]["S"] for item in items]
        views = await asyncio.gather(*(self._read(name) for name in names))
        now = self._t.now_ms()
        return [
            HolderInfo(
                name, owner, h.token_or_joined, h.deadline_ms - now, h.weight, view.limit or 0
            )
            for name, view in zip(names, views, strict=True)
            for owner, h in view.holders().items()
            if h.deadline_ms > now
        ]


def permit_managers(
    runner: OperationRunner, table: TableClient
) -> tuple[Semaphores, ReadWriteLocks]:
    """``ly.semaphores`` and ``ly.rwlocks`` of a DynamoDB backend."""
    return (
        Semaphores(DynamoDBPermits(runner, "semaphore", table)),
        ReadWriteLocks(DynamoDBPermits(runner, "rwlock", table)),
    )
