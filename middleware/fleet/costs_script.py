"""The ``COSTS`` script: the fleet's cost exchange (``seawall.fleet.totals.CostExchange``).

Two keys in the ``{costs}`` slot: ``<prefix>:{costs}``, a hash of node ->
``expiry|report JSON``, and ``<prefix>:{costs}:w``, its index: a sorted set of
the same nodes scored by when each report was written (server ms). A call
reads the index to find the reports written since the caller's last read and
the expired ones, and the hash's bytes of the changed reports only; it walked
the whole hash before (``HGETALL``: about 40 ms of Redis time a call at 3,000
reports of 1.6 KB, every second on every member, while every other client of
that Redis waited).
"""

from __future__ import annotations

__all__ = ["COSTS", "COSTS_LAPSE"]

#: Most expired reports one exchange deletes (the oldest first; the rest at the next ones):
#: a backlog of them is itself deleted in slices.
COSTS_LAPSE = 500

#: KEYS: the costs hash (node -> ``expiry|report``) and its index, a sorted set of the same
#: nodes scored by when each report was written (server ms; both in the ``{costs}`` slot).
#: ARGV: node, this node's cost report as JSON ('' : unchanged), ttl ms, since (server ms)
#: and after (a node): only reports written later, or then by a node named after it, are
#: sent (0 and '': all), at most how many, at most how many expired reports to delete, and
#: '0' not to list the live nodes. Returns {now, 1 when this node's report is missing
#: (Redis lost it: a restart, a FLUSHALL) and it sent none, the next read's since and
#: after, the number of other live nodes listed, their names (none unless asked: listing
#: 3,000 took 1.3 ms of Redis time, 30 times the rest of a call), then (node, report) for
#: the oldest of those}: a day of dead workers' reports is sent once, in slices, not every
#: second to every member.
#: The index is read, not the hash: a call reads the changed reports' bytes only (HMGET).
#: When the two keys disagree (not the same expiry time, or not the same count: one of
#: them lost, evicted or written by another version, which sets the hash's TTL alone) the
#: index is rebuilt from the whole hash, once (the old cost, the slow path).
COSTS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local H, Z, node, mine = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local ttl, since, after = tonumber(ARGV[3]), tonumber(ARGV[4] or '0'), ARGV[6] or ''
local cap, lapse, floor = tonumber(ARGV[5] or '1000000'), tonumber(ARGV[7] or '1000'), now - ttl
local function expiry(v)
  local bar = string.find(v, '|', 1, true)
  local e = bar and tonumber(string.sub(v, 1, bar - 1))
  if e == nil or e ~= e or e == math.huge or e == -math.huge then return nil end
  return e, bar
end
local function ends(key)
  local r = redis.pcall('PEXPIRETIME', key)
  return type(r) == 'number' and r or 0  -- (a Redis before 7.0: the counts alone)
end
local zt = redis.call('TYPE', Z)['ok']
if zt ~= 'zset' and zt ~= 'none' then redis.call('DEL', Z) end
if ends(H) ~= ends(Z) or redis.call('HLEN', H) ~= redis.call('ZCARD', Z) then
  redis.call('DEL', Z)
  local rows, batch = redis.call('HGETALL', H), {}
  for i = 1, #rows, 2 do
    local e = expiry(rows[i + 1])
    if e == nil or e <= now then
      redis.call('HDEL', H, rows[i])
    else
      table.insert(batch, math.min(e - ttl, now))
      table.insert(batch, rows[i])
      if #batch >= 1000 then
        redis.call('ZADD', Z, unpack(batch))
        batch = {}
      end
    end
  end
  if #batch > 0 then redis.call('ZADD', Z, unpack(batch)) end
end
if mine ~= '' then
  redis.call('HSET', H, node, (now + ttl) .. '|' .. mine)
  redis.call('ZADD', Z, now, node)
end
local missing = (mine == '' and redis.call('HEXISTS', H, node) == 0) and 1 or 0
local old = redis.call('ZRANGEBYSCORE', Z, '-inf', floor, 'LIMIT', 0, lapse)
if #old > 0 then
  redis.call('HDEL', H, unpack(old))
  redis.call('ZREM', Z, unpack(old))
end
local got, off = {}, 0
while #got <= cap do
  local rows = redis.call('ZRANGEBYSCORE', Z, math.max(since, floor), '+inf', 'WITHSCORES',
    'LIMIT', off, cap + 1)
  for i = 1, #rows, 2 do
    local name, w = rows[i], tonumber(rows[i + 1])
    if name ~= node and w > floor and (w > since or name > after) then
      table.insert(got, {w, name})
      if #got > cap then break end
    end
  end
  off = off + #rows / 2
  if #rows < 2 * (cap + 1) then break end
end
local next_since, next_after = now, ''
if #got > cap then next_since, next_after = got[cap][1], got[cap][2] end
local sent = {}
if #got > 0 then
  local names = {}
  for n = 1, math.min(#got, cap) do names[n] = got[n][2] end
  local values = redis.call('HMGET', H, unpack(names))
  for n, name in ipairs(names) do
    local v = values[n]
    local e, bar = nil, nil
    if v then e, bar = expiry(v) end
    if e == nil then  -- gone from the hash, or not what seawall writes: dropped
      redis.call('HDEL', H, name)
      redis.call('ZREM', Z, name)
    else
      table.insert(sent, name)
      table.insert(sent, string.sub(v, bar + 1))
    end
  end
end
local out = {now, missing, next_since, next_after, 0}
if ARGV[8] ~= '0' then
  for _, name in ipairs(redis.call('ZRANGEBYSCORE', Z, '(' .. floor, '+inf')) do
    if name ~= node then table.insert(out, name) end
  end
end
out[5] = #out - 5
for _, v in ipairs(sent) do table.insert(out, v) end
-- A ms short of what a PEXPIRE of ttl, then or later, sets: an older version's call (the
-- hash alone) always leaves the two ends different, even in the same ms.
redis.call('PEXPIREAT', H, now + ttl - 1)
redis.call('PEXPIREAT', Z, now + ttl - 1)
return out
"""
