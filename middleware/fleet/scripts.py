"""The Lua scripts of the fleet store: each one atomic, on the server's clock, one round trip.

Keys of one seawall key share a Redis Cluster hash slot: ``<prefix>:{<key>}:<part>``.

- ``b`` (hash): ``gen``, bumped by every fleet close; ``due``, server ms when
  the fleet-wide open is due a probe (0: no fleet-wide open);
- ``v`` (hash): votes, node -> server ms when its vote expires;
- ``p`` (string): the probe lease, held by one node for a recovery interval;
- ``c`` (string): the cooldown's end, server ms;
- ``r`` (hash): the fleet's paced rate, ``r`` (requests/s) set at ``at`` (server ms) by
  the last cut (``cut``, server ms) or bound; it rises back to the plateau ``w`` in
  ``RATE_RISE`` seconds, holds it until ``RATE_HOLD_MS`` after ``at`` if ``h`` is '1' (the
  last cut was costly: its 429 paused the fleet for whole seconds), then doubles every
  ``RATE_DOUBLING`` seconds (a slow probe upward); ``k``: '1' when the last cut kept the
  plateau (a dip), '2' when it was a new overshoot while rising back (``RATE_AGAIN_MS``);
  while an early probe runs (``e``, server ms when it started, later than ``cut``) the rate
  is ``p`` (the level it probes from) doubled every ``EARLY_DOUBLING`` s, at most
  ``EARLY_DOUBLINGS`` times; ``q``: early probes in a row that met the same limit, ``x``:
  server ms before which no early probe starts (their backoff);
- ``m`` (hash): the members pacing the key, node -> server ms when it expires;
- ``u`` (hash): retry budget use, node -> ``expiry:requests:retries`` in its window;
- ``<prefix>:{costs}`` (hash, one for the fleet): node -> ``expiry|cost report JSON``;
  ``<prefix>:{costs}:w`` (sorted set), its index: the same nodes, scored by when each
  report was written (``seawall.fleet.costs_script``).

Every key has a TTL, so a dead fleet leaves nothing behind. Times in and out
are integers in milliseconds.
"""

from __future__ import annotations

from seawall.fleet.lua import COOL_END, NOW
from seawall.fleet.totals import COSTS

__all__ = [
    "CLOSE",
    "COOL",
    "COSTS",
    "EARLY",
    "LEASE",
    "PROBED",
    "RATE",
    "READ",
    "VOTE",
]

#: Milliseconds in which an early probe doubles the fleet's rate (``LearntPace``'s 1 s) ...
EARLY_DOUBLING_MS = 1000
#: ... at most this many times (64x the level: the per-process cap of 1.2x the demand
#: bounds what is sent long before) ...
EARLY_DOUBLINGS = 6
#: ... and ms after a cut before which crowded members start none (``EARLY_PROBE``).
EARLY_PROBE_MS = 1000
#: A probe's ceiling under this multiple of its level met the same limit (``EARLY_SAME``) ...
EARLY_SAME = 1.1
#: ... and the next early probe waits this many times longer after the cut (``EARLY_BACKOFF``).
EARLY_BACKOFF = 4

#: Milliseconds after a costly cut (its 429 asked for whole seconds, or said nothing) during
#: which the fleet's rate does not probe upward: it rises back to its plateau, then holds it
#: (``seawall.learnt_pace.HOLD``: every probe past such a limit pauses the whole fleet for
#: the 429's second; past a limit that states a refill interval, for milliseconds).
RATE_HOLD_MS = 15_000
#: A cut at least this many ms after the last one, while the rate still rises back from it,
#: is a new overshoot: that cut did not bring the rate under the limit, so its plateau is no
#: level to rise back to (the 429s of one overshoot reach Redis within ``CUT_SPACING``).
RATE_AGAIN_MS = 500
#: ... and the second such cut in a row cuts the rate to at most this share of the rate now
#: (10 % per overshoot would take the fleet seconds of 429s and whole-second pauses to come
#: down from a level far too high).
RATE_AGAIN_CUT = 0.75


