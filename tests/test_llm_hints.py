"""Rate-limit headers that successes prove wrong are not believed (audit: a 200 saying
"0 of 1 left, reset in 10^6 s" on every answer made seawall refuse 19 calls of 20 for ever).

The proof (``seawall.llm.hints``) on its own, then the cooldown on a virtual clock
(sequential callers with a 2 s deadline against an upstream that serves everything),
a property over header values, and the engine against a real upstream on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import heapq
import logging
import math
import random
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import seawall
from seawall.cooldown import HINT_TTL, Cooldown
from seawall.llm import RateInfo, rate_info, reset_wait
from seawall.llm.hints import RateHints

from ._helpers import Clock
from .conftest import Upstream, status

T0 = 1000.0  # the virtual clock at the first call
LATENCY = 0.01  # seconds from sending to the answer
WALL = 1_700_000_000.0  # a fixed "now" for Anthropic's dates

# Every answer a 200 with these (the audit's upstream, and kin).
LIES = {
    "openai-1-of-1": {
        "x-ratelimit-limit-requests": "1",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1000000s",
    },
    "anthropic-2999": {
        "anthropic-ratelimit-requests-limit": "5",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2999-01-01T00:00:00Z",
    },
    "openai-1-left-of-10": {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "1",
        "x-ratelimit-reset-requests": "99999999h",
    },
}


def _info(headers: dict[str, str]) -> RateInfo:
    info = rate_info(headers, now=WALL)
    assert info is not None
    return info


# --- the proof --------------------------------------------------------------------


def test_one_success_proves_a_bucket_of_one_wrong() -> None:
    """'0 of 1 left, full in 10^6 s': one request sent after that answer cannot succeed."""
    hints = RateHints()
    empty = _info(LIES["openai-1-of-1"])
    assert not hints.refutes(empty, now=T0, sent_at=T0 - 0.2)  # on test from now on
    assert not hints.refutes(None, now=T0 + 0.1, sent_at=T0 - 0.1)  # in flight before it
    assert hints.refutes(None, now=T0 + 60.0, sent_at=T0 + 59.9)


def test_a_bucket_of_more_takes_two_successes_before_its_bound() -> None:
    """'0 of 5 left, full in 100 s' may hold 0.99: two successes within 100/4 s prove it
    wrong, two that come later do not (a true bucket refilled that much by then)."""
    empty = RateInfo(limit=5, remaining=0, reset=100.0)
    early, late = RateHints(), RateHints()
    for hints in (early, late):
        assert not hints.refutes(empty, now=T0, sent_at=T0)
        assert not hints.refutes(None, now=T0 + 1.0, sent_at=T0 + 0.5)
    assert early.refutes(None, now=T0 + 24.0, sent_at=T0 + 23.0)
    assert not late.refutes(None, now=T0 + 26.0, sent_at=T0 + 25.5)


def test_what_was_left_raises_the_proof() -> None:
    """'1 of 10 left, full in 90 s': three successes within 90/8 s, not two."""
    hints = RateHints()
    assert not hints.refutes(RateInfo(limit=10, remaining=1, reset=90.0), now=T0, sent_at=T0)
    assert not hints.refutes(None, now=T0 + 1.0, sent_at=T0 + 0.5)
    assert not hints.refutes(None, now=T0 + 2.0, sent_at=T0 + 1.5)
    assert hints.refutes(None, now=T0 + 11.0, sent_at=T0 + 10.0)


# --- the cooldown, on a virtual clock ----------------------------------------------


def _callers(
    cooldown: Cooldown,
    clock: Clock,
    answer: Callable[[int], dict[str, str]],
    calls: int,
    *,
    deadline: float = 2.0,
) -> tuple[list[float], int]:
    """One caller a second, each with ``deadline``, against an upstream that serves every
    request with ``answer(number)``'s headers: when calls were refused, and warnings."""
    refused: list[float] = []
    warned = 0
    for number in range(calls):  # bounded: one call each
        clock.now = max(clock.now, T0 + number)
        wait = cooldown.reserve(deadline)
        if wait >= deadline:
            refused.append(clock.now - T0)
            continue
        clock.now += wait
        sent_at = clock.now
        cooldown.sent()
        clock.now += LATENCY
        info = rate_info(answer(number), now=WALL)
        warned += cooldown.observe(info, success=True, sent_at=sent_at)
    return refused, warned


