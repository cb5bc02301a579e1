"""A sample Lockyard workload: open the StateStore bound to this pod, hold locks until stopped.

    python workload.py --store orders --hold invoice-1 --hold invoice-2 [--ttl 15]

The binding comes from ``$SERVICE_BINDING_ROOT/<store>`` (see pod.yaml), else from the API.
Held locks are renewed every ttl/3 and, when the store mirrors leases, show up as Leases owned
by this pod (``POD_NAME``/``POD_NAMESPACE``/``POD_UID`` from the downward API). Every second it
counts a heartbeat in the store, so both halves of the API are used. SIGTERM releases the locks
and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal

import lockyard


async def hold(locks: lockyard.DistributedLock, name: str, ttl: float, stop: asyncio.Event) -> None:
    async with locks.hold(name, ttl=ttl) as guard:
        print(f"holding {name} (fencing token {guard.fencing_token})", flush=True)
        await stop.wait()
    print(f"released {name}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="the StateStore's name")
    parser.add_argument("--hold", action="append", default=[], help="a lock name to hold")
    parser.add_argument("--ttl", type=float, default=15.0, help="lock TTL in seconds")
    args = parser.parse_args()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    pod = os.environ.get("POD_NAME", "local")
    root = os.environ.get("SERVICE_BINDING_ROOT", "(unset)")
    print(f"{pod}: opening StateStore {args.store!r} (SERVICE_BINDING_ROOT={root})", flush=True)
    async with await lockyard.connect_store(args.store) as ly:
        holders = [asyncio.create_task(hold(ly.locks, n, args.ttl, stop)) for n in args.hold]
        while not stop.is_set():
            beats = await ly.store.increment(f"workload:{pod}:counter:heartbeats", 1)
            if beats == 1:
                print(f"{pod}: store reachable (first heartbeat counted)", flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
        await asyncio.gather(*holders)
    print(f"{pod}: stopped", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
