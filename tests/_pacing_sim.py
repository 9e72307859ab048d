"""A deterministic simulation: callers, a ``Cooldown``, a token-bucket upstream, a virtual clock.

The upstream (rate ``rate``, bucket ``burst``) answers 429 with ``Retry-After``
in whole seconds (rounded up, at least 1) and no rate headers, like the
proxies in front of LLM APIs that issue 16 is about. Each caller makes calls
back to back as ``seawall._path.loop`` does: reserve a turn, sleep, book again
if a 429 moved the shared wait past its turn, send, then report the answer
(``observe``, and ``start`` for a 429) and, after a 429, sleep its
``Retry-After`` before trying again. No wall clock, no randomness: the same
counts every run.
"""

from __future__ import annotations

import heapq
import math
import random

import attrs

from seawall.cooldown import RECHECK, Cooldown

#: Seconds a caller whose request was refused for its deadline takes before the next one.
RETHINK = 0.05


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@attrs.define
class Bucket:
    """The upstream's token bucket."""

    rate: float
    burst: float
    tokens: float = 0.0
    at: float = 0.0

    def take(self, now: float) -> float | None:
        """``None`` when a token was there; else the seconds until one will be."""
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / self.rate


@attrs.define
class Run:
    """What happened: successes, 429s, and when each request reached the upstream."""

    successes: int = 0
    refused: int = 0
    late: int = 0  # requests refused before sending: their turn came past the deadline
    sends: list[float] = attrs.Factory(list)
    pauses: list[tuple[float, float]] = attrs.Factory(list)  # (429 at, pause ends at)
    paces: list[float] = attrs.Factory(list)  # the pace at each send


def simulate(
    callers: int,
    rate: float,
    burst: float,
    seconds: float,
    *,
    latency: float = 0.002,
    whole_seconds: bool = True,
    cooldown: Cooldown | None = None,
    clock: Clock | None = None,
    jitter: float = 0.0,
    seed: int = 0,
    outage: float = 0.0,
    lift: float = math.inf,
    stalls: tuple[float, float] | None = None,
    deadline: float | None = None,
    arrivals: float | None = None,
) -> tuple[Run, list[float], Cooldown]:
    """Run ``callers`` for ``seconds`` virtual seconds; (the run, success times, the cooldown).

    ``outage``: for that many seconds from the start the upstream refuses every request.
    ``jitter``: a busy event loop (see ``woken``); ``seed`` makes it repeat.
    ``lift``: from that many seconds from the start the upstream takes everything.
    ``stalls``: (every, length): a busy host stalls the upstream's process for
    ``length`` seconds every ``every`` seconds; what arrives meanwhile reaches
    its bucket at once when the stall ends.
    ``deadline``: each turn must come within that many seconds of asking, or the
    request is refused (``late``) and the caller starts its next one ``RETHINK``
    seconds later (each booking has the whole deadline: an upper bound).
    ``arrivals``: open loop instead: a new request every ``1 / arrivals`` seconds
    (``callers`` is ignored); each is done at its success or its refusal.
    """
    clock = clock or Clock()
    cd = cooldown or Cooldown(clock, max_wait=60.0)
    t0 = clock.now
    bucket = Bucket(rate, burst, tokens=burst, at=t0)
    run = Run()
    ok_times: list[float] = []
    events: list[tuple[float, int, str, int, float]] = []
    seq = 0
    rng = random.Random(seed)
    sent_at: dict[int, float] = {}  # each caller's request in flight: when it was sent

    def woken(at: float) -> float:
        """When a busy event loop wakes a sleeper due ``at``: on its next tick of ``jitter``
        seconds, sometimes a tick later; so sleepers due close together wake at once."""
        if not jitter:
            return at
        return (math.ceil(at / jitter) + rng.choice((0, 0, 0, 1))) * jitter

    def push(at: float, kind: str, caller: int, extra: float = 0.0) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (at, seq, kind, caller, extra))

    if arrivals is None:
        for caller in range(callers):
            push(t0, "go", caller)
    else:
        for caller in range(math.ceil(seconds * arrivals)):
            push(t0 + caller / arrivals, "go", caller)
    steps = 0
    while events and events[0][0] < t0 + seconds:
        steps += 1
        assert steps < 5_000_000, "the simulation runs away"
        at, _, kind, caller, extra = heapq.heappop(events)
        clock.now = at
        if kind in ("go", "again"):  # again: its turn was voided, it books again
            cuts = cd.cuts
            wait = cd.reserve(deadline, again=kind == "again")
            if deadline is not None and wait >= deadline:
                run.late += 1
                if arrivals is None:
                    push(at + RETHINK, "go", caller)
                continue
            extra = at + wait + 1e6 * cuts  # the turn, and the cuts it was booked after
            if wait > 0:
                push(woken(at + min(wait, RECHECK)), "turn", caller, extra)
                continue
            kind = "spaced"
        if kind == "turn":
            booked_cuts, slot = divmod(extra, 1e6)
            if cd.cuts != booked_cuts:  # a cut voided the turn: book again
                push(at, "again", caller)
                continue
            if at < slot - 1e-9:  # a long wait, looked at again: sleep on
                push(woken(min(slot, at + RECHECK)), "turn", caller, extra)
                continue
            if cd.until > at:  # a 429 moved the pause past this turn
                push(at, "again", caller)
                continue
            kind = "spaced"
        if kind == "spaced":
            gap = cd.spaced()
            if gap > 0:
                push(woken(at + gap), "gapped", caller, extra)
                continue
            kind = "send"
        if kind == "gapped":
            booked_cuts, slot = divmod(extra, 1e6)
            if cd.cuts != booked_cuts or cd.until > slot:  # as the loop: look again
                push(at, "again", caller)
                continue
            kind = "send"
        if kind == "send":
            cd.sent()
            sent_at[caller] = at
            run.sends.append(at)
            run.paces.append(cd.rate or 0.0)
            seen = at  # when the upstream takes it
            if stalls is not None:
                into = (at - t0) % stalls[0]
                if into < stalls[1]:
                    seen = at + stalls[1] - into
            if at < t0 + outage:
                refill: float | None = 1.0
            else:
                refill = None if at >= t0 + lift else bucket.take(seen)
            push(seen + latency, "answer", caller, -1.0 if refill is None else refill)
        elif kind == "answer":
            if extra < 0:
                cd.observe(None, success=True, sent_at=sent_at.pop(caller, None))
                run.successes += 1
                ok_times.append(at)
                if arrivals is None:
                    push(at, "go", caller)
            else:
                cd.observe(None, success=False)
                wait = float(max(1, math.ceil(extra))) if whole_seconds else extra
                before = cd.until
                cd.start(wait, sent_at.pop(caller, None))  # as the engine: when it was sent
                if cd.until > before:
                    run.pauses.append((at, cd.until))
                run.refused += 1
                push(at + wait, "go", caller)
    return run, ok_times, cd


def peak_per_bin(times: list[float], start: float, end: float, width: float = 0.1) -> int:
    """The most sends in one ``width``-second bin of [start, end)."""
    counts: dict[int, int] = {}
    for t in times:
        if start <= t < end:
            key = math.floor((t - start) / width)
            counts[key] = counts.get(key, 0) + 1
    return max(counts.values(), default=0)