@pytest.mark.parametrize("lie", LIES.values(), ids=LIES.keys())
def test_a_key_whose_headers_lie_serves_again(lie: dict[str, str]) -> None:
    """Headers that every 200 proves wrong cost at most two turns at the floor (a minute
    each), then no call is refused while they go on; headers that stop lying are
    believed again HINT_TTL after the last proof."""
    clock = Clock()
    cooldown = Cooldown(clock, max_wait=60.0)
    sane = {
        "x-ratelimit-limit-requests": "100",
        "x-ratelimit-remaining-requests": "50",
        "x-ratelimit-reset-requests": "10s",
    }
    refused, warned = _callers(
        cooldown, clock, lambda number: lie if number < 600 else sane, calls=700
    )
    assert len(refused) <= 2 * HINT_TTL, refused
    assert all(at < 2 * HINT_TTL + 5 for at in refused), refused  # none after the proof
    assert warned == 1  # said once, not at every answer that proves it again
    assert cooldown.rate == pytest.approx(5.0)  # 50 used in 10 s: believed again


def test_true_headers_are_never_proved_wrong() -> None:
    """Eight callers without deadlines against a true token bucket whose every answer
    states it exactly (429s included): its headers pace the key throughout."""
    limit, refill = 10, 4.0  # a bucket of 10, 4 requests a second
    clock = Clock()
    cooldown = Cooldown(clock, max_wait=60.0)
    luck = random.Random(7)
    tokens, filled_at = float(limit), clock.now
    sends = refusals = warned = 0
    due = [(clock.now + caller * 0.01, caller, "book", 0.0) for caller in range(8)]
    for _ in range(8000):  # bounded: events, not time
        clock.now, caller, what, sent_at = heapq.heappop(due)
        if what == "book":
            wait = cooldown.reserve()
            heapq.heappush(due, (clock.now + wait, caller, "send", 0.0))
        elif what == "send":
            cooldown.sent()
            sends += 1
            heapq.heappush(due, (clock.now + luck.uniform(0.001, 0.3), caller, "answer", clock.now))
        else:  # the upstream decides halfway, and says so in the answer
            at = (sent_at + clock.now) / 2
            tokens, filled_at = min(limit, tokens + (at - filled_at) * refill), at
            ok = tokens >= 1.0
            tokens -= ok
            info = RateInfo(limit, math.floor(tokens), (limit - tokens) / refill)
            warned += cooldown.observe(info, success=ok, sent_at=sent_at)
            if not ok:
                refusals += 1
                cooldown.start((1.0 - tokens) / refill, sent_at)
            heapq.heappush(due, (clock.now, caller, "book", 0.0))
    assert warned == 0
    assert cooldown.burst == limit  # its headers pace it (a learnt pace has no burst)
    assert sends > 1000
    assert refusals < 0.05 * sends


def test_an_exhausted_daily_limit_is_not_hammered() -> None:
    """A daily limit counted down to 0, then answering 429s saying so for an hour: one
    request per retry_after_max reaches it, as before."""
    clock = Clock()
    cooldown = Cooldown(clock, max_wait=60.0)
    sends = 0
    for number in range(3600):  # a caller a second, 10 s deadlines
        clock.now = max(clock.now, T0 + number)
        wait = cooldown.reserve(10.0)
        if wait >= 10.0:
            continue
        clock.now += wait
        sent_at = clock.now
        cooldown.sent()
        sends += 1
        clock.now += LATENCY
        left = max(0, 5 - sends)
        headers = {
            "x-ratelimit-limit-requests": "10000",
            "x-ratelimit-remaining-requests": str(left),
            "x-ratelimit-reset-requests": "10h",
        }
        ok = sends <= 5
        cooldown.observe(rate_info(headers), success=ok, sent_at=sent_at)
        if not ok:
            wait_for = reset_wait(headers)
            assert wait_for is not None
            cooldown.start(min(wait_for, cooldown.max_wait), sent_at)
    assert sends <= 5 + 3600 / 60 + 1


# --- any header values --------------------------------------------------------------

_DAY = 86400.0


