"""The multi-process check of semaphores and read-write locks, for any backend with a URL.

:func:`contend` starts ``processes`` Python processes (``python -m lockyard.testing.multiprocess``)
that share ``tasks`` asyncio tasks between them; each task, until the duration is up, acquires
(a semaphore permit of ``limit``, or a read or write hold), holds it briefly, and releases it,
recording when it held it. :func:`check_semaphore` and :func:`check_rwlock` then check the
records: never more than ``limit`` permits at once; never a writer beside a reader or another
writer; every fencing token unique.

The records are sound: a task notes ``sent`` before it asks, ``entered`` after its acquisition
returned and ``left`` before it asks for the release. The backend granted the lease after
``sent``, so it lasted at least until ``sent + ttl``: the recorded interval, from ``entered`` to
the earlier of ``left`` and ``sent + ttl``, lies inside the lease, and two recorded intervals
that overlap were two leases that overlapped. That holds for a holder that is killed (it never
writes ``left``) or stopped past its lease too, so ``faults`` may SIGKILL and SIGSTOP the
contenders and restart the backend while they run. Each process writes its records as they
happen. All processes read the same clock (``time.monotonic()`` is system-wide on Linux).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import lockyard
from lockyard.errors import (
    BackendConnectionError,
    LockLostError,
    OperationTimeoutError,
    StateError,
)
from lockyard.permits import PermitGuard

#: Injects faults while the contenders run (it is given their processes and returns when done).
Faults = Callable[[list[subprocess.Popen[str]]], None]
#: A failed acquisition (the backend restarting) is tried again after this long.
RETRY_PAUSE_S = 0.05


@dataclass(frozen=True, slots=True)
class Hold:
    """One recorded hold: what, its fencing token, and when it was held (monotonic seconds)."""

    mode: str  # "permit", "read" or "write"
    fencing_token: int
    entered: float
    left: float


def _split(tasks: int, processes: int) -> list[int]:
    return [tasks // processes + (1 if n < tasks % processes else 0) for n in range(processes)]


def contend(
    url: str,
    kind: str,
    name: str,
    *,
    limit: int = 3,
    processes: int = 3,
    tasks: int = 32,
    duration_s: float = 3.0,
    hold_s: float = 0.005,
    write_share: float = 0.25,
    ttl_s: float = 30.0,
    timeout_s: float = 120.0,
    faults: Faults | None = None,
) -> list[Hold]:
    """Run the contenders (``kind``: ``"semaphore"`` or ``"rwlock"``); returns every hold.

    ``faults``, if given, runs in this thread once the contenders started; a contender it
    SIGKILLs is not a failure, and what that contender held counts until its lease ran out.
    """
    with tempfile.TemporaryDirectory(prefix="lockyard-contend-") as folder:
        children = []
        for number, count in enumerate(_split(tasks, processes)):
            out = Path(folder) / f"holds-{number}.jsonl"
            command = [
                sys.executable, "-m", "lockyard.testing.multiprocess",
                "--url", url, "--kind", kind, "--name", name, "--limit", str(limit),
                "--tasks", str(count), "--duration", str(duration_s), "--hold", str(hold_s),
                "--write-share", str(write_share), "--ttl", str(ttl_s), "--out", str(out),
            ]  # fmt: skip
            children.append((subprocess.Popen(command, stderr=subprocess.PIPE, text=True), out))
        try:
            if faults is not None:
                faults([child for child, _ in children])
        finally:
            for child, _ in children:  # never leave one stopped, whatever the faults did
                if child.poll() is None:
                    child.send_signal(signal.SIGCONT)
        holds: list[Hold] = []
        failures = []
        for child, out in children:
            try:
                _, errors = child.communicate(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                child.kill()
                _, errors = child.communicate()
                failures.append(f"pid {child.pid} did not finish in {timeout_s}s: {errors}")
                continue
            killed = faults is not None and child.returncode == -signal.SIGKILL
            if child.returncode != 0 and not killed:
                failures.append(f"pid {child.pid} exited {child.returncode}: {errors}")
            if out.exists():
                holds += _holds(out.read_text(), ttl_s)
        if failures:
            raise AssertionError("contenders failed:\n" + "\n".join(failures))
        return holds


def _holds(records: str, ttl_s: float) -> list[Hold]:
    """The holds one contender recorded: an ``in`` line per acquisition, an ``out`` line per
    release asked for (none if it was killed first); each cut at ``sent + ttl``."""
    entered: dict[int, dict[str, float | str | int]] = {}
    left: dict[int, float] = {}
    for line in records.splitlines():
        if not line.endswith("}"):
            continue  # the last line of a killed contender may be cut short
        record = json.loads(line)
        if record["event"] == "in":
            entered[record["token"]] = record
        else:
            left[record["token"]] = record["left"]
    holds = []
    for token, record in entered.items():
        lease_end = float(record["sent"]) + ttl_s
        end = min(left.get(token, lease_end), lease_end)
        if end > float(record["entered"]):  # else it may have run out before it returned
            holds.append(Hold(str(record["mode"]), token, float(record["entered"]), end))
    return holds


class HolderFaults:
    """``faults`` for :func:`contend`: SIGKILL the first contender, SIGSTOP the second for
    ``ttl_s`` plus a second (past every lease it had), SIGCONT it, then ``restart()`` the
    backend if given. The times it did so (monotonic) are kept for the test's checks."""

    def __init__(
        self, ttl_s: float, restart: Callable[[], None] | None = None, settle_s: float = 1.0
    ) -> None:
        self.ttl_s = ttl_s
        self.restart = restart
        self.settle_s = settle_s
        self.killed_at = self.continued_at = self.restarted_at = 0.0

    def __call__(self, children: list[subprocess.Popen[str]]) -> None:
        if len(children) < 2:
            raise ValueError("HolderFaults needs at least two contender processes")
        time.sleep(self.settle_s)  # the contenders connected and hold permits
        children[0].send_signal(signal.SIGKILL)
        self.killed_at = time.monotonic()
        children[1].send_signal(signal.SIGSTOP)
        time.sleep(self.ttl_s + 1.0)
        children[1].send_signal(signal.SIGCONT)
        self.continued_at = time.monotonic()
        if self.restart is not None:
            self.restart()
            self.restarted_at = time.monotonic()


