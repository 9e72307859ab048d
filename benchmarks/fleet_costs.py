"""Redis time of the fleet's cost exchange (the ``COSTS`` script), before and after its index.

    python benchmarks/fleet_costs.py [--calls 15] [--sizes 1000,3000] [--old REV] [--quick]

Needs ``redis-server`` (Debian's package; started here on a free 127.0.0.1
port, no persistence) and ``seawall[redis]``. For each size, a cost hash of
that many reports of ~1.6 KB (a day of recycled workers'), then ``--calls``
calls of each case, each call's Redis time read from ``SLOWLOG`` (every call
logged: ``slowlog-log-slower-than 0``), the median printed:

- steady: a member that has read everything, nothing changed since;
- first read: a member's first call (since 0, the names listed), which is sent one slice
  (``COSTS_SLICE`` reports);
- publish: a member whose own report changed, nothing else;
- rebuild (new script only): the index lost (``DEL``), the call that rebuilds it;
- names (new script only): listing the live names alone (ZRANGEBYSCORE), and a
  steady call that lists them (a member does every ``NAMES_EVERY`` s).

The old script is ``COSTS`` as ``git show REV:middleware/fleet/totals.py`` has it
(``--old``, default ``25ad825``, the commit before the index). Bounded: about
``4 * calls`` calls per size and script; a few seconds in all.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from seawall.fleet.totals import COSTS, COSTS_LAPSE, COSTS_SLICE, COSTS_TTL  # noqa: E402
from tests._redis import RedisServer  # noqa: E402

TTL = round(COSTS_TTL * 1000)


def old_script(rev: str) -> str:
    text = subprocess.run(
        ["git", "show", f"{rev}:middleware/fleet/totals.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    found = re.search(r'^COSTS = """\n(.*?)^"""', text, re.S | re.M)
    assert found, "no COSTS script in the old totals.py"
    return found.group(1)


def report(i: int) -> str:
    """One process's report of ~1.6 KB: four keys of one model each."""
    model = {
        "calls": 1000 + i,
        "input_tokens": 123_456,
        "output_tokens": 7_890,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "cost_usd": "1.234567",
        "unpriced_calls": 0,
    }
    keys = {
        f"https://api.provider-{k}.example.com/v1/chat/completions": {
            "models": {f"model-{k}-2026-01-01": model},
            "cost_usd": "1.234567",
            "calls": 1000 + i,
            "failed_attempts": 3,
            "waited_seconds": 1.5,
            "avoided_calls": {"breaker": 0, "cooldown": 2},
        }
        for k in range(4)
    }
    body = {"cost_usd": "3.703701", "calls": 3000, "input_tokens": 1, "output_tokens": 1}
    return json.dumps({**body, "keys": keys})


def timed(client: redis.Redis, call: Any, calls: int) -> float:
    """Median µs of Redis time of ``calls`` calls of ``call()`` (``SLOWLOG``)."""
    client.slowlog_reset()
    for _ in range(calls):
        call()
    logged = client.slowlog_get(calls + 10)
    took = [e["duration"] for e in logged if e["command"].startswith(b"EVALSHA")]
    return statistics.median(took)


def measure(client: redis.Redis, script: str, size: int, calls: int, new: bool) -> dict[str, float]:
    client.flushall()
    run = client.register_script(script)
    keys = ["b:{costs}", "b:{costs}:w"] if new else ["b:{costs}"]
    (s, us) = client.time()
    now = s * 1000 + us // 1000
    text = report(0)
    assert 1500 <= len(text) <= 1800, len(text)
    # Written over the last hour, as a day of recycled workers leaves them.
    client.hset(
        keys[0],
        mapping={
            f"worker-{i:05d}-{'x' * 24}": f"{now - i * 1000 + TTL}|{text}" for i in range(size)
        },
    )
    client.pexpire(keys[0], TTL)
    run(keys=keys, args=["member", "", TTL, 0, COSTS_SLICE, ""])  # (the new one: indexes)

    def call(mine: str = "", since: int = 0, names: str = "0") -> None:
        # (The old script ignores the 7th and 8th: it lists the names every time.)
        run(keys=keys, args=["member", mine, TTL, since, COSTS_SLICE, "", COSTS_LAPSE, names])

    def server_ms() -> int:
        (s, us) = client.time()
        return s * 1000 + us // 1000

    out = {
        "steady": timed(client, lambda: call(since=server_ms() - 1000), calls),
        "first read": timed(client, lambda: call(since=0, names="1"), calls),
        "publish": timed(client, lambda: call(mine=report(1), since=server_ms()), calls),
    }
    if new:

        def rebuild() -> None:
            client.delete(keys[1])
            call(since=server_ms() - 1000)

        out["rebuild"] = timed(client, rebuild, calls)
        names = client.register_script(
            "return #redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf')"
        )
        out["names"] = timed(client, lambda: names(keys=[keys[1]], args=[server_ms() - TTL]), calls)
        out["steady, names listed"] = timed(
            client, lambda: call(since=server_ms() - 1000, names="1"), calls
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=15)
    parser.add_argument("--sizes", default="1000,3000")
    parser.add_argument("--old", default="25ad825")
    parser.add_argument("--quick", action="store_true", help="100 reports, 3 calls: it works")
    opts = parser.parse_args()
    if opts.quick:
        opts.sizes, opts.calls = "100", 3
    server = RedisServer()
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        client.config_set("slowlog-log-slower-than", 0)
        client.config_set("slowlog-max-len", 1000)
        scripts = {"old": old_script(opts.old), "new": COSTS}
        print(f"Redis time per COSTS call, median of {opts.calls} (µs, SLOWLOG)")
        for size in (int(x) for x in opts.sizes.split(",")):
            for name, script in scripts.items():
                got = measure(client, script, size, opts.calls, new=name == "new")
                shown = ", ".join(f"{case} {us:,.0f}" for case, us in got.items())
                print(f"{size:>6,} reports, {name}: {shown}")
        client.close()
    finally:
        server.kill()


if __name__ == "__main__":
    main()
