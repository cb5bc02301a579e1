"""Blocking leader elections: ``ly.elections`` of a :class:`lockyard.sync.Connection`.

``with ly.elections.campaign(name, identity) as leadership:`` runs the async campaign for as
long as the block runs (:mod:`.scope`: a lost term reaches the thread as a lost hold does);
``leadership = ly.elections.campaign(name, identity).wait()`` is ``await campaign``: the term is
renewed in the background until ``leadership.resign()``, and ``leadership.lost`` is set if it
ends otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lockyard.durations import Duration
from lockyard.elections import DEFAULT_LEADER_TTL_S
from lockyard.elections import Campaign as AsyncCampaign
from lockyard.elections import Elections as AsyncElections
from lockyard.elections import Leadership as AsyncLeadership
from lockyard.sync.bridge import Bridged, blocking, blocking_iter
from lockyard.sync.locks import LockGuard
from lockyard.sync.part import ConnectionPart
from lockyard.sync.scope import BlockScope

if TYPE_CHECKING:
    from lockyard.connection import Connection as AsyncConnection
    from lockyard.locks import LockGuard as AsyncLockGuard
    from lockyard.sync.connection import Connection
    from lockyard.sync.portal import Portal


class Leadership(Bridged):
    """One term as leader, blocking: ``resign()``; ``lost`` is a ``threading.Event``."""

    def __init__(self, handle: Connection, leadership: AsyncLeadership) -> None:
        self._handle = handle
        self._leadership = leadership
        #: The term's lock guard; its ``lost`` is this term's ``lost``, as in the async API.
        self.guard = LockGuard(handle, leadership.guard)
        self.lost: threading.Event = self.guard.lost
        self._watcher: asyncio.Task[None] | None = None

    @property
    def _portal(self) -> Portal:
        return self._handle._portal

    def _target_now(self) -> AsyncLeadership | None:
        return self._leadership if self.guard._target_now() is not None else None

    async def _target(self) -> AsyncLeadership:
        await self.guard._target()  # refuses a term won before os.fork(): the parent's
        return self._leadership

    def _watch(self) -> None:
        """On the loop: set ``lost`` when the background renewal gives the term up."""
        self._watcher = asyncio.get_running_loop().create_task(self._mirror_loss())

    async def _mirror_loss(self) -> None:
        await self._leadership.lost.wait()
        self.lost.set()

    def _call(
        self,
        name: str,
        args: Any,
        kwargs: Any,
        *,
        deliver_losses: bool = True,
        plain: bool = False,
        direct: bool = False,
    ) -> Any:
        try:
            return super()._call(
                name, args, kwargs, deliver_losses=deliver_losses, plain=plain, direct=direct
            )
        finally:
            watcher = self._watcher
            if name == "resign" and watcher is not None:  # the term is over: stop watching it
                self._watcher = None
                with contextlib.suppress(RuntimeError):  # a closed loop cancelled it already
                    watcher.get_loop().call_soon_threadsafe(watcher.cancel)

    resign = blocking(AsyncLeadership.resign)

    @property
    def name(self) -> str:
        return self._leadership.name

    @property
    def identity(self) -> str:
        return self._leadership.identity

    @property
    def term(self) -> int:
        return self._leadership.term

    @property
    def since(self) -> float:
        return self._leadership.since

    @property
    def lease_deadline(self) -> float:
        return self._leadership.lease_deadline

    @property
    def is_leader(self) -> bool:
        return self._leadership.is_leader

    def __repr__(self) -> str:
        return f"lockyard.sync.{self._leadership!r}"


class Campaign(BlockScope[Leadership]):
    """What the blocking ``campaign()`` returns: ``with`` it, or ``wait()`` to be elected."""

    def __init__(
        self,
        handle: Connection,
        campaign: AsyncCampaign,
        on_lost: Callable[[Leadership], None] | None,
    ) -> None:
        super().__init__(handle, on_lost)
        self._campaign = campaign

    def _open(self, connection: AsyncConnection) -> AsyncCampaign:
        return self._campaign

    def _present(self, entered: AsyncLeadership) -> Leadership:
        return Leadership(self._handle, entered)

    def _lost_flag(self, value: Leadership) -> threading.Event:
        return value.lost

    def _async_guard(self, value: Leadership) -> AsyncLockGuard:
        return value.guard._guard

    def wait(self) -> Leadership:
        """Block until elected (``await campaign`` in the async API): the term is renewed in
        the background until ``resign()``; ``lost`` is set if it ends otherwise."""
        leadership: Leadership = self._handle._portal.call(self._win)
        return leadership

    async def _win(self) -> Leadership:
        leadership = Leadership(self._handle, await self._campaign)
        leadership._watch()
        return leadership


class Elections(ConnectionPart):
    """``ly.elections``, blocking: ``campaign``, ``leader``, ``observe``, ``break_leadership``."""

    part = "elections"

    leader = blocking(AsyncElections.leader)
    break_leadership = blocking(AsyncElections.break_leadership)
    observe = blocking_iter(AsyncElections.observe)

    def campaign(
        self,
        name: str,
        identity: str,
        ttl: Duration = DEFAULT_LEADER_TTL_S,
        *,
        timeout: Duration | None = None,
        auto_renew: bool = True,
        on_lost: Callable[[Leadership], None] | None = None,
    ) -> Campaign:
        """Stand for leader of ``name`` as ``identity`` (see :meth:`lockyard.Elections.campaign`).

        ``on_lost(leadership)`` runs on the handle's loop thread when the term is lost while a
        ``with`` block runs: keep it short, and make no blocking call on this handle from it.
        """
        # The async campaign itself, made now: it checks its arguments when called, as here.
        elections = self._target_now()
        if elections is not None:
            campaign = elections.campaign(
                name, identity, ttl, timeout=timeout, auto_renew=auto_renew
            )
        else:
            options = {"timeout": timeout, "auto_renew": auto_renew}
            campaign = self._portal.call(self._make, "campaign", (name, identity, ttl), options)
        return Campaign(self._handle, campaign, on_lost)