def max_overlap(holds: list[Hold]) -> int:
    """The most holds held at one instant."""
    events = sorted([(h.entered, 1) for h in holds] + [(h.left, -1) for h in holds])
    current = peak = 0
    for _, change in events:  # at equal times a leave (-1) sorts before an enter
        current += change
        peak = max(peak, current)
    return peak


def check_semaphore(holds: list[Hold], limit: int) -> None:
    """Never more than ``limit`` permits at once; every token unique."""
    tokens = [h.fencing_token for h in holds]
    assert len(set(tokens)) == len(tokens), "a fencing token was handed out twice"
    peak = max_overlap(holds)
    assert peak <= limit, f"{peak} permits were held at once; the limit is {limit}"


def check_rwlock(holds: list[Hold]) -> None:
    """Never a writer beside a reader or another writer; every token unique."""
    tokens = [h.fencing_token for h in holds]
    assert len(set(tokens)) == len(tokens), "a fencing token was handed out twice"
    writes = sorted((h for h in holds if h.mode == "write"), key=lambda h: h.entered)
    for write in writes:
        beside = [
            h for h in holds if h is not write and h.entered < write.left and write.entered < h.left
        ]
        assert not beside, f"a writer ({write}) overlapped {beside[:3]}"


def pause_fenced_holder(
    url: str, name: str, key: str, *, ttl_s: float = 2.0, pause_s: float = 3.0
) -> tuple[int, int, list[str]]:
    """A holder frozen past its lease cannot write once another holder has taken over.

    A child process acquires lock ``name`` (``ttl_s``, not renewed) and increments ``key`` with
    ``fence=guard`` in a loop, well within the lease. It is stopped (SIGSTOP) for ``pause_s``,
    long past its lease; meanwhile this process takes the lock and reads ``key``; then the child
    is continued (SIGCONT) and runs until its fenced write reports the loss (``FenceLostError``).
    Returns (the value this process read after taking over, the value once the child is done,
    the child's output lines); the two values must be equal: no write of the stale holder
    landed after the take-over.
    """
    import signal

    command = [
        sys.executable, "-m", "lockyard.testing.multiprocess", "--url", url, "--kind", "fenced",
        "--name", name, "--key", key, "--ttl", str(ttl_s),
    ]  # fmt: skip
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    lines: list[str] = []
    try:
        while len(lines) < 3:  # a few fenced writes landed: the child holds the lock
            line = child.stdout.readline()
            if not line:
                raise AssertionError(
                    f"the holder exited early: {child.stderr.read() if child.stderr else ''}"
                )
            lines.append(line.strip())
        child.send_signal(signal.SIGSTOP)
        try:
            taken_over = asyncio.run(_take_over(url, name, key, ttl_s + pause_s))
        finally:
            child.send_signal(signal.SIGCONT)
        out, errors = child.communicate(timeout=60)
        lines += out.split()
        assert child.returncode == 0, errors
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    final = asyncio.run(_read(url, key))
    return taken_over, final, lines


