"""One client process of a Jepsen run: ``python -m lockyard_dev.jepsen.worker SPEC.json``.

It opens one Lockyard connection (through its own toxiproxy proxy), waits for the common start
time, runs ``processes`` concurrent operation streams (store operations and lock cycles) until
the end time, and writes its history and notes where the spec says. In the partition scenario
the *victim* also holds a lock with ``hold()`` until the partition makes it give the lock up,
then, after the heal, tries one fenced write with its stale token (a paused process waking
up); the *taker* waits for that lock in another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import lockyard
from lockyard.kube.api import KubeApi
from lockyard.kube.errors import KubeApiError
from lockyard_dev.jepsen.data_workload import DataWorkload
from lockyard_dev.jepsen.history import HistoryWriter
from lockyard_dev.jepsen.kube_workload import LeaseWorkload
from lockyard_dev.jepsen.lock_workload import LOCK, LockWorkload, _not_held
from lockyard_dev.jepsen.ops import Notes, NotRecorded, Process, Recorder
from lockyard_dev.jepsen.spec import KUBE, TAKER, VICTIM, Schedule, WorkerSpec, victim_lock

#: Share of a process's steps that are lock cycles (each is several operations).
LOCK_SHARE = 0.3


async def _sleep_until(ns: int) -> None:
    delay = (ns - time.monotonic_ns()) / 1e9
    if delay > 0:
        await asyncio.sleep(delay)


#: One step of a stream: an operation (or a lock cycle) of the worker's workload.
Step = Callable[[Process, random.Random], Awaitable[None]]


async def run(spec: WorkerSpec) -> None:
    history = HistoryWriter(Path(spec.history), spec.worker)
    notes = Notes(Path(spec.notes))
    contract = (KubeApiError,) if spec.kind == KUBE else (lockyard.StateError,)
    recorder = Recorder(history, notes, contract)
    try:
        async with contextlib.AsyncExitStack() as stack:
            try:
                opened = _open_kube if spec.kind == KUBE else _open_store
                step, locks = await opened(spec, recorder, stack)
            except Exception as exc:
                notes.write("connect_failed", error=repr(exc))
                raise
            await asyncio.to_thread(Path(spec.ready).touch)
            schedule = await asyncio.to_thread(_wait_for_schedule, Path(spec.schedule))
            await _run_streams(spec, schedule, step, locks, recorder)
    finally:
        history.close()
        notes.close()


async def _open_store(
    spec: WorkerSpec, recorder: Recorder, stack: contextlib.AsyncExitStack
) -> tuple[Step, LockWorkload | None]:
    connection = await lockyard.connect(spec.url)
    stack.push_async_callback(connection.close)
    data = DataWorkload(
        connection.store, recorder, random.Random(spec.seed), spec.run_id, spec.keys_per_family
    )
    locks = None
    if spec.locks:
        locks = LockWorkload(
            connection.locks,
            connection.store,
            recorder,
            random.Random(spec.seed + 1),
            spec.run_id,
            spec.worker,
            spec.locks,
            spec.lock_ttl_ms,
        )

    async def step(process: Process, rng: random.Random) -> None:
        if locks is not None and rng.random() < LOCK_SHARE:
            await locks.cycle(process)
        else:
            await data.step(process)

    return step, locks


async def _open_kube(
    spec: WorkerSpec, recorder: Recorder, stack: contextlib.AsyncExitStack
) -> tuple[Step, LockWorkload | None]:
    timeout = (spec.op_timeout_s, spec.op_timeout_s)
    api = await KubeApi.connect(spec.url, timeout=timeout)
    stack.push_async_callback(api.close)
    leases = LeaseWorkload(
        api, recorder, random.Random(spec.seed), spec.run_id, spec.keys_per_family
    )

    async def step(process: Process, rng: random.Random) -> None:
        await leases.step(process)

    return step, None


async def _run_streams(
    spec: WorkerSpec,
    schedule: Schedule,
    step: Step,
    locks: LockWorkload | None,
    recorder: Recorder,
) -> None:
    await _sleep_until(schedule.start_ns)
    gap_s = spec.processes / spec.rate if spec.rate > 0 else 0.0

    async def stream(index: int) -> None:
        rng = random.Random(spec.seed * 1000 + index)
        process = Process(recorder)
        while time.monotonic_ns() < schedule.end_ns:
            await step(process, rng)
            if gap_s:
                await asyncio.sleep(rng.uniform(0, 2 * gap_s))

    tasks = [asyncio.create_task(stream(i)) for i in range(spec.processes)]
    if locks is not None and spec.role == VICTIM:
        tasks.append(asyncio.create_task(_victim(spec, schedule, locks, recorder)))
    elif locks is not None and spec.role == TAKER:
        tasks.append(asyncio.create_task(_taker(spec, schedule, locks, recorder)))
    await _sleep_until(schedule.end_ns)
    grace = 4 * spec.op_timeout_s + 3 * spec.lock_ttl_ms / 1000
    _, late = await asyncio.wait(tasks, timeout=grace)
    for task in late:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    recorder.notes.write("tally", worker=spec.worker, late=len(late), **recorder.tally.as_dict())


def _wait_for_schedule(path: Path, timeout_s: float = 180.0) -> Schedule:
    """Wait for the controller's schedule (written once every worker is connected)."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no schedule at {path} after {timeout_s:g}s")
        time.sleep(0.02)
    return Schedule.load(path)


async def _victim(
    spec: WorkerSpec, schedule: Schedule, locks: LockWorkload, recorder: Recorder
) -> None:
    """Hold the victim lock until the partition takes it away; after the heal, act stale."""
    process = Process(recorder)
    name = victim_lock(spec.run_id)
    guard, label = await locks.hold_cycle(process, name, wait_s=5.0, until_lost=True)
    if guard is None:
        recorder.notes.write("victim_unheld", lock=name)
        return
    await _sleep_until(schedule.heal_ns + 500_000_000)
    outcome = "unknown"
    for _ in range(5):  # until the backend answers (a slow one may still time out at first)
        outcome = await locks.fenced_write(process, name, guard.fencing_token, 0.0, zombie=True)
        if outcome != "unknown":
            break
    recorder.notes.write("zombie_write", lock=name, token=guard.fencing_token, outcome=outcome)
    try:
        await recorder.perform(
            process,
            name,
            LOCK,
            "release",
            {"owner": label},
            guard.release,
            lambda _: {"held": True},
            _not_held,
        )
        released = "held"
    except NotRecorded as stop:
        released = "not held" if stop.kind == "ok" else "unknown"
    recorder.notes.write("zombie_release", lock=name, outcome=released)


async def _taker(
    spec: WorkerSpec, schedule: Schedule, locks: LockWorkload, recorder: Recorder
) -> None:
    """Once the victim is cut off, wait for its lock (it must come free within the TTL)."""
    process = Process(recorder)
    await _sleep_until(schedule.fault_ns + 100_000_000)
    name = victim_lock(spec.run_id)
    started = time.monotonic_ns()
    guard, _ = await locks.hold_cycle(process, name, wait_s=4 * locks.ttl_s + 2, writes=3)
    recorder.notes.write(
        "taker",
        lock=name,
        started=started,
        token=None if guard is None else guard.fencing_token,
    )


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m lockyard_dev.jepsen.worker SPEC.json")
    asyncio.run(run(WorkerSpec.load(Path(args[0]))))


if __name__ == "__main__":
    main()
