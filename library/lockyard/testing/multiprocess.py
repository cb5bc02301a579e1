"""The multi-process check of semaphores and read-write locks, for any backend with a URL.

:func:`contend` starts ``processes`` Python processes (``python -m lockyard.testing.multiprocess``)
that share ``tasks`` asyncio tasks between them; each task, until the duration is up, acquires
(a semaphore permit of ``limit``, or a read or write hold), holds it briefly, and releases it,
recording when it held it. :func:`check_semaphore` and :func:`check_rwlock` then check the
records: never more than ``limit`` permits at once; never a writer beside a reader or another
writer; every fencing token unique.

The records are sound: a task notes ``entered`` after its acquisition returned and ``left``
before it asks for the release, so each recorded interval lies inside the backend's lease, and
two recorded intervals that overlap were two leases that overlapped. All processes read the
same clock (``time.monotonic()`` is system-wide on Linux).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import lockyard
from lockyard.permits import PermitGuard


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
    timeout_s: float = 120.0,
) -> list[Hold]:
    """Run the contenders (``kind``: ``"semaphore"`` or ``"rwlock"``); returns every hold."""
    with tempfile.TemporaryDirectory(prefix="lockyard-contend-") as folder:
        children = []
        for number, count in enumerate(_split(tasks, processes)):
            out = Path(folder) / f"holds-{number}.jsonl"
            command = [
                sys.executable, "-m", "lockyard.testing.multiprocess",
                "--url", url, "--kind", kind, "--name", name, "--limit", str(limit),
                "--tasks", str(count), "--duration", str(duration_s), "--hold", str(hold_s),
                "--write-share", str(write_share), "--out", str(out),
            ]  # fmt: skip
            children.append((subprocess.Popen(command, stderr=subprocess.PIPE, text=True), out))
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
            if child.returncode != 0:
                failures.append(f"pid {child.pid} exited {child.returncode}: {errors}")
            if out.exists():
                holds += [Hold(**json.loads(line)) for line in out.read_text().splitlines()]
        if failures:
            raise AssertionError("contenders failed:\n" + "\n".join(failures))
        return holds


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


# -- the worker process -------------------------------------------------------------------------
async def _work(args: argparse.Namespace) -> list[Hold]:
    async with lockyard.connect(args.url) as ly:
        records: list[Hold] = []
        stop_at = time.monotonic() + args.duration

        async def contender() -> None:
            while time.monotonic() < stop_at:
                guard: PermitGuard
                if args.kind == "semaphore":
                    guard = await ly.semaphores.acquire(args.name, args.limit, 30, timeout=60)
                    mode = "permit"
                elif random.random() < args.write_share:
                    guard = await ly.rwlocks.acquire_write(args.name, 30, timeout=60)
                    mode = "write"
                else:
                    guard = await ly.rwlocks.acquire_read(args.name, 30, timeout=60)
                    mode = "read"
                entered = time.monotonic()
                await asyncio.sleep(args.hold)
                left = time.monotonic()
                await guard.release()
                records.append(Hold(mode, guard.fencing_token, entered, left))

        await asyncio.gather(*(contender() for _ in range(args.tasks)))
        return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--kind", choices=["semaphore", "rwlock"], required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--limit", type=int, default=3)
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--hold", type=float, default=0.005)
    parser.add_argument("--write-share", type=float, default=0.25)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    holds = asyncio.run(_work(args))
    Path(args.out).write_text("".join(json.dumps(dataclasses.asdict(h)) + "\n" for h in holds))


if __name__ == "__main__":
    main()
