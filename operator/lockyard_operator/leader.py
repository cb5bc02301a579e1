"""The operator's leader election: only the holder of the election Lease reconciles.

:class:`Leadership` wraps a :class:`~lockyard.kube.lease_election.LeaseElector` with the
operator's policy, kube-controller-manager's: a replica that loses its term EXITS (exit code
:data:`LOST_EXIT_CODE`) and comes back, restarted by its Deployment, as a fresh standby. Three
things end the process, whichever comes first:

- the renewal loop gives up (renew deadline passed, Lease taken over or deleted);
- a watchdog thread, at the renew deadline on the monotonic clock, even if the event loop is
  blocked or the process was paused;
- the write gate (:meth:`Leadership.gate`): every request that would change something (kopf's
  and the reconciler's alike) is checked against the deadline just before it is sent
  (:mod:`.gated_clients`), so a replica resumed after a pause cannot send one more write before
  it notices;
- ``SIGCONT``: a replica resumed from a stop checks its deadline before anything else runs.

The reasons for exiting rather than stopping kopf and standing by are in ``docs/operator.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import uuid
from types import FrameType
from typing import Any, NoReturn

from lockyard.kube.lease_election import LeaseElector, Term

logger = logging.getLogger(__name__)

#: The exit code of a replica that lost its term (kube-controller-manager exits too).
LOST_EXIT_CODE = 3
#: HTTP methods that read; every other one is a write and passes the gate.
READS = frozenset({"GET", "HEAD", "OPTIONS"})


def default_identity() -> str:
    """``<pod name>_<uuid>`` as kube-controller-manager's: the pod's name, made unique per
    process, so a restarted container is a new candidate and never mistakes its previous
    life's term for its own. The name comes from ``$POD_ID`` (the downward API) when set: with
    ``hostNetwork`` the hostname is the node's, the same for every replica on it."""
    return f"{os.environ.get('POD_ID') or socket.gethostname()}_{uuid.uuid4()}"


class Leadership:
    """This replica's place in the election; see the module docstring."""

    def __init__(self, elector: LeaseElector) -> None:
        self.elector = elector
        self.term: Term | None = None
        self._watchdog: _Watchdog | None = None
        self._released = False

    @property
    def identity(self) -> str:
        return self.elector.identity

    def status(self) -> dict[str, Any]:
        """What the health endpoint reports."""
        term = self.term
        return {
            "identity": self.identity,
            "lease": self.elector.lease,
            "leading": bool(term is not None and term.active()),
            "term": None if term is None else term.number,
        }

    async def acquire(self) -> Term:
        """Wait for a term; from then on the watchdog guards its deadline."""
        term = await self.elector.acquire()
        self.term = term
        self._watchdog = _Watchdog(term, self.abandon)
        self._watchdog.start()
        if threading.current_thread() is threading.main_thread():
            # A plain handler, not the event loop's: it runs in the main thread as soon as the
            # process resumes (an interrupted wait returns EINTR and runs it), before any I/O
            # callback that the stop left pending.
            signal.signal(signal.SIGCONT, self._on_continued)
        return term

    def _on_continued(self, signum: int, frame: FrameType | None) -> None:
        term = self.term
        if term is not None and not self._released and not term.active():
            self.abandon("continued after being stopped past the renew deadline")

    async def keep(self) -> NoReturn:
        """Renew the term; when it is lost, end the process."""
        term = self._require_term()
        reason = await self.elector.keep(term)
        self.abandon(reason)

    async def release(self) -> None:
        """On a clean shutdown (kopf has stopped): hand the Lease over at once, so a standby
        need not wait for it to expire."""
        term = self.term
        if term is None or self._released:
            return
        self._released = True
        if self._watchdog is not None:
            self._watchdog.stop()
        with contextlib.suppress(Exception):  # shutting down: the Lease expires anyway
            await self.elector.release(term)

    def gate(self, method: str, target: str) -> None:
        """Let a request through only while the term lasts; otherwise end the process before it
        is sent. Called just before every request kopf or the reconciler sends."""
        if method.upper() in READS:
            return
        term = self.term
        if term is not None and term.active():
            return
        if self._released:
            # After a clean release nothing may write; the process is about to exit anyway.
            raise RuntimeError(f"{method} {target}: this replica no longer leads")
        self.abandon(f"{method.upper()} {target} was about to be sent after the term ended")

    def abandon(self, reason: str) -> NoReturn:
        """Leadership is lost: log why and exit now, whichever thread this is."""
        term = self.term
        number = "-" if term is None else str(term.number)
        logger.critical(
            "%s: leadership of %s lost (term %s): %s; exiting so nothing more is done",
            self.identity,
            self.elector.lease,
            number,
            reason,
        )
        _flush_logs()
        os._exit(LOST_EXIT_CODE)

    def _require_term(self) -> Term:
        if self.term is None:
            raise RuntimeError("no term yet: acquire() first")
        return self.term


class _Watchdog(threading.Thread):
    """Ends the process at the term's renew deadline unless a renewal moved it (a thread: it
    fires even while the event loop is stuck)."""

    def __init__(self, term: Term, on_expired: Any) -> None:
        super().__init__(name="lockyard-leader-watchdog", daemon=True)
        self._term = term
        self._on_expired = on_expired
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.is_set():
            left = self._term.remaining()
            if left <= 0:
                if not self._stopped.is_set():
                    self._on_expired("the renew deadline passed with no renewal confirmed")
                return
            self._stopped.wait(left)

    def stop(self) -> None:
        self._stopped.set()


def _flush_logs() -> None:
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
        sys.stdout.flush()


async def first_of(*awaitables: asyncio.Future[Any] | asyncio.Task[Any]) -> asyncio.Future[Any]:
    """Wait until one finishes; cancel the others; the finished one."""
    done, pending = await asyncio.wait(awaitables, return_when=asyncio.FIRST_COMPLETED)
    for other in pending:
        other.cancel()
    for other in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await other
    return done.pop()
