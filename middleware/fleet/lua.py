"""Lua shared by the fleet's scripts (``seawall.fleet.scripts``): the server's clock, and
the rules by which a script tells values seawall wrote from values it did not.

Every key a script writes gets a TTL, and every time it writes lies at most
``HORIZON_MS`` ahead; a value that breaks either rule (another app's data
under the prefix, an old layout, a hostile write) is deleted where it is met,
not obeyed: obeyed, it kept a key open, paused or unprobed on every member
for as long as it stayed, which without a TTL is for good.
"""

from __future__ import annotations

__all__ = ["COOL_END", "HORIZON_MS", "NOW"]

#: Milliseconds ahead beyond which no time seawall writes lies (a day: cost reports' TTL).
HORIZON_MS = 86_400_000

#: The cooldown's end in ``c``, or 0 when there is none, or when it is not one seawall wrote
#: (deleted): ``COOL`` always sets a TTL that ends with the wait; a number with no TTL, a TTL
#: beyond ``HORIZON_MS``, or an end after its TTL's (a value another app wrote) would pause
#: every member's key for good. Text is left for ``REPAIR`` (the reply is cut short).
COOL_END = f"""
local function cool_end(now)
  local v = redis.call('GET', KEYS[{{c}}])
  local cool = tonumber(v or '0')
  if cool == nil or cool == 0 then return cool end
  local left = redis.call('PTTL', KEYS[{{c}}])
  if left < 0 or left > {HORIZON_MS} or not (cool <= now + left + 1000) then
    redis.call('DEL', KEYS[{{c}}])
    return 0
  end
  return cool
end
"""

#: What every script starts with: ``now`` (the server's clock, ms); ``foreign(key, ...)``
#: deletes the keys no seawall script wrote (every write sets a TTL: a key with none, or
#: one beyond ``HORIZON_MS``, is another app's data or an old layout's, and would live and
#: be obeyed for good); ``live_votes(node)``, the votes in ``v`` that have not expired (one
#: further ahead than ``HORIZON_MS`` is none seawall cast, and is dropped).
NOW = (
    f"local HORIZON = {HORIZON_MS}\n"
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function live_votes(node)
  local all = redis.call('HGETALL', KEYS[2])
  local n, mine = 0, 0
  for i = 1, #all, 2 do
    local e = tonumber(all[i + 1])
    if e > now and e <= now + HORIZON then
      n = n + 1
      if all[i] == node then mine = 1 end
    else
      redis.call('HDEL', KEYS[2], all[i])
    end
  end
  return n, mine
end
local function foreign(...)
  for _, key in ipairs({...}) do
    local left = redis.call('PTTL', key)
    if left == -1 or left > HORIZON then redis.call('DEL', key) end
  end
end
"""
)