# The fleet's rate: ``r`` set at ``at``; it rises to the plateau ``w`` in ARGV[7] ms (a
# concave curve: fast, then flat), holds it until RATE_HOLD_MS after ``at`` when the last
# cut came from a costly 429 (``h``), then probes upward, doubling every ARGV[3] ms.
_RATE = f"""
local EARLY_DOUBLING_MS, EARLY_DOUBLINGS = {EARLY_DOUBLING_MS}, {EARLY_DOUBLINGS}
local EARLY_PROBE_MS = {EARLY_PROBE_MS}
local RATE_HOLD_MS = {RATE_HOLD_MS}
local function probe_base()
  local e = tonumber(redis.call('HGET', KEYS[4], 'e') or '0')
  if e <= 0 or e <= tonumber(redis.call('HGET', KEYS[4], 'cut') or '0') then return 0, 0 end
  return tonumber(redis.call('HGET', KEYS[4], 'p') or '0'), e
end
local function rate_now()
  local r = tonumber(redis.call('HGET', KEYS[4], 'r') or '0')
  if r <= 0 then return 0 end
  local p, e = probe_base()
  if p > 0 then
    return p * 2 ^ math.min(math.max(0, now - e) / EARLY_DOUBLING_MS, EARLY_DOUBLINGS)
  end
  local w = tonumber(redis.call('HGET', KEYS[4], 'w') or tostring(r))
  local at = tonumber(redis.call('HGET', KEYS[4], 'at') or tostring(now))
  local rise = tonumber(ARGV[7])
  local t = math.max(0, now - at)
  if t < rise then return r + (w - r) * (1 - (1 - t / rise) ^ 3) end
  local from = rise
  if redis.call('HGET', KEYS[4], 'h') == '1' then
    if t < RATE_HOLD_MS then return w end
    from = math.max(rise, RATE_HOLD_MS)
  end
  return w * 2 ^ ((t - from) / tonumber(ARGV[3]))
end
"""

#: KEYS: b, v, c, r, m, u. ARGV: node, member ttl ms (0: not pacing), doubling ms,
#: this node's requests and retries in its budget window, the window in ms, rise ms.
#: Returns {now, gen, votes, mine, due, cooldown_until, rate in mHz, members, my index,
#: the other nodes' requests, their retries, nodes counting, the early probe's level in mHz
#: (0: none; last, so that a member of an older version reads the rest as before)}.
READ = (
    NOW
    + _RATE
    + COOL_END.format(c=3)
    + """
foreign(KEYS[1], KEYS[2], KEYS[4], KEYS[5], KEYS[6])
local n, mine = live_votes(ARGV[1])
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
local due = tonumber(redis.call('HGET', KEYS[1], 'due') or '0')
local cool = cool_end(now)
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('HSET', KEYS[5], ARGV[1], now + ttl)
  redis.call('PEXPIRE', KEYS[5], ttl)
  if redis.call('PTTL', KEYS[4]) > 0 then
    redis.call('PEXPIRE', KEYS[4], math.max(redis.call('PTTL', KEYS[4]), ttl))
  end
end
local all = redis.call('HGETALL', KEYS[5])
local members = {}
for i = 1, #all, 2 do
  local e = tonumber(all[i + 1])
  if e > now and e <= now + HORIZON then
    table.insert(members, all[i])
  else
    redis.call('HDEL', KEYS[5], all[i])
  end
end
table.sort(members)
local index = -1
for i, node in ipairs(members) do
  if node == ARGV[1] then index = i - 1 end
end
local wttl = tonumber(ARGV[6])
if tonumber(ARGV[4]) > 0 or tonumber(ARGV[5]) > 0 then
  redis.call('HSET', KEYS[6], ARGV[1], (now + wttl) .. ':' .. ARGV[4] .. ':' .. ARGV[5])
  redis.call('PEXPIRE', KEYS[6], wttl)
else
  redis.call('HDEL', KEYS[6], ARGV[1])
end
local rows = redis.call('HGETALL', KEYS[6])
local oreq, oret, counting = 0, 0, 0
for i = 1, #rows, 2 do
  local exp, rq, rt = string.match(rows[i + 1], '(%d+):(%d+):(%d+)')
  if tonumber(exp) > now and tonumber(exp) <= now + HORIZON then
    counting = counting + 1
    if rows[i] ~= ARGV[1] then
      oreq = oreq + tonumber(rq)
      oret = oret + tonumber(rt)
    end
  else
    redis.call('HDEL', KEYS[6], rows[i])
  end
end
local base = probe_base()
return {now, gen, n, mine, due, cool, math.floor(rate_now() * 1000), #members, index,
        oreq, oret, counting, math.floor(base * 1000)}
"""
)

