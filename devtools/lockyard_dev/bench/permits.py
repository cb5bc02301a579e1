"""Semaphore and read-write lock cycles, uncontended and contended (issue 17, item 6).

- ``sem_uncontended``: one task, acquire + release of a permit (limit 4), p50/p99 of the cycle;
- ``sem_contended``: 16 workers share a semaphore of 4, each cycle held 1 ms: throughput, p50/p99
  wait for a permit, and fairness (most/fewest cycles of one worker);
- ``asyncio_contended``: the same workload on ``asyncio.Semaphore(4)`` in this process, the
  in-process reference (no network, no leases);
- ``rw_read`` / ``rw_write``: one task, a read and a write cycle;
- ``rw_contended``: 16 workers, a quarter of the cycles writes: throughput and p99 wait of
  readers and writers.

No Python peer library offers a semaphore or read-write lock with leases on these backends
(python-redis-lock and redis-py's ``Lock`` are mutexes), so Lockyard's own figures stand
alone beside the asyncio reference.

``python -m lockyard_dev.bench.permits URL [URL...]`` prints the table; ``make bench`` runs the
same through the ``permits`` scenario's probe.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import lockyard
from lockyard.connection import Connection
from lockyard_dev.bench.stats import percentile

UNCONTENDED_CYCLES = {"memory": 2000, "redis": 1000, "redis-sentinel": 1000, "postgresql": 500}
DEFAULT_UNCONTENDED = 100
CONTENDED_CYCLES = {"memory": 2000, "redis": 800, "redis-sentinel": 800, "postgresql": 400}
DEFAULT_CONTENDED = 100
WORKERS = 16
LIMIT = 4
HOLD_S = 0.001
WRITE_SHARE = 0.25

Hold = Callable[[], AbstractAsyncContextManager[object]]


def _ms(samples: list[float], label: str) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        f"{label}_p50_ms": percentile(ordered, 50) * 1000,
        f"{label}_p99_ms": percentile(ordered, 99) * 1000,
    }


async def uncontended(hold: Hold, cycles: int) -> list[float]:
    took = []
    for _ in range(cycles):
        started = time.perf_counter()
        async with hold():
            pass
        took.append(time.perf_counter() - started)
    return took


async def contended(
    holds: list[tuple[str, Hold]], cycles: int
) -> tuple[float, dict[str, list[float]], list[int]]:
    """Workers cycle until ``cycles`` are done; returns (cycles/s, waits by kind, shares)."""
    done = 0
    waits: dict[str, list[float]] = {}
    shares = [0] * WORKERS

    async def worker(number: int) -> None:
        nonlocal done
        while done < cycles:
            kind, hold = random.choice(holds)
            started = time.perf_counter()
            async with hold():
                waits.setdefault(kind, []).append(time.perf_counter() - started)
                await asyncio.sleep(HOLD_S)
            done += 1
            shares[number] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(WORKERS)))
    return done / (time.perf_counter() - started), waits, shares


def _guarded(acquire: Callable[[], Awaitable[lockyard.Permit | lockyard.ReadWriteGuard]]) -> Hold:
    """A hold that acquires and releases (no renewal task: the cycle is what is measured)."""

    def hold() -> AbstractAsyncContextManager[object]:
        return _Released(acquire)

    return hold


class _Released:
    def __init__(self, acquire: Callable[[], Awaitable[lockyard.Permit | lockyard.ReadWriteGuard]]):
        self._acquire = acquire
        self._guard: lockyard.Permit | lockyard.ReadWriteGuard | None = None

    async def __aenter__(self) -> object:
        self._guard = await self._acquire()
        return self._guard

    async def __aexit__(self, *exc: object) -> None:
        assert self._guard is not None
        await self._guard.release()


async def measure(ly: Connection) -> dict[str, float]:
    backend = ly.backend
    cycles_1 = UNCONTENDED_CYCLES.get(backend, DEFAULT_UNCONTENDED)
    cycles_n = CONTENDED_CYCLES.get(backend, DEFAULT_CONTENDED)
    suffix = uuid.uuid4().hex[:6]
    metrics: dict[str, float] = {}

    def semaphore(name: str) -> Hold:
        return _guarded(lambda: ly.semaphores.acquire(name, LIMIT, 30, timeout=60))

    metrics |= _ms(
        await uncontended(semaphore(f"bench-sem1-{suffix}"), cycles_1), "sem_uncontended"
    )
    rate, waits, shares = await contended([("permit", semaphore(f"bench-semn-{suffix}"))], cycles_n)
    metrics["sem_contended_cycles_per_s"] = rate
    metrics |= _ms(waits["permit"], "sem_contended_wait")
    metrics["sem_contended_share_ratio"] = max(shares) / max(1, min(shares))

    reference = asyncio.Semaphore(LIMIT)

    def in_process() -> AbstractAsyncContextManager[object]:
        return _AsyncioHold(reference)

    rate, waits, shares = await contended([("permit", in_process)], cycles_n)
    metrics["asyncio_contended_cycles_per_s"] = rate
    metrics |= _ms(waits["permit"], "asyncio_contended_wait")
    metrics["asyncio_contended_share_ratio"] = max(shares) / max(1, min(shares))

    rw1 = f"bench-rw1-{suffix}"
    read = _guarded(lambda: ly.rwlocks.acquire_read(rw1, 30, timeout=60))
    write = _guarded(lambda: ly.rwlocks.acquire_write(rw1, 30, timeout=60))
    metrics |= _ms(await uncontended(read, cycles_1), "rw_read")
    metrics |= _ms(await uncontended(write, cycles_1), "rw_write")
    rwn = f"bench-rwn-{suffix}"
    kinds = [("write", _guarded(lambda: ly.rwlocks.acquire_write(rwn, 30, timeout=60)))]
    kinds += [("read", _guarded(lambda: ly.rwlocks.acquire_read(rwn, 30, timeout=60)))] * round(
        (1 - WRITE_SHARE) / WRITE_SHARE
    )
    rate, waits, _ = await contended(kinds, cycles_n)
    metrics["rw_contended_cycles_per_s"] = rate
    metrics |= _ms(waits.get("read", [0.0]), "rw_contended_read_wait")
    metrics |= _ms(waits.get("write", [0.0]), "rw_contended_write_wait")
    return metrics


class _AsyncioHold:
    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore = semaphore

    async def __aenter__(self) -> object:
        await self._semaphore.acquire()
        return None

    async def __aexit__(self, *exc: object) -> None:
        self._semaphore.release()


async def probe(ly: Connection) -> dict[str, float]:
    """The ``permits`` scenario's probe."""
    return await measure(ly)


async def _rows(url: str) -> AsyncIterator[tuple[str, str, float]]:
    async with lockyard.connect(url) as ly:
        metrics = await measure(ly)
        await ly.store.purge()
    for key, value in metrics.items():
        yield ly.backend, key, value


async def _main(urls: list[str]) -> None:
    print(f"{'backend':<16}{'metric':<40}{'value':>12}")
    for url in urls:
        async for backend, key, value in _rows(url):
            print(f"{backend:<16}{key:<40}{value:>12.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urls", nargs="+", help="Lockyard URLs (with a prefix of their own)")
    asyncio.run(_main(parser.parse_args().urls))


if __name__ == "__main__":
    main()