async def _take_over(url: str, name: str, key: str, wait_s: float) -> int:
    """Wait for the frozen holder's lease to end, take the lock, and read ``key``."""
    async with lockyard.connect(url) as ly:
        guard = await ly.locks.acquire(name, 60, timeout=wait_s)
        value = int(await ly.store.get(key) or 0)
        await asyncio.sleep(0.5)  # the child is continued while this holder still holds
        await guard.release()
        return value


async def _read(url: str, key: str) -> int:
    async with lockyard.connect(url) as ly:
        return int(await ly.store.get(key) or 0)


async def _fenced_holder(args: argparse.Namespace) -> None:
    """The child of :func:`pause_fenced_holder`: fenced increments until the loss shows."""
    async with lockyard.connect(args.url) as ly:
        # A plain acquisition, not hold(): hold() would notice the lost lease on waking and
        # cancel the loop first; here the fenced write itself must refuse.
        guard = await ly.locks.acquire(args.name, args.ttl, timeout=10)
        try:
            while True:
                value = await ly.store.increment(args.key, 1, fence=guard)
                print(f"wrote:{value}", flush=True)
                await asyncio.sleep(0.02)
        except LockLostError as lost:
            print(f"lost:{type(lost).__name__}", flush=True)


# -- the worker process -------------------------------------------------------------------------
async def _connected(url: str, give_up_at: float) -> lockyard.Connection:
    """Connect, asking again while the backend is down, recovering or too loaded to answer in
    time, as a restarted worker would: a contender still starting (or stopped) when the faults
    restart the server must not fail the run. A refusal (credentials, configuration) is final."""
    while True:
        try:
            return await lockyard.connect(url)
        except (BackendConnectionError, OperationTimeoutError):
            if time.monotonic() > give_up_at:
                raise
            await asyncio.sleep(RETRY_PAUSE_S)


async def _work(args: argparse.Namespace, out: IO[str]) -> None:
    stop_at = time.monotonic() + args.duration
    async with await _connected(args.url, stop_at) as ly:

        def record(**fields: object) -> None:
            # Written and flushed at once: a SIGKILL must not lose what was already held.
            out.write(json.dumps(fields) + "\n")
            out.flush()

        async def acquire() -> tuple[PermitGuard, str]:
            if args.kind == "semaphore":
                return await ly.semaphores.acquire(args.name, args.limit, args.ttl, timeout=60), (
                    "permit"
                )
            if random.random() < args.write_share:
                return await ly.rwlocks.acquire_write(args.name, args.ttl, timeout=60), "write"
            return await ly.rwlocks.acquire_read(args.name, args.ttl, timeout=60), "read"

        async def contender() -> None:
            while time.monotonic() < stop_at:
                sent = time.monotonic()
                try:
                    guard, mode = await acquire()
                except StateError:  # the backend restarting: ask again
                    await asyncio.sleep(RETRY_PAUSE_S)
                    continue
                entered = time.monotonic()
                token = guard.fencing_token
                record(event="in", mode=mode, token=token, sent=sent, entered=entered)
                await asyncio.sleep(args.hold)
                record(event="out", token=token, left=time.monotonic())
                # Lost while stopped, or the backend restarting: the record already ends here.
                with contextlib.suppress(StateError):
                    await guard.release()

        await asyncio.gather(*(contender() for _ in range(args.tasks)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--kind", choices=["semaphore", "rwlock", "fenced"], required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--limit", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=1)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--hold", type=float, default=0.005)
    parser.add_argument("--write-share", type=float, default=0.25)
    parser.add_argument("--out", help="where the holds go (semaphore, rwlock)")
    parser.add_argument("--key", help="the key the fenced holder increments (fenced)")
    parser.add_argument("--ttl", type=float, default=1.0, help="the lease of every acquisition")
    args = parser.parse_args(argv)
    if args.kind == "fenced":
        asyncio.run(_fenced_holder(args))
        return
    with open(args.out, "w") as out:
        asyncio.run(_work(args, out))


if __name__ == "__main__":
    main()
