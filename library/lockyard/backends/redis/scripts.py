"""The Lua scripts of the Redis backend, one named constant per operation, and their caller.

Each header says what ``KEYS``/``ARGV`` hold and what the script returns. The layout they work on
is described in docs/backends/redis.md (key names: :mod:`.keys`). Every script touches only keys
of one hash slot (the data key, its kind index and its kind expiry set share the tag
``{P|kind}``; a lock's lease and fencing keys share ``{P|lock:name}``), so the same scripts run
unchanged on Redis Cluster.
The scan and sweep scripts derive data keys from index members (same tag, hence same slot)
instead of declaring them: their number is not known before the script runs.

Deadlines come from the server's clock (``TIME``) and are written with ``PEXPIREAT``, so the
expiry set holds exactly the deadline Redis itself enforces. Numbers that must stay exact
(counter values) never pass through Lua numbers: ``HINCRBY`` does the int64 arithmetic and the
script returns the stored string.

:class:`Scripts` calls them with one ``EVALSHA`` each (:class:`LuaScript`); they are loaded when
a backend opens.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis import exceptions as rx
from redis.asyncio import Redis

from .autopipeline import AutoPipelinedRedis

# Shared helpers, prepended to the scripts that need them.
_NOW_MS = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# Sets the expiry of a data key to exactly ``ttl`` ('' = none) and mirrors it in the expiry set.
_EXPIRE_EXACTLY = (
    _NOW_MS
    + """
local function expire_exactly(data, expiries, member, ttl)
  if ttl == '' then
    if redis.call('PERSIST', data) == 1 then
      redis.call('ZREM', expiries, member)
    end
  else
    local at = string.format('%.0f', now_ms() + tonumber(ttl))
    redis.call('PEXPIREAT', data, at)
    redis.call('ZADD', expiries, at, member)
  end
end
"""
)

# The fencing epoch of an acquisition: the caller's (Sentinel's config-epoch of the master its
# connection was opened to; 0 on one server), or, when the caller passes -1 (Redis Cluster), the
# cluster's current epoch as the master running the script knows it, read as it runs: a replica
# promoted by a failover takes an epoch above every epoch its old master knew, whatever the
# client knew; and in a settled cluster every master knows the same current epoch, so tokens
# of different names compare as on one server.
_FENCING_EPOCH = """
local function fencing_epoch(given)
  local epoch = tonumber(given)
  if epoch >= 0 then
    return epoch
  end
  return tonumber(string.match(redis.call('CLUSTER', 'INFO'), 'cluster_current_epoch:(%d+)'))
end
"""

# -- data ---------------------------------------------------------------------------------------
# Data operations share KEYS: [1] data hash {v = value, n = version}, [2] kind index (zset, score
# 0, members = canonical keys, lexicographic order), [3] kind expiry set (zset, score = deadline
# ms on the server clock, members = canonical keys that have a TTL).

# check_and_set. ARGV: [1] canonical key, [2] value, [3] ttl ms or ''.
# Returns 1 if this call created the key, 0 if a live value exists (left untouched).
CHECK_AND_SET = (
    _NOW_MS
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'n', 1)
redis.call('ZADD', KEYS[2], 0, ARGV[1])
if ARGV[3] ~= '' then
  local at = string.format('%.0f', now_ms() + tonumber(ARGV[3]))
  redis.call('PEXPIREAT', KEYS[1], at)
  redis.call('ZADD', KEYS[3], at, ARGV[1])
end
return 1
"""
)

# set. ARGV: [1] canonical key, [2] value, [3] ttl ms or '' (no expiry: clears an earlier one).
# Returns the new version (1 when created; an expired key counts as absent).
SET = (
    _EXPIRE_EXACTLY
    + """
local version = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HSET', KEYS[1], 'v', ARGV[2])
if version == 1 then
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
end
expire_exactly(KEYS[1], KEYS[3], ARGV[1], ARGV[3])
return version
"""
)

# delete. ARGV: [1] canonical key. Returns 1 if a live value was removed, else 0.
DELETE = """
if redis.call('DEL', KEYS[1]) == 0 then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""

# increment. ARGV: [1] canonical key, [2] delta (decimal int64), [3] ttl ms or '' (keep expiry).
# Returns the new value as the stored decimal string; or, when the current value is not a
# counter (HINCRBY reads only the canonical decimal of an int64, the grammar every backend
# shares) or the sum leaves int64, a one-element array holding the current value (nothing
# changed: HINCRBY fails before any write).
INCREMENT = (
    _NOW_MS
    + """
