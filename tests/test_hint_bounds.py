"""No server hint can take a key down: learnt rates and waits are bounded and expire."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

import seawall
from seawall.cooldown import HINT_TTL, SAFETY, Cooldown
from seawall.llm import RateInfo, parse_duration, rate_info

from ._helpers import Clock, Recorder
from .conftest import Upstream, status

# --- the cooldown, on an injected clock ------------------------------------------


def test_a_hint_of_an_endless_reset_is_floored() -> None:
    """'0 left, reset in 10^12 s' paces at one request per max_wait, not one per 10^12 s."""
    clock = Clock()
    cooldown = Cooldown(clock, max_wait=5.0)
    cooldown.observe(RateInfo(limit=10, remaining=0, reset=1e12), success=True)
    assert cooldown.rate == pytest.approx(cooldown.floor)
    assert cooldown.floor == pytest.approx(1 / (5.0 * SAFETY))
    assert cooldown.reserve() == pytest.approx(5.0)


def test_no_wait_is_above_max_wait() -> None:
    """However far behind the pace and however long the 429's wait: at most max_wait."""
    clock = Clock()
    cooldown = Cooldown(clock, max_wait=2.0)
    for _ in range(20):
        cooldown.sent()  # requests in flight the upstream has not counted yet
    cooldown.observe(RateInfo(limit=100, remaining=0, reset=3.6e11), success=True)
    waits = [cooldown.reserve() for _ in range(50)]
    assert max(waits) == pytest.approx(2.0)
    cooldown.start(1e12)
    assert cooldown.remaining() == pytest.approx(2.0)
    assert cooldown.reserve() <= 2.0


def test_a_guessed_rate_has_the_same_floor() -> None:
    """Runs of short 429s cut a guessed rate, never below one request per max_wait."""
    clock = Clock()
    cooldown = Cooldown(clock, max_wait=3.0)
    for _ in range(500):  # each cut 0.9x: 0.9**500 of the first guess without the floor
        cooldown.start(0.5)  # a 429 asking for half a second
        clock.now += 0.2
    assert cooldown.rate == pytest.approx(cooldown.floor)
    assert all(cooldown.reserve() <= 3.0 for _ in range(10))


def test_a_rate_learnt_from_headers_expires() -> None:
    """HINT_TTL seconds after the last headers, the rate they stated is forgotten."""
    clock = Clock()
    cooldown = Cooldown(clock, max_wait=60.0)
    cooldown.observe(RateInfo(limit=10, remaining=0, reset=5.0), success=True)
    assert cooldown.rate == pytest.approx(2.0)
    clock.now += HINT_TTL / 2
    cooldown.observe(RateInfo(limit=10, remaining=0, reset=5.0), success=True)  # refreshed
    clock.now += HINT_TTL / 2 + 1
    cooldown.reserve()
    assert cooldown.rate == pytest.approx(2.0)  # still paced: the refresh counts
    clock.now += HINT_TTL / 2
    assert cooldown.reserve() == 0.0
    assert cooldown.rate is None


def test_nonsense_waits_are_ignored() -> None:
    """A NaN or negative 429 wait changes nothing; a bad max_wait is refused clearly."""
    clock = Clock()
    cooldown = Cooldown(clock, max_wait=5.0)
    cooldown.start(math.nan)
    cooldown.start(-3.0)
    assert cooldown.until == 0.0
    assert cooldown.rate is None
    with pytest.raises(ValueError, match="max_wait"):
        Cooldown(clock, max_wait=math.nan)


@pytest.mark.parametrize("max_wait", [0.0, 0.5, 60.0])
def test_bounded_under_any_mix_of_hints(max_wait: float) -> None:
    """Every combination of absurd and sane hints keeps each wait within max_wait."""
    resets: list[float | None] = [None, 0.001, 1.0, 1e12, 3.6e11]
    infos = [
        RateInfo(limit, remaining, reset)
        for limit, remaining, reset in itertools.product([1, 50, 10**18], [0, 1], resets)
    ]
    clock = Clock()
    cooldown = Cooldown(clock, max_wait=max_wait)
    for number, info in enumerate(infos):  # bounded: len(infos) rounds
        cooldown.sent()
        cooldown.observe(info, success=number % 2 == 0)
        if number % 3 == 0:
            cooldown.start([0.01, 1e12, 30.0][number % 9 // 3])
        waits = [cooldown.reserve(), cooldown.reserve(max_wait=1.0)]
        assert all(0.0 <= w <= max_wait for w in waits), (info, waits)
        clock.now += 0.05


# --- the headers ------------------------------------------------------------------


def test_duration_formats() -> None:
    """OpenAI's durations, and the absurd ones a hostile upstream may send, are read as given."""
    assert parse_duration("6m0s") == pytest.approx(360.0)
    assert parse_duration("1h") == pytest.approx(3600.0)
    assert parse_duration("20ms") == pytest.approx(0.02)
    assert parse_duration("99999999h") == pytest.approx(3.6e11)
    assert parse_duration("1e12") == pytest.approx(1e12)
    assert parse_duration("inf") is None
    assert parse_duration("nan") is None
    info = rate_info(
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": "9999-12-31T23:59:59Z",
        },
        now=0.0,
    )
    assert info is not None
    assert info.reset is not None
    assert info.reset > 1e11


# --- end to end: one 200 with an absurd hint, then a real upstream on 127.0.0.1 ----

_OPENAI = {"x-ratelimit-limit-requests": "10", "x-ratelimit-remaining-requests": "0"}
_HINTS: list[dict[str, str]] = [
    {**_OPENAI, "x-ratelimit-reset-requests": "1e12"},
    {**_OPENAI, "x-ratelimit-reset-requests": "99999999h"},
    {
        "anthropic-ratelimit-requests-limit": "10",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "9999-12-31T23:59:59Z",
    },
]


@pytest.mark.parametrize("deadline", [30.0, None])
@pytest.mark.parametrize("hint", _HINTS, ids=["openai-1e12", "openai-99999999h", "anthropic"])
async def test_one_absurd_hint_on_a_200_cannot_take_the_key_down(
    upstream: tuple[Upstream, Any],
    make_session: Callable[..., aiohttp.ClientSession],
    hint: dict[str, str],
    deadline: float | None,
) -> None:
    """Later calls to the LLM route all go through, each waiting at most retry_after_max."""
    up, server = upstream
    up.then(status(200, "{}", **hint))
    recorder = Recorder()
    policy = seawall.Policy(
        llm=True,
        retry=seawall.RetryPolicy(retry_after_max=5.0),
        timeout=seawall.TimeoutPolicy(deadline=deadline),
    )
    sw = seawall.Seawall(
        routes={"127.0.0.1": policy}, plugins=[recorder], entrypoints=False, clock=Clock()
    )
    session = make_session(sw)
    for _ in range(5):  # the clock never moves: every later call is paced
        async with session.post(server.make_url("/v1/chat/completions"), json={}) as resp:
            assert resp.status == 200
    assert up.hits == 5
    waits = [e.delay for e in recorder.of("retry") if e.reason == "cooldown"]
    assert len(waits) == 4  # the hint was heard: the later calls were paced ...
    assert max(waits) <= 5.0  # ... and none waited longer than retry_after_max
