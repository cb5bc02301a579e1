"""Counters after a run: their final values, read straight from the server, against the
increments the clients were told had happened.

A counter must end between the acknowledged sum plus the negative deltas whose outcome is
unknown and the acknowledged sum plus the positive ones. Below that, acknowledged increments
were lost (Sentinel's failover does this by design); above, units appeared that no increment
explains.
"""

from __future__ import annotations

import asyncio
from typing import Any

import lockyard
from lockyard_dev.jepsen.spec import data_key


async def counter_losses(
    url: str, run_id: str, keys_per_family: int, events: list[dict[str, Any]]
) -> dict[str, Any]:
    """Final counter values against acknowledged increments (read straight from the server).

    A counter must end between acknowledged + the negative unknown deltas and acknowledged +
    the positive ones; below that, acknowledged increments were lost.
    """
    keys = [data_key(run_id, "counter", i) for i in range(keys_per_family)]
    acked = dict.fromkeys(keys, 0)
    low = dict.fromkeys(keys, 0)
    high = dict.fromkeys(keys, 0)
    invoked: dict[str, dict[str, Any]] = {}
    for event in events:
        if event["type"] == "invoke" and event.get("f") == "increment":
            invoked[event["id"]] = event
            continue
        call = invoked.pop(event.get("id", ""), None)
        if call is None or call["key"] not in acked:
            continue
        delta = call["args"]["delta"]
        if event["type"] == "ok" and "error" not in event.get("result", {}):
            acked[call["key"]] += delta
        elif event["type"] == "info":
            if delta < 0:
                low[call["key"]] += delta
            else:
                high[call["key"]] += delta
    for call in invoked.values():  # never completed: unknown
        if call["key"] in acked:
            bound = low if call["args"]["delta"] < 0 else high
            bound[call["key"]] += call["args"]["delta"]
    final: dict[str, int] = {}
    last_error = ""
    for _ in range(20):  # Sentinel may still be failing over: retry for a while
        try:
            async with lockyard.connect(url) as ly:
                for key in keys:
                    value = await ly.store.get(key)
                    final[key] = int(value) if value is not None else 0
            break
        except Exception as exc:  # a StateError while Sentinel fails over, or a broken build
            last_error = repr(exc)
            await asyncio.sleep(1)
    if len(final) < len(keys):
        return {"error": f"could not read the counters: {last_error}"}
    lost = sum(max(0, acked[k] + low[k] - final[k]) for k in keys)
    gained = sum(max(0, final[k] - acked[k] - high[k]) for k in keys)
    return {
        "acknowledged_units": sum(acked.values()),
        "final": final,
        "lost_units": lost,
        "phantom_units": gained,
    }
