"""A 429 answered together with the answer before it is a host's stall, not a lower limit.

A busy host (the upstream's, behind a whole-seconds token bucket) holds the
requests that reach it during a stall and takes them at once when it ends:
requests we sent a turn apart are answered together, and the bucket refuses
all but the first, whatever our pace. The cooldown honours the 429's pause
(every caller waits it), but such a 429 says nothing about the limit: the
learnt level and its clock are kept, so a stall every few seconds neither
ratchets the level down nor stops the probe that would find the real limit.
A 429 answered a turn after the answer before it, one whose request we
sent together with that answer's (our own event loop's tick), or one in a
bunch less than ``CALM`` seconds after the last (an upstream that answers
in batches) is read as before: kept once at the level, cut the next time.

On the test clock (at 1000 s; binary fractions where "exactly" matters).
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import seawall
import seawall.testing
from seawall.cooldown import HOLD, LEVEL, Cooldown
from seawall.learnt_pace import BUNCH
from seawall.pace_samples import CALM

from . import _virtual_time as virtual_time
from ._helpers import Clock
from ._pacing_sim import simulate

#: The ceiling the first 429 states (a refill interval of 1/128 s), and the level under it.
CEILING = 128.0
BASE = LEVEL * CEILING
LATENCY = 1 / 32  # each answer comes this long after its request
STALL = 0.078125  # a host's stall holds requests this long (5/64 s)


def _levelled() -> tuple[Clock, Cooldown]:
    """A key paced at a measured level, its pause over."""
    clock = Clock()
    cooldown = Cooldown(clock)
    cooldown.start(1 / CEILING)
    assert cooldown.level == pytest.approx(BASE)
    clock.now = 1000.0 + 1 / CEILING
    return clock, cooldown


def _answered(clock: Clock, cooldown: Cooldown, seconds: float) -> None:
    """Requests go at 15/16 of the level for ``seconds``; each answered after ``LATENCY``."""
    per_s = BASE * 15 / 16
    for _ in range(round(per_s * seconds)):
        clock.now += 1 / per_s
        cooldown.reserve()
        cooldown.sent()
        cooldown.observe(None, success=True, sent_at=clock.now - LATENCY)


def _refused(clock: Clock, cooldown: Cooldown, how: str) -> None:
    """A success, then a 429 (``Retry-After: 1``) for a request sent a turn after it:

    - ``together``: both were held by a stall and answered at once;
    - ``apart``: answered a turn apart, as they were sent (the pace met the limit);
    - ``sent together``: sent at once (our event loop woke both late) and answered so.
    """
    step = 1 / BASE
    first = clock.now - LATENCY - (STALL if how == "together" else 0.0)
    second = first if how == "sent together" else first + step
    cooldown.sent()
    cooldown.sent()
    cooldown.observe(None, success=True, sent_at=first)
    if how == "apart":
        clock.now += step
    cooldown.start(1.0, sent_at=second)


def test_a_429_answered_with_the_answer_before_it_keeps_the_level_and_its_clock() -> None:
    clock, cooldown = _levelled()
    _answered(clock, cooldown, 4.0)  # past the rise back from the cut: at the level
    assert cooldown.rate == pytest.approx(BASE)
    cuts = cooldown.cuts
    for _ in range(5):  # a stall every 3 s (before: every other one cut the level by 3 %+)
        _refused(clock, cooldown, "together")
        assert cooldown.remaining() == pytest.approx(1.0)  # the pause is honoured in full
        assert cooldown.level == pytest.approx(BASE)
        assert cooldown.cuts == cuts  # booked turns stand: no new schedule, no dip
        clock.now += 1.0
        assert cooldown.reserve() == pytest.approx(0.0, abs=2 / BASE)
        assert cooldown.rate == pytest.approx(BASE)  # at the level, not CRUISE of it
        _answered(clock, cooldown, 2.0)


def test_stalls_do_not_stop_the_probe_past_the_level() -> None:
    """The hold's clock runs on through stalls (not through their pauses): ``HOLD`` seconds
    of pacing after the cut the pace probes past the level (CUBIC), stalls or not."""
    clock, cooldown = _levelled()
    cut = clock.now
    while clock.now < cut + 1.5 * (HOLD + 10.0):  # a third of the time paused
        _answered(clock, cooldown, 2.0)
        _refused(clock, cooldown, "together")
        clock.now += 1.0
    cooldown.reserve()
    assert cooldown.level == pytest.approx(BASE)
    assert cooldown.rate is not None
    assert cooldown.rate > 1.05 * BASE  # +3 % 8 s past the hold, faster after


@pytest.mark.parametrize("how", ["apart", "sent together"])
def test_a_429_not_bunched_by_a_stall_cuts_the_level_the_second_time(how: str) -> None:
    clock, cooldown = _levelled()
    _answered(clock, cooldown, 4.0)
    _refused(clock, cooldown, how)
    assert cooldown.level == pytest.approx(BASE)  # once: it may still be a stall of ours
    clock.now += 1.0
    _answered(clock, cooldown, 2.0)
    _refused(clock, cooldown, how)
    level = cooldown.level
    assert level is not None
    assert level < 0.99 * BASE  # cut to what was admitted


def test_bunched_means_within_a_share_of_a_turn() -> None:
    """Answered later than ``BUNCH`` of a turn after the answer before it: not a bunch."""
    clock, cooldown = _levelled()
    _answered(clock, cooldown, 4.0)
    _refused(clock, cooldown, "apart")  # kept once
    clock.now += 1.0
    _answered(clock, cooldown, 2.0)
    sent = clock.now - LATENCY
    cooldown.sent()
    cooldown.sent()
    cooldown.observe(None, success=True, sent_at=sent)
    clock.now += 1.25 * BUNCH / BASE
    cooldown.start(1.0, sent_at=sent + 1 / BASE)
    level = cooldown.level
    assert level is not None
    assert level < 0.99 * BASE


def test_bunches_closer_than_calm_are_read_as_before() -> None:
    clock, cooldown = _levelled()
    _answered(clock, cooldown, 4.0)
    cuts = cooldown.cuts
    _refused(clock, cooldown, "together")  # a stall: kept, no new schedule
    assert cooldown.cuts == cuts
    clock.now += 1.0
    _answered(clock, cooldown, CALM - 1.0 - 0.25)  # the next bunch within CALM of it
    _refused(clock, cooldown, "together")
    assert cooldown.cuts == cuts + 1  # the old rule: kept once, with a new schedule
    assert cooldown.level == pytest.approx(BASE)


@pytest.mark.parametrize(("rate", "burst", "tick"), [(100.0, 10.0, 0.05), (200.0, 40.0, 0.02)])
def test_an_upstream_that_answers_in_batches_is_paced_as_before(
    rate: float, burst: float, tick: float
) -> None:
    """Every answer comes on the upstream's tick: every 429 is bunched with the answers
    before it. Read as stalls, they would each be forgiven and the pace would stay over the
    limit (measured: 10 % and 20 % of the rate, 2.2 and 0.2 429s per success); bunches a
    tick apart are no stall, and the pace is learnt as without them (93 % and 85 %)."""
    run, ok, _ = simulate(48, rate, burst, 60.0, stalls=(tick, 0.999 * tick))
    assert run.refused / run.successes < 0.05
    assert sum(t >= 1010.0 for t in ok) / 50.0 >= 0.8 * rate


class _StallingBucket:
    """A real aiohttp upstream: a token bucket of ``rate``/s (burst 1) that answers 429 with
    ``Retry-After: 1``, on a host that stalls ``STALL`` s every 3 s (what arrives meanwhile
    is taken at once when the stall ends); on the loop's (virtual) clock."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = 1.0
        self.at: float | None = None
        self.t0: float | None = None
        self.ok = 0
        self.refused = 0

    async def handler(self, request: web.Request) -> web.Response:
        now = asyncio.get_running_loop().time()
        if self.t0 is None:
            self.t0 = now
        into = (now - self.t0) % 3.0
        if into < STALL:
            await asyncio.sleep(STALL - into)  # the host is stalled: the request waits
            now = asyncio.get_running_loop().time()
        if self.at is not None:
            self.tokens = min(1.0, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            self.ok += 1
            return web.Response(text="ok")
        self.refused += 1
        return web.Response(status=429, headers={"Retry-After": "1"})


def test_through_the_engine_a_stalling_host_does_not_ratchet_the_level_down(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """48 callers through ``sw.session()`` against a real upstream whose host stalls every
    3 s (a burst-1 bucket of 50/s, whole-seconds ``Retry-After``), on virtual time: the
    engine hands each answer's send time to the cooldown, and the stalls' 429s do not cut
    the learnt level (measured: 29/s after 40 s; before, 20/s: every other stall a cut)."""
    seawall.testing.set_testing(False)  # real (virtual-time) waits: this test measures pacing
    rate = 50.0

    async def scenario() -> tuple[float | None, _StallingBucket]:
        loop = asyncio.get_running_loop()
        bucket = _StallingBucket(rate)
        app = web.Application()
        app.router.add_get("/", bucket.handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        policy = seawall.Policy(retry=seawall.RetryPolicy(max_attempts=10, retry_after_max=5))
        sw = seawall.Seawall(routes={"127.0.0.1": policy}, entrypoints=False, clock=loop.time)
        url = str(server.make_url("/"))
        until = loop.time() + 40.0
        try:
            async with sw.session() as session:

                async def caller() -> None:
                    while loop.time() < until:
                        async with session.get(url) as resp:
                            await resp.read()

                async with asyncio.timeout(120):  # virtual seconds: a hang guard
                    await asyncio.gather(*(caller() for _ in range(48)))
            (state,) = sw._states.values()
            return state.cooldown.level, bucket
        finally:
            await server.close()

    level, bucket = virtual_time.run(scenario())
    assert bucket.refused / bucket.ok < 0.1
    assert level is not None
    assert level >= 0.5 * rate
