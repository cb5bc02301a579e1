"""The Lua scripts of the Redis permit tables (semaphores and read-write locks).

The rule they apply is :mod:`lockyard.permits`'s. Keys of one name in one space (``semaphore``
or ``rwlock``), all under the hash tag ``{P|<space>:<name>}``, so one slot:

- ``:meta`` hash: ``lim`` the limit (set by the first attempt), ``u`` the weight of the holders
  in ``:holders``, ``e``/``c`` the fencing epoch and counter (as a lock's fence hash), ``q`` the
  last queue ticket. Never expires: the counter must only grow.
- ``:holders`` zset: owner -> lease deadline (ms, server clock).
- ``:info`` hash: owner -> ``"<weight> <epoch> <counter>"``.
- ``:queue`` zset: waiting owner -> ticket (arrival order); ``:waiters`` hash: owner ->
  ``"<waiter lease deadline> <client id> <weight>"``. Both expire a waiter lease after the last
  join or renewal, as a lock's queue does.

Expired holders are removed (and ``u`` lowered) by every script that counts them; expired
waiters when a script walks the queue. A release publishes ``"<space>:<name>\\n<owner>"`` on
the store's release channel for each waiter that now fits (in queue order, stopping at the
first that does not) unless it waits in the calling client, which wakes it from the reply.
"""

from __future__ import annotations

from .scripts import _NOW_MS

# Shared helpers: expired holders out (returns the weight still held), the weight of the live
# waiters ahead of an owner, and signalling the waiters that fit.
_PERMIT_HELPERS = (
    _NOW_MS
    + """
local function prune_holders(meta, holders, info, now)
  local expired = redis.call('ZRANGEBYSCORE', holders, '-inf', now)
  for _, owner in ipairs(expired) do
    local entry = redis.call('HGET', info, owner)
    if entry then
      redis.call('HINCRBY', meta, 'u', -tonumber(string.match(entry, '^(%d+)')))
      redis.call('HDEL', info, owner)
    end
  end
  if #expired > 0 then
    redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
  end
  return tonumber(redis.call('HGET', meta, 'u') or '0')
end

-- The live waiters in queue order as {owner, weight, client}; expired entries are removed.
local function live_waiters(queue, waiters, now, stop_at)
  local found = {}
  for _, owner in ipairs(redis.call('ZRANGE', queue, 0, -1)) do
    if owner == stop_at then
      break
    end
    local entry = redis.call('HGET', waiters, owner) or '0  0'
    local deadline, client, weight = string.match(entry, '^(%d+) (.*) (%d+)$')
    if tonumber(deadline or '0') > now then
      found[#found + 1] = {owner, tonumber(weight), client}
    else
      redis.call('ZREM', queue, owner)
      redis.call('HDEL', waiters, owner)
    end
  end
  return found
end

-- Publish to the waiters that fit now, in order (at most 256); returns the owners among them
-- that wait in the calling client (it wakes those itself).
local function signal_fitting(keys, channel, signal, caller, now)
  local used = prune_holders(keys[1], keys[2], keys[3], now)
  local limit = tonumber(redis.call('HGET', keys[1], 'lim') or '0')
  local mine = {}
  local count = 0
  for _, waiter in ipairs(live_waiters(keys[4], keys[5], now, nil)) do
    if used + waiter[2] > limit or count >= 256 then
      break
    end
    used = used + waiter[2]
    count = count + 1
    if waiter[3] == caller then
      mine[#mine + 1] = waiter[1]
    else
      redis.call('PUBLISH', channel, signal .. '\\n' .. waiter[1])
    end
  end
  return mine
end
"""
)

# One attempt. KEYS: [1] meta, [2] holders, [3] info, [4] queue, [5] waiters. ARGV: [1] owner,
# [2] weight, [3] limit, [4] lease ms, [5] waiter lease ms, or '' for an attempt that does not
# queue, [6] '1' if such an attempt counts every live waiter ('' : none), [7] the caller's
# client id, [8] the fencing epoch of the connection (Sentinel's config epoch; 0 on one server).
# Returns {epoch, counter} when granted; {'limit', first limit} when ARGV[3] differs from the
# name's limit (nothing changed); otherwise the ms to wait at most: until the first holder's
# lease ends, or, with no holder, the first waiter's waiter lease.
PERMIT_ACQUIRE = (
    _PERMIT_HELPERS
    + """
local owner = ARGV[1]
local weight = tonumber(ARGV[2])
local limit = redis.call('HGET', KEYS[1], 'lim')
if not limit then
  redis.call('HSET', KEYS[1], 'lim', ARGV[3])
elseif limit ~= ARGV[3] then
  return {'limit', limit}
end
limit = tonumber(ARGV[3])
local now = now_ms()
local used = prune_holders(KEYS[1], KEYS[2], KEYS[3], now)
local waiting = ARGV[5] ~= ''
local ahead = 0
local first_waiter = nil
if waiting or ARGV[6] ~= '' then
  local stop_at = nil
  if waiting then
    stop_at = owner
  end
  for _, waiter in ipairs(live_waiters(KEYS[4], KEYS[5], now, stop_at)) do
    ahead = ahead + waiter[2]
    first_waiter = first_waiter or waiter[1]
  end
end
if used + ahead + weight <= limit then
  local fence = redis.call('HMGET', KEYS[1], 'e', 'c')
  local epoch = tonumber(fence[1] or '0')
  local wanted = tonumber(ARGV[8])
  local counter
  if wanted > epoch or not fence[2] then
    epoch = math.max(epoch, wanted)
    counter = 1
    redis.call('HSET', KEYS[1], 'e', string.format('%.0f', epoch), 'c', 1)
  else
    counter = redis.call('HINCRBY', KEYS[1], 'c', 1)
  end
  redis.call('ZADD', KEYS[2], string.format('%.0f', now + tonumber(ARGV[4])), owner)
  redis.call('HSET', KEYS[3], owner,
    ARGV[2] .. ' ' .. string.format('%.0f', epoch) .. ' ' .. counter)
  redis.call('HINCRBY', KEYS[1], 'u', weight)
  if waiting then
    redis.call('ZREM', KEYS[4], owner)
    redis.call('HDEL', KEYS[5], owner)
  end
  return {epoch, counter}
end
local retry = 0
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #first > 0 then
  retry = tonumber(first[2]) - now
elseif first_waiter then
  local entry = redis.call('HGET', KEYS[5], first_waiter) or '0'
  retry = tonumber(string.match(entry, '^(%d+)') or '0') - now
end
if waiting then
  if not redis.call('ZSCORE', KEYS[4], owner) then
    redis.call('ZADD', KEYS[4], redis.call('HINCRBY', KEYS[1], 'q', 1), owner)
  end
  local lease = tonumber(ARGV[5])
  redis.call('HSET', KEYS[5], owner,
    string.format('%.0f', now + lease) .. ' ' .. ARGV[7] .. ' ' .. ARGV[2])
  for _, key in ipairs({KEYS[4], KEYS[5]}) do
    if redis.call('PTTL', key) < lease then
      redis.call('PEXPIRE', key, lease)
    end
  end
end
return math.max(retry, 0)
"""
)