#: KEYS: b, v, c, r. ARGV: node, rate in mHz, doubling ms, ttl ms, spacing ms, bound (1:
#: the rate is a refill interval's bound, else a cut), rise ms, plateau (thousandths), the
#: longest early-probe backoff in ms, costly (1: the cut's 429 paused the fleet for whole
#: seconds, not for a refill interval; an older member sends none: 0).
#: A 429 taught a process a rate. With no fleet rate it becomes the fleet's. A bound
#: (a fact about the upstream) lower than the rate now is the rate and its plateau at
#: once. A cut lower than the rate now is taken at most once per ``spacing`` (the 429s of
#: one overshoot cut once, not once per process): the rate rises back to ``plateau`` of
#: the rate it cut, or to the plateau it had for the first cut at or under it (``k``); a
#: cut ``RATE_AGAIN_MS`` or more after the last one while the rate still rises back from it
#: is a new overshoot: no plateau above the cut, the second in a row at most
#: ``RATE_AGAIN_CUT`` of the rate now, and each a miss of the early probe (``q``, ``x``).
#: Both that rule and the hold (``h``) follow costly cuts only: a 429 with a refill interval
#: paused the fleet for milliseconds, so probing past the limit costs little there.
#: While an early probe runs, its first 429 (a cut, or a bound under the probe's rate) ends it:
#: the rate and plateau are the reported one (0.75 of what was sent), between the probe's
#: level (a cut; a bound may go lower) and its rate now; a ceiling under ``EARLY_SAME`` of
#: the level met the same limit, and each such miss in a row makes the next early probe wait
#: ``EARLY_BACKOFF`` times longer after the cut (1, 4, 16 s ...), at most ARGV[9] ms (60 s
#: when not given).
#: Returns {now, rate in mHz}.
RATE = (
    NOW
    + _RATE
    + f"""
local EARLY_SAME, EARLY_BACKOFF = {EARLY_SAME}, {EARLY_BACKOFF}
local RATE_AGAIN_MS, RATE_AGAIN_CUT = {RATE_AGAIN_MS}, {RATE_AGAIN_CUT}
"""
    + """
foreign(KEYS[4])
local reported = tonumber(ARGV[2]) / 1000
local costly = tonumber(ARGV[10] or '0') == 1
local h = costly and '1' or '0'
local current = rate_now()
local cut_at = tonumber(redis.call('HGET', KEYS[4], 'cut') or '0')
local bound = tonumber(ARGV[6]) == 1
local base = probe_base()
-- One more early probe that met the same limit: the misses in a row, and the server ms
-- before which the next one does not start.
local function missed()
  local q = math.min(tonumber(redis.call('HGET', KEYS[4], 'q') or '0') + 1, 8)
  return q, now + math.floor(math.min(EARLY_PROBE_MS * EARLY_BACKOFF ^ q,
                                      tonumber(ARGV[9] or '60000')))
end
if base > 0 and (not bound or reported < current) then
  local r = math.min(reported, current)
  if not bound then r = math.max(r, base) end
  local q, x = 0, now + EARLY_PROBE_MS
  if r < EARLY_SAME * base then q, x = missed() end
  redis.call('HSET', KEYS[4], 'r', tostring(r), 'w', tostring(r), 'at', now, 'cut', now,
             'k', '0', 'e', 0, 'q', q, 'x', x, 'h', h)
  reported = r
elseif current <= 0 or (bound and reported < current) then
  redis.call('HSET', KEYS[4], 'r', tostring(reported), 'w', tostring(reported), 'at', now)
  if current <= 0 then redis.call('HSET', KEYS[4], 'cut', now, 'h', h) else
    redis.call('HSET', KEYS[4], 'h', '0') end
elseif not bound and reported < current and now - cut_at >= tonumber(ARGV[5]) then
  -- Probing above the plateau, the 429 found the ceiling: the new plateau is under it.
  -- At or under it, a 429 is the host's jitter (a stall bunched sends past the bucket) or
  -- a lower limit: the first keeps the plateau (the cut is a dip), the next lowers it.
  -- A new overshoot while the rate still rises back from the last cut or bound: that
  -- plateau did not fit, and the rate stays at the cut (no rise to a level known too high).
  local w = tonumber(redis.call('HGET', KEYS[4], 'w') or tostring(current))
  local k = redis.call('HGET', KEYS[4], 'k')
  local at = tonumber(redis.call('HGET', KEYS[4], 'at') or '0')
  local plateau, keep = current * tonumber(ARGV[8]) / 1000, '0'
  if costly and now - cut_at >= RATE_AGAIN_MS and now - at < tonumber(ARGV[7]) then
    -- (``k`` = '2': the last cut was one of these too: the next goes deeper)
    if k == '2' then reported = math.min(reported, current * RATE_AGAIN_CUT) end
    plateau, keep = reported, '2'
    -- An early probe's ceiling that did not fit met the same limit: its backoff grows.
    local q, x = missed()
    redis.call('HSET', KEYS[4], 'q', q, 'x', x)
  elseif current <= w and k ~= '1' then
    plateau, keep = w, '1'
  end
  redis.call('HSET', KEYS[4], 'r', tostring(reported), 'w', tostring(math.max(reported, plateau)),
             'at', now, 'cut', now, 'k', keep, 'h', h)
else
  reported = current
end
redis.call('PEXPIRE', KEYS[4], tonumber(ARGV[4]))
return {now, math.floor(reported * 1000)}
"""
)