local result = redis.pcall('HINCRBY', KEYS[1], 'v', ARGV[2])
if type(result) == 'table' and result.err then
  return {redis.call('HGET', KEYS[1], 'v') or ''}
end
if redis.call('HINCRBY', KEYS[1], 'n', 1) == 1 then
  redis.call('ZADD', KEYS[2], 0, ARGV[1])
end
if ARGV[3] ~= '' then
  local at = string.format('%.0f', now_ms() + tonumber(ARGV[3]))
  redis.call('PEXPIREAT', KEYS[1], at)
  redis.call('ZADD', KEYS[3], at, ARGV[1])
end
return redis.call('HGET', KEYS[1], 'v')
"""
)

# compare_and_swap. ARGV: [1] canonical key, [2] expected version, [3] new value, [4] ttl ms or
# '' (expiry becomes exactly ttl, like set). Returns {} when the key is missing or expired,
# {0, value, version} on a version conflict, {1, new version} when written.
COMPARE_AND_SWAP = (
    _EXPIRE_EXACTLY
    + """
local current = redis.call('HMGET', KEYS[1], 'v', 'n')
if not current[1] then
  return {}
end
if current[2] ~= ARGV[2] then
  return {0, current[1], current[2]}
end
local version = redis.call('HINCRBY', KEYS[1], 'n', 1)
redis.call('HSET', KEYS[1], 'v', ARGV[3])
expire_exactly(KEYS[1], KEYS[3], ARGV[1], ARGV[4])
return {1, version}
"""
)

# scan_keys / scan_keys_by_kind. KEYS: [1] kind index, [2] kind expiry set. ARGV: [1] data-key
# prefix of the kind ('lockyard:{P|kind}:d:'), [2] canonical-key prefix ('' = the whole kind),
# [3] '1' on a single server, where a member whose data key is not there is gone (expired): it
# is removed from both sets on the way; '' on Redis Cluster, where it may only be on the other
# master of a slot in migration (keys move one by one): it is reported, and left in the sets.
# The prefix is a lexicographic range [p, p..0xFF) of the index: literal, O(log N + M).
# Returns {found, absent}: found a flat array key1, value1, key2, value2, ...; absent the
# members not found here (always empty with ARGV[3] = '1').
SCAN = """
local members
if ARGV[2] == '' then
  members = redis.call('ZRANGE', KEYS[1], 0, -1)
else
  members = redis.call('ZRANGEBYLEX', KEYS[1], '[' .. ARGV[2], '(' .. ARGV[2] .. '\\255')
