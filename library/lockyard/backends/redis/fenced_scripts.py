"""The Lua scripts of fenced writes: a lease check, then the unfenced operation's own script.

Each fenced script is the check for one kind of lease followed by the text of the data script
it guards (from :mod:`.scripts`) with every ``KEYS[i]`` and ``ARGV[i]`` moved up by one, so the
data part reads exactly the keys and arguments it reads unfenced:

- ``KEYS[1]``: the lease to check: a lock's ``:lease`` string (held when it equals the owner),
  or a permit table's ``:holders`` zset (held while the owner's deadline is after ``TIME``);
  then the data script's keys.
- ``ARGV[1]``: the guard's owner token; then the data script's arguments.

A lease that is not held makes the script return the error ``FENCED <what>`` before any write
(nothing changes); otherwise it returns what the data script returns.
"""

from __future__ import annotations

import re

from .scripts import _NOW_MS, CHECK_AND_SET, COMPARE_AND_SWAP, DELETE, INCREMENT, SET

#: The code of the error a fenced script returns when its lease is gone.
FENCE_ERROR = "FENCED"

# index_timeout / index_chain_ready unfenced are one ZADD; fenced, this script. KEYS: [1] the
# time index. ARGV: [1] canonical key, [2] timestamp ms. Returns what ZADD returns.
INDEX_ADD = "return redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])"

# remove_timeout_index / remove_chain_ready_index: KEYS: [1] the time index. ARGV: [1] key.
INDEX_REMOVE = "return redis.call('ZREM', KEYS[1], ARGV[1])"

#: The data scripts that can be fenced, by operation.
DATA_SCRIPTS: dict[str, str] = {
    "check_and_set": CHECK_AND_SET,
    "set": SET,
    "delete": DELETE,
    "increment": INCREMENT,
    "compare_and_swap": COMPARE_AND_SWAP,
    "index_add": INDEX_ADD,
    "index_remove": INDEX_REMOVE,
}

# The lease checks, by kind of fence. KEYS[1] and ARGV[1] as in the module docstring.
_LOCK_CHECK = f"""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('{FENCE_ERROR} lock lease lost')
end
"""
_PERMIT_CHECK = (
    _NOW_MS.replace("now_ms", "fence_now_ms")
    + f"""
local fence_deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not fence_deadline or tonumber(fence_deadline) <= fence_now_ms() then
  return redis.error_reply('{FENCE_ERROR} permit lease lost')
end
"""
)
CHECKS: dict[str, str] = {"lock": _LOCK_CHECK, "semaphore": _PERMIT_CHECK, "rwlock": _PERMIT_CHECK}


def shifted(script: str) -> str:
    """``script`` with every ``KEYS[i]`` and ``ARGV[i]`` moved to ``i + 1``."""
    return re.sub(
        r"\b(KEYS|ARGV)\[(\d+)\]", lambda m: f"{m.group(1)}[{int(m.group(2)) + 1}]", script
    )


def fenced_script(kind: str, operation: str) -> str:
    """The fenced form of ``operation``'s script for a lease of ``kind``."""
    return CHECKS[kind] + shifted(DATA_SCRIPTS[operation])


#: Every fenced script, by (kind of fence, operation).
FENCED_SCRIPTS: dict[tuple[str, str], str] = {
    (kind, operation): fenced_script(kind, operation)
    for kind in CHECKS
    for operation in DATA_SCRIPTS
}