def _reset_text(seconds: float, form: str) -> str:
    if form == "seconds":
        return f"{seconds:.3f}"
    if form == "hms":
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60)}m{seconds % 60:.3f}s"
    moment = dt.datetime.fromtimestamp(WALL + seconds, dt.UTC)  # anthropic
    return moment.isoformat().replace("+00:00", "Z")


@st.composite
def _unhonourable(draw: st.DrawFn) -> dict[str, str]:
    """Headers stating a bucket that refills at a third of the floor or slower (one per
    3 * 54 s): a rate seawall never honours, however absurd."""
    limit = draw(st.integers(1, 10**6))
    left = draw(st.integers(0, min(limit - 1, 100)))
    per_request = draw(st.floats(3 * 54.0, 1e4))  # seconds per request refilled
    reset = min(per_request * (limit - left), 2.0e11)
    form = draw(st.sampled_from(["seconds", "hms", "anthropic"]))
    text = _reset_text(reset, form)
    if form == "anthropic":
        return {
            "anthropic-ratelimit-requests-limit": str(limit),
            "anthropic-ratelimit-requests-remaining": str(left),
            "anthropic-ratelimit-requests-reset": text,
        }
    return {
        "x-ratelimit-limit-requests": str(limit),
        "x-ratelimit-remaining-requests": str(left),
        "x-ratelimit-reset-requests": text,
    }


_NAMES = [
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
]
_ANY = st.dictionaries(
    st.sampled_from(_NAMES),
    st.one_of(
        st.text(max_size=20),
        st.from_regex(r"\A[0-9]{1,12}(\.[0-9]{1,3})?(ms|s|m|h)?\Z"),
        st.sampled_from(["0", "1", "1e12", "99999999h", "9999-12-31T23:59:59Z"]),
    ),
    max_size=6,
)


@settings(max_examples=60, deadline=None, database=None)
@given(st.one_of(_unhonourable(), _ANY))
@example(LIES["openai-1-of-1"])
@example(LIES["anthropic-2999"])
@example(LIES["openai-1-left-of-10"])
def test_no_header_values_on_successes_refuse_a_key_for_long(headers: dict[str, str]) -> None:
    """Any header values on every 200, except a rate the key is paced at by design (a
    third of the floor or more): over 10 virtual minutes of a call a second with 2 s
    deadlines, at most two minutes of calls are refused locally, none after them."""
    info = rate_info(headers, now=WALL)
    clock = Clock()
    cooldown = Cooldown(clock, max_wait=60.0)
    assume(info is None or info.rate is None or info.rate * 3 <= cooldown.floor)
    refused, _ = _callers(cooldown, clock, lambda _number: headers, 600)
    assert len(refused) <= 2 * HINT_TTL, refused
    assert all(at < 2 * HINT_TTL + 5 for at in refused), refused


# --- the engine, against a real upstream ----------------------------------------------


@pytest.mark.parametrize("lie", LIES.values(), ids=LIES.keys())
async def test_an_upstream_that_lies_in_its_headers_keeps_serving(
    upstream: tuple[Upstream, Any],
    make_session: Callable[..., aiohttp.ClientSession],
    caplog: pytest.LogCaptureFixture,
    lie: dict[str, str],
) -> None:
    """Through the aiohttp middleware, 100 calls a virtual second apart with a 2 s
    deadline to an upstream that serves all with lying headers: 90 % or more succeed,
    and seawall warns once that the key's headers are not believed."""
    up, server = upstream
    up.default = status(200, "{}", **lie)
    clock = Clock()
    policy = seawall.Policy(
        llm=True,
        retry=seawall.RetryPolicy(retry_after_max=5.0),
        timeout=seawall.TimeoutPolicy(deadline=2.0),
    )
    sw = seawall.Seawall(routes={"127.0.0.1": policy}, entrypoints=False, clock=clock)
    session = make_session(sw)
    caplog.set_level(logging.WARNING, logger="seawall.cooldown")
    served = 0
    for _ in range(100):
        clock.advance(1.0)
        try:
            async with session.post(server.make_url("/v1/chat/completions"), json={}) as resp:
                served += resp.status == 200
        except seawall.DeadlineExceededError:
            pass  # refused locally: the hint's turn is past the deadline
    assert served >= 90, served
    assert up.hits == served
    warnings = [r for r in caplog.records if r.name == "seawall.cooldown"]
    assert len(warnings) == 1
    assert "than its rate-limit headers allowed" in warnings[0].getMessage()
