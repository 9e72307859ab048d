"""Values in Redis that seawall did not write: read per key, repaired, logged sparingly.

A script that meets such a value under one key (text where a number belongs,
a string where a hash belongs) fails for that key alone: its reply is a
``BadReply`` in the round's replies, the others are read as usual. That is a
data error, not Redis out of reach: the store does not fall back. The key's
parts are checked by the ``REPAIR`` script at the next round (values that are
not what seawall writes are deleted; the fleet's good entries under the same
key stay), and the event is logged at most once a minute per kind
(``LogLimit``), with a count of the ones not logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from seawall.fleet.outbox import Call
from seawall.redact import redact_key, redact_text

__all__ = ["REPAIR", "BadReply", "LogLimit", "Repairs"]

#: The parts of one key and what each holds (``REPAIR``'s kinds, below).
PARTS = {"b": "h", "v": "h", "c": "n", "r": "h", "m": "h", "u": "u", "p": "s"}


class BadReply:
    """One script's reply in a round was an error about the data it met (a value seawall
    did not write), not about reaching Redis: the other replies of the round stand."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


#: The script that repairs (``seawall.fleet.link`` registers it beside ``seawall.fleet.scripts``').
#: KEYS: any of a key's parts, or the costs hash. ARGV: what each holds: 'h' a hash of
#: numbers, 'n' a number, 'u' a hash of 'expiry:requests:retries', 's' a string, 'k' the
#: costs hash ('expiry|report'). A part of another type is deleted; in a hash, the fields
#: whose values are not what seawall writes are (the fleet's good entries stay); a number
#: must be finite. Returns the number of values deleted.
REPAIR = """
local function finite(v)
  local x = tonumber(v)
  return x ~= nil and x == x and x ~= math.huge and x ~= -math.huge
end
local function good(kind, v)
  if kind == 'h' or kind == 'n' then return finite(v) end
  if kind == 'u' then return string.match(v, '^%d+:%d+:%d+$') ~= nil end
  local bar = string.find(v, '|', 1, true)
  return bar ~= nil and finite(string.sub(v, 1, bar - 1))
end
local gone = 0
for i, key in ipairs(KEYS) do
  local kind = ARGV[i]
  local t = redis.call('TYPE', key)['ok']
  local want = (kind == 'n' or kind == 's') and 'string' or 'hash'
  if t ~= 'none' then
    if t ~= want then
      redis.call('DEL', key)
      gone = gone + 1
    elseif kind == 'n' then
      if not finite(redis.call('GET', key)) then
        redis.call('DEL', key)
        gone = gone + 1
      end
    elseif want == 'hash' then
      local all = redis.call('HGETALL', key)
      for j = 1, #all, 2 do
        if not good(kind, all[j + 1]) then
          redis.call('HDEL', key, all[j])
          gone = gone + 1
        end
      end
    end
  end
end
return gone
"""


class LogLimit:
    """At most one log line per kind every ``every`` seconds (real time); the rest counted."""

    def __init__(self, logger: logging.Logger, every: float = 60.0) -> None:
        self.logger = logger
        self.every = every
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def log(self, kind: str, level: int, msg: str, *args: object) -> bool:
        """Log ``msg % args`` (redacted) unless ``kind`` was logged lately; ``True`` if logged."""
        now = time.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self.every:
            self._held[kind] = self._held.get(kind, 0) + 1
            return False
        self._last[kind] = now
        held = self._held.pop(kind, 0)
        text = redact_text(msg % args if args else msg)
        if held:
            text += f" ({held} more like it in the last {self.every:.0f} s not logged)"
        self.logger.log(level, "%s", text)
        return True


class Repairs:
    """The keys whose values in Redis must be repaired, and the calls that repair them."""

    def __init__(
        self, prefix: str, keys: Callable[..., list[str]], limit: LogLimit, costs_key: str
    ) -> None:
        self.prefix = prefix
        self._keys = keys
        self.limit = limit
        self.costs_key = costs_key
        self.pending: set[str] = set()
        self.costs = False

    def key_of(self, redis_key: str) -> str | None:
        """The seawall key of ``<prefix>:{<key>}:<part>`` (``None``: the costs hash)."""
        if redis_key == self.costs_key:
            return None
        return redis_key[len(self.prefix) + 2 : -3]

    def bad(self, key: str | None, reply: object) -> None:
        """``key``'s reply was an error (or not numbers): repair it, say so (rate-limited)."""
        if key is None:
            self.costs = True
        else:
            self.pending.add(key)
        text = reply.text if isinstance(reply, BadReply) else type(reply).__name__
        shown = "the fleet's cost reports" if key is None else repr(redact_key(key))
        self.limit.log(
            "bad-value",
            logging.WARNING,
            "seawall: a value in Redis under %s is not one seawall wrote (%s); it is ignored "
            "and repaired, and the other keys stay shared",
            shown,
            text[:200],
        )

    def numbers(self, key: str, reply: Any) -> list[int] | None:
        """A script's reply as integers, or ``None`` (and a repair) when it is not that."""
        if not isinstance(reply, BadReply) and isinstance(reply, list):
            try:
                return [int(x) for x in reply]
            except (TypeError, ValueError, OverflowError):
                pass
        self.bad(key, reply)
        return None

    def calls(self) -> list[Call]:
        """This round's ``REPAIR`` calls (once each)."""
        out: list[Call] = []
        for key in sorted(self.pending)[:64]:
            self.pending.discard(key)
            out.append(("REPAIR", self._keys(key, *PARTS), list(PARTS.values())))
        if self.costs:
            self.costs = False
            out.append(("REPAIR", [self.costs_key], ["k"]))
        return out