# extend. KEYS: [1] holders. ARGV: [1] owner, [2] lease ms. Returns 1 if the owner held a live
# permit (its lease reset to now + ARGV[2]), 0 otherwise (nothing touched).
PERMIT_EXTEND = (
    _NOW_MS
    + """
local now = now_ms()
local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
if deadline and tonumber(deadline) > now then
  redis.call('ZADD', KEYS[1], 'XX', string.format('%.0f', now + tonumber(ARGV[2])), ARGV[1])
  return 1
end
return 0
"""
)

# is_held. KEYS: [1] holders. ARGV: [1] owner. Returns 1 if the owner holds a live permit.
PERMIT_IS_HELD = (
    _NOW_MS
    + """
local deadline = redis.call('ZSCORE', KEYS[1], ARGV[1])
if deadline and tonumber(deadline) > now_ms() then
  return 1
end
return 0
"""
)

# release, and break (any caller may name any owner). KEYS: as PERMIT_ACQUIRE. ARGV: [1] owner,
# [2] release channel, [3] signal name ("<space>:<name>"), [4] the caller's client id.
# Returns {1, {owners to wake in the caller}} if the owner held a live permit (removed, and the
# waiters that now fit signalled), 0 otherwise (nothing touched).
PERMIT_RELEASE = (
    _PERMIT_HELPERS
    + """
local now = now_ms()
local deadline = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not deadline or tonumber(deadline) <= now then
  return 0
end
local entry = redis.call('HGET', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if entry then
  redis.call('HINCRBY', KEYS[1], 'u', -tonumber(string.match(entry, '^(%d+)')))
end
return {1, signal_fitting(KEYS, ARGV[2], ARGV[3], ARGV[4], now)}
"""
)

# A waiter gives up. KEYS: as PERMIT_ACQUIRE. ARGV: as PERMIT_RELEASE. Removes the owner's queue
# entry; if it had one, signals the waiters that now fit. Returns the owners to wake in the
# caller ({} when none).
PERMIT_LEAVE_QUEUE = (
    _PERMIT_HELPERS
    + """
if redis.call('ZREM', KEYS[4], ARGV[1]) == 0 then
  return {}
end
redis.call('HDEL', KEYS[5], ARGV[1])
return signal_fitting(KEYS, ARGV[2], ARGV[3], ARGV[4], now_ms())
"""
)

# list_held, per name found by SCAN (sent with EVAL in a pipeline). KEYS: [1] meta, [2] holders,
# [3] info. No ARGV. Returns a flat array: the limit, then per live holder: owner, ms left,
# weight, epoch, counter.
PERMIT_LIST = (
    _NOW_MS
    + """
local now = now_ms()
local found = {redis.call('HGET', KEYS[1], 'lim') or '0'}
local live = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf', 'WITHSCORES')
for i = 1, #live, 2 do
  local entry = redis.call('HGET', KEYS[3], live[i]) or '0 0 0'
  local weight, epoch, counter = string.match(entry, '^(%d+) (%d+) (%d+)$')
  found[#found + 1] = live[i]
  found[#found + 1] = tonumber(live[i + 1]) - now
  found[#found + 1] = weight
  found[#found + 1] = epoch
  found[#found + 1] = counter
end
return found
"""
)

#: The permit scripts, by name.
PERMIT_SCRIPTS: dict[str, str] = {
    "permit_acquire": PERMIT_ACQUIRE,
    "permit_extend": PERMIT_EXTEND,
    "permit_is_held": PERMIT_IS_HELD,
    "permit_release": PERMIT_RELEASE,
    "permit_leave_queue": PERMIT_LEAVE_QUEUE,
}
