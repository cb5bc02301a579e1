"""Release signals of the Redis backend: one ``SUBSCRIBE`` per backend on the prefix's channel.

Release, break and a waiter leaving a free lock ``PUBLISH`` ``<name>\\n<next owner>`` (the scripts
in :mod:`.scripts`) when the next owner waits in another client; this listener hands each message
to :class:`lockyard.signals.ReleaseListener`, which wakes only that owner's waiter and does the
reconnecting. On Sentinel, the backend re-subscribes as soon as the master moves.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from redis.asyncio.client import PubSub

from lockyard._tasks import raise_if_cancelled
from lockyard.signals import ReleaseListener

#: How long one read of the subscription waits for a message before checking for cancellation.
LISTEN_POLL_S = 1.0


async def close_pubsub(pubsub: PubSub) -> None:
    """Close a subscription, giving up after a second (the server may be gone)."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await pubsub.aclose()  # type: ignore[no-untyped-call]


class Subscriber(Protocol):
    """Where subscriptions are made: a ``redis.asyncio.Redis`` (one server), or one node of a
    cluster at a time (:mod:`.cluster`)."""

    def pubsub(self) -> PubSub: ...

    async def aclose(self) -> None: ...


class PubSubListener(ReleaseListener):
    """Delivers the messages of one channel, on a connection of ``client``."""

    def __init__(self, client: Subscriber, channel: str, timeout: float) -> None:
        super().__init__("lockyard-redis-release-signals")
        self._client = client
        self._channel = channel
        self._timeout = timeout

    async def listen(self) -> None:
        pubsub = self._client.pubsub()
        try:
            # Listening only once the server confirmed the subscription: a release published
            # before then is covered by the wake-up that ``listening`` gives every waiter.
            async with asyncio.timeout(self._timeout):
                await pubsub.subscribe(self._channel)
                while True:
                    message = await pubsub.get_message(timeout=self._timeout)
                    if message is not None and message["type"] == "subscribe":
                        break
            self.listening()
            while True:
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=LISTEN_POLL_S
                )
                raise_if_cancelled()
                if message is not None and message["type"] == "message":
                    self.deliver(message["data"])
        finally:
            await close_pubsub(pubsub)