end
local found, absent = {}, {}
for _, member in ipairs(members) do
  local value = redis.call('HGET', ARGV[1] .. member, 'v')
  if value then
    found[#found + 1] = member
    found[#found + 1] = value
  elseif ARGV[3] == '1' then
    redis.call('ZREM', KEYS[1], member)
    redis.call('ZREM', KEYS[2], member)
  else
    absent[#absent + 1] = member
  end
end
return {found, absent}
"""

# The background sweep of one kind. KEYS: [1] kind index, [2] kind expiry set. ARGV: [1] data-key
# prefix of the kind, [2] batch size. Takes up to ARGV[2] members whose deadline has passed
# (score < now) out of the expiry set, and out of the index when their data key is gone.
# Returns how many it examined (the batch size means: call again).
SWEEP = (
    _NOW_MS
    + """
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%.0f', now_ms()),
  'LIMIT', 0, tonumber(ARGV[2]))
for _, member in ipairs(due) do
  redis.call('ZREM', KEYS[2], member)
  if redis.call('EXISTS', ARGV[1] .. member) == 0 then
    redis.call('ZREM', KEYS[1], member)
  end
end
return #due
"""
)

# -- locks --------------------------------------------------------------------------------------
# Lock scripts use these keys of one lock (all tagged {P|lock:name}, one slot): the lease
# (string: owner token, PX = the lease); the fencing hash {e = epoch of the last acquisition,
# c = counter within that epoch, q = the last queue ticket handed out}, which never expires
# (counters are never reused); the queue (zset: owner -> ticket, so arrival order) and the
# waiters hash (owner -> "<end of its waiter lease, ms on the server clock> <client id>") of the
# callers waiting for it. Queue and waiters expire (PEXPIRE) a waiter lease after the last
# waiter joined or renewed, so an abandoned queue vanishes by itself.
#
# A release publishes "<name>\n<owner of the queue's head>" on the store's release channel, and
# the listener of each client wakes only that owner's waiter. It publishes nothing when nobody
# is queued (every waiting acquire is), nor when the head waits in the releasing client itself
# (same client id): that client wakes it directly from the script's reply.

# The first live waiter of a queue, removing expired entries in front of it (each is removed
# once, so the cost is amortised over the joins). Returns its owner, the ms left on its waiter
# lease and its client id; or nil when nobody live is queued.
_QUEUE_HEAD = (
    _NOW_MS
    + """
local function queue_head(queue, waiters)
  local now = nil
  while true do
    local first = redis.call('ZRANGE', queue, 0, 0)
    if #first == 0 then
      return nil
    end
    local owner = first[1]
    local entry = redis.call('HGET', waiters, owner) or '0 '
    local deadline, client = string.match(entry, '^(%d+) (.*)$')
    deadline = tonumber(deadline or '0')
    now = now or now_ms()
    if deadline > now then
      return owner, deadline - now, client
    end
    redis.call('ZREM', queue, owner)
    redis.call('HDEL', waiters, owner)
  end
end

-- Tell the head of the queue that the lock is free, unless it waits in the calling client
-- (which wakes it from the reply) or nobody waits. Returns the head's owner, or ''.
local function signal_head(queue, waiters, channel, name, caller)
  local head, _, client = queue_head(queue, waiters)
  if not head then
    return ''
  end
  if client ~= caller then
    redis.call('PUBLISH', channel, name .. '\\n' .. head)
  end
  return head
end
"""
)

# try_acquire, and each attempt of a waiting acquire. KEYS: [1] lease, [2] fencing hash,
# [3] queue, [4] waiters. ARGV: [1] owner, [2] lease ms, [3] fencing epoch of the connection
# (Sentinel's config-epoch of this master; 0 on a single server; -1: the cluster's current
# epoch as this node knows it, see fencing_epoch above), [4] waiter lease ms, or '' for
# an attempt that does not queue (try_acquire: takes a free lock whoever waits), or '0' for
# one that respects the queue but does not join it (take if unwanted), [5] the caller's client
# id (with a waiter lease).
# A waiting attempt takes the lock only when it is free and the queue has no live waiter ahead
# of ARGV[1] (its own entry then goes); otherwise it joins the queue at the tail, or keeps its
# place, with its waiter lease renewed (not with '0': then nothing changes).
# Returns {epoch, counter} when acquired; otherwise the ms to wait at most: the holder's
# remaining lease (PTTL), or, when the lock is free but another waiter is first, that waiter's
# remaining waiter lease. A newer epoch restarts the counter at 1; an older or equal one
# continues the stored counter.
ACQUIRE = (
    _QUEUE_HEAD
    + _FENCING_EPOCH
    + """
local owner = ARGV[1]
local waiting = ARGV[4] ~= ''
local head, head_left = nil, nil
if waiting then
  head, head_left = queue_head(KEYS[3], KEYS[4])
end
if (head == nil or head == owner) and redis.call('SET', KEYS[1], owner, 'NX', 'PX', ARGV[2]) then
  if head == owner then
    redis.call('ZREM', KEYS[3], owner)
    redis.call('HDEL', KEYS[4], owner)
  end
  local fence = redis.call('HMGET', KEYS[2], 'e', 'c')
  local epoch = tonumber(fence[1] or '0')
  local wanted = fencing_epoch(ARGV[3])
  if wanted > epoch or not fence[2] then
    epoch = math.max(epoch, wanted)
    redis.call('HSET', KEYS[2], 'e', string.format('%.0f', epoch), 'c', 1)
    return {epoch, 1}
  end
  return {epoch, redis.call('HINCRBY', KEYS[2], 'c', 1)}
end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  left = head_left or 0
end
if waiting and ARGV[4] ~= '0' then
  if not redis.call('ZSCORE', KEYS[3], owner) then
    redis.call('ZADD', KEYS[3], redis.call('HINCRBY', KEYS[2], 'q', 1), owner)
  end
  local lease = tonumber(ARGV[4])
  redis.call('HSET', KEYS[4], owner, string.format('%.0f', now_ms() + lease) .. ' ' .. ARGV[5])
  for _, key in ipairs({KEYS[3], KEYS[4]}) do
    if redis.call('PTTL', key) < lease then
      redis.call('PEXPIRE', key, lease)
    end
  end
end
return left
"""
)

# extend. ARGV: [1] owner, [2] lease ms. Returns 1 if the owner held it (lease reset to now +
# ARGV[2]), 0 otherwise (nothing touched).
EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# release. KEYS: [1] lease, [2] queue, [3] waiters. ARGV: [1] owner, [2] release channel,
# [3] lock name, [4] the caller's client id. Returns {1, owner of the queue's head or ''} if the
# owner held it (deleted, and the head signalled as described above), 0 otherwise (nothing
# touched).
RELEASE = (
    _QUEUE_HEAD
    + """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return {1, signal_head(KEYS[2], KEYS[3], ARGV[2], ARGV[3], ARGV[4])}
end
return 0
"""
)

# break_lock. KEYS: [1] lease, [2] queue, [3] waiters. ARGV: [1] release channel, [2] lock name,
# [3] the caller's client id. Returns {1, owner of the queue's head or ''} if a live lease was
# removed (and the head signalled), 0 otherwise.
BREAK = (
    _QUEUE_HEAD
    + """
if redis.call('DEL', KEYS[1]) == 1 then
  return {1, signal_head(KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3])}
end
return 0
"""
)

# A waiter gives up (timeout, cancellation, error). KEYS: [1] lease, [2] queue, [3] waiters.
# ARGV: [1] owner, [2] release channel, [3] lock name, [4] the caller's client id. Removes
# ARGV[1] from the queue; if it was queued and the lock is free, signals the new head (it would
# otherwise wait for a release that already happened). Returns that head's owner, or ''.
LEAVE_QUEUE = (
    _QUEUE_HEAD
    + """
if redis.call('ZREM', KEYS[2], ARGV[1]) == 0 then
  return ''
end
redis.call('HDEL', KEYS[3], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 then
  return ''
end
return signal_head(KEYS[2], KEYS[3], ARGV[2], ARGV[3], ARGV[4])
"""
)

# list_held, per lock found by SCAN (sent with EVAL in a pipeline). No ARGV. Returns {} when
# the lease is gone, else {owner, remaining ms, epoch, counter}.
LOCK_INFO = """
local owner = redis.call('GET', KEYS[1])
if not owner then
  return {}
end
local fence = redis.call('HMGET', KEYS[2], 'e', 'c')
return {owner, redis.call('PTTL', KEYS[1]), fence[1] or '0', fence[2] or '0'}
"""

#: The scripts loaded (SCRIPT LOAD) when a backend opens, by name.
SCRIPTS: dict[str, str] = {
    "check_and_set": CHECK_AND_SET,
    "set": SET,
    "delete": DELETE,
    "increment": INCREMENT,
    "compare_and_swap": COMPARE_AND_SWAP,
    "scan": SCAN,
    "sweep": SWEEP,
    "acquire": ACQUIRE,
    "extend": EXTEND,
    "release": RELEASE,
    "break": BREAK,
    "leave_queue": LEAVE_QUEUE,
}


class LuaScript:
    """One script: ``EVALSHA``; on ``NOSCRIPT`` (a restarted or promoted server) ``SCRIPT LOAD``
    and one retry. redis-py's ``Script`` does the same; this one skips its per-call
    pipeline check and argument copies, which are measurable on the hot path."""

    __slots__ = ("_execute", "script", "sha")

    def __init__(self, client: Redis, script: str) -> None:
        self._execute: Callable[..., Awaitable[Any]] = client.execute_command
        self.script = script
        self.sha = hashlib.sha1(script.encode()).hexdigest()

    async def __call__(self, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        execute = self._execute
        try:
            return await execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except rx.NoScriptError:
            await execute("SCRIPT LOAD", self.script)
            return await execute("EVALSHA", self.sha, len(keys), *keys, *args)


class Scripts:
    """The scripts above, ready to call on one client."""

    def __init__(self, client: Redis) -> None:
        self._client = client
        self.by_name: dict[str, LuaScript] = {
            name: LuaScript(client, text) for name, text in SCRIPTS.items()
        }
        self.check_and_set = self.by_name["check_and_set"]
        self.set = self.by_name["set"]
        self.delete = self.by_name["delete"]
        self.increment = self.by_name["increment"]
        self.compare_and_swap = self.by_name["compare_and_swap"]
        self.scan = self.by_name["scan"]
        self.sweep = self.by_name["sweep"]
        self.acquire = self.by_name["acquire"]
        self.extend = self.by_name["extend"]
        self.release = self.by_name["release"]
        self.breaks = self.by_name["break"]
        self.leave_queue = self.by_name["leave_queue"]

    async def load(self) -> None:
        """Load every script in one round trip, so EVALSHA finds them.

        On an auto-pipelined client the loads are issued together and written as one batch on
        the handle's own connection: a redis-py pipeline would check a second connection out
        of the pool, and it would then stay open, idle, for the handle's life (the operator,
        one handle per StateStore, held two connections per store that way)."""
        if isinstance(self._client, AutoPipelinedRedis):
            scripts = self.by_name.values()
            await asyncio.gather(*(self._client.script_load(s.script) for s in scripts))
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for script in self.by_name.values():
                pipe.script_load(script.script)
            await pipe.execute()