#: KEYS: b, v, c, r. ARGV: as ``RATE``'s (doubling and rise ms for the rate now; the rest
#: unused). A member's callers are crowded (``FleetCooldown``: they
#: would wait a quarter of their time left for a turn, and it is asked for turns faster than
#: its share): the limit may have lifted. With a fleet rate, no probe running, the last cut
#: ``EARLY_PROBE_MS`` old and its backoff (``x``) past, an early probe starts from the rate
#: now (``e``, ``p``); while one runs, the member joins it. Returns {now, the probe's level
#: in mHz (0: none)}.
EARLY = (
    NOW
    + _RATE
    + """
foreign(KEYS[4])
local current = rate_now()
local base = probe_base()
if base <= 0 and current > 0 then
  local cut_at = tonumber(redis.call('HGET', KEYS[4], 'cut') or '0')
  local x = tonumber(redis.call('HGET', KEYS[4], 'x') or '0')
  if now - cut_at >= EARLY_PROBE_MS and now >= x then
    base = current
    redis.call('HSET', KEYS[4], 'e', now, 'p', tostring(base))
  end
end
return {now, math.floor(base * 1000)}
"""
)

#: KEYS: b, v. ARGV: node, vote ttl ms, recovery ms, quorum.
#: A node whose breaker opened votes; with ``quorum`` live votes the fleet opens.
#: Returns {now, gen, votes, due}.
VOTE = (
    NOW
    + """
foreign(KEYS[1], KEYS[2])
local ttl = tonumber(ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], now + ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
local n = live_votes(ARGV[1])
local gen = tonumber(redis.call('HGET', KEYS[1], 'gen') or '0')
local due = tonumber(redis.call('HGET', KEYS[1], 'due') or '0')
if n >= tonumber(ARGV[4]) then
  due = math.max(due, now + tonumber(ARGV[3]))
  redis.call('HSET', KEYS[1], 'due', due, 'gen', gen)
end
redis.call('PEXPIRE', KEYS[1], ttl + tonumber(ARGV[3]))
return {now, gen, n, due}
"""
)

#: KEYS: b, v, p. ARGV: node, ttl ms, gen the closer saw when it opened.
#: A probe succeeded: the fleet closes (votes and lease dropped, ``gen`` bumped).
#: ``gen`` is at least the server's clock in ms: the hash expires after a close, and a
#: restart or FLUSHALL empties it, yet the next close's ``gen`` is still higher than
#: any a member saw before (a counter would start again at 1, and members that saw 1
#: would not adopt the close).
#: Returns {now, gen}.
CLOSE = (
    NOW
    + """
redis.call('DEL', KEYS[2], KEYS[3])
local gen = math.max(tonumber(redis.call('HGET', KEYS[1], 'gen') or '0') + 1, now)
redis.call('HSET', KEYS[1], 'gen', gen, 'due', 0)
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
return {now, gen}
"""
)

#: KEYS: p. ARGV: node, lease ms. One probe lease per recovery interval for the whole
#: fleet: the lease lasts the interval plus the slack in which news of the probe's send
#: (``PROBED``) reaches Redis. A ``p`` with no TTL, or one beyond ``HORIZON_MS``, is no
#: lease seawall gave (it would keep every open breaker from probing for good): taken.
#: Returns {now, granted (0/1), ms left on the lease}.
LEASE = (
    NOW
    + """
foreign(KEYS[1])
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {now, 1, tonumber(ARGV[2])}
end
return {now, 0, redis.call('PTTL', KEYS[1])}
"""
)

#: KEYS: c. ARGV: wait ms. A 429 asked every caller to wait: a later end wins.
#: Returns {now, until}.
COOL = (
    NOW
    + COOL_END.format(c=1)
    + """
local untill = math.max(cool_end(now) or 0, now + tonumber(ARGV[1]))
redis.call('SET', KEYS[1], untill, 'PX', math.max(1, untill - now))
return {now, untill}
"""
)

#: KEYS: p. ARGV: node, recovery ms. A node sent a probe: no other probe for a recovery
#: interval from now (the lease runs from the send, not from a grant its caller used late).
#: Returns {now}.
PROBED = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {now}
"""
