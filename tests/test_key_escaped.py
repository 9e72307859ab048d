"""A call key that holds characters which do not print is escaped wherever seawall shows it.

Keys are often built from what a request brought (``key=f"tenant:{name}"``). A
newline there forged a log line ("CALL evil\\nINFO ..."), an escape sequence
drove the terminal of whoever read the log, a bidi control showed another key;
in log records, ``__notes__``, ``health()``, events and ``CircuitOpenError``.
The key is escaped as ``repr`` writes it, and the call is not refused.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import seawall
from seawall import hookimpl
from seawall.redact import redact_key

HOSTILE = "tenant:evil\nINFO forged line \x1b[2J\u202egnp.exe\x00\u200b\xa0end"
SHOWN = "tenant:evil\\nINFO forged line \\x1b[2J\\u202egnp.exe\\x00\\u200b\\xa0end"

#: What no text seawall shows may hold: C0/C1 controls (newline included), bidi
#: controls and marks, zero-width and invisible characters, the no-break space.
RAW = re.compile("[\x00-\x1f\x7f-\xa0\u061c\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


class Events:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def seawall_event(self, event: Any) -> None:
        self.seen.append(repr(event))
        self.seen.append(str(getattr(event, "key", "")))


def _assert_clean(texts: list[str]) -> None:
    dirty = [t for t in texts if RAW.search(t)]
    assert not dirty, dirty[:3]


def test_the_shown_key_is_escaped_and_nothing_else_changes() -> None:
    assert redact_key(HOSTILE) == SHOWN
    assert redact_key("payments") == "payments"
    assert redact_key("bücher:ключ") == "bücher:ключ"  # printable letters of any script
    assert redact_key("a b") == "a b"


@given(st.text(max_size=60))
def test_any_key_is_shown_printable(key: str) -> None:
    assert redact_key(key).isprintable()


async def test_a_hostile_key_leaves_no_raw_character_anywhere(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``sw.call`` failing until the breaker opens, then refused: every log record,
    note, event, health key and error message shows the key escaped; the calls ran."""
    caplog.set_level(logging.DEBUG, logger="seawall")
    events = Events()
    sw = seawall.Seawall(
        seawall.Policy(
            retry=seawall.RetryPolicy(max_attempts=2, base_delay=0.0),
            breaker=seawall.BreakerPolicy(failure_threshold=2, hold=0),
        ),
        plugins=[events],
    )
    ran = 0

    async def fail() -> None:
        nonlocal ran
        ran += 1
        raise ConnectionError("upstream down")

    texts: list[str] = []
    for _ in range(3):  # bounded: the breaker opens on the way
        with pytest.raises((ConnectionError, seawall.CircuitOpenError)) as caught:
            await sw.call(fail, key=HOSTILE)
        texts.append(str(caught.value))
        texts.extend(getattr(caught.value, "__notes__", []))
    assert ran >= 2  # not refused for its key: the calls were made
    assert isinstance(caught.value, seawall.CircuitOpenError)
    assert list(sw.health()["keys"]) == [SHOWN]
    texts += [r.getMessage() for r in caplog.records]
    texts += events.seen
    texts += [str(sw.health())]
    assert any(SHOWN in t for t in texts)
    _assert_clean(texts)
    await sw.aclose()


def test_the_sync_form_and_the_guard_show_it_escaped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="seawall")
    sw = seawall.Seawall(seawall.Policy(retry=seawall.RetryPolicy(max_attempts=1)))
    assert sw.call_sync(lambda: "ok", key=HOSTILE) == "ok"
    with pytest.raises(ZeroDivisionError), sw.breaker(HOSTILE + "!"):
        raise ZeroDivisionError
    keys = list(sw.health()["keys"])
    assert keys == [SHOWN, SHOWN + "!"]
    _assert_clean([r.getMessage() for r in caplog.records] + keys)


async def test_a_guard_keyed_by_a_secret_shows_it_masked_and_shares_the_calls_state() -> None:
    """``sw.breaker(key)`` kept its key as given: a secret in it reached ``health()``, the
    logs and ``CircuitOpenError``, and the block's breaker was not the one of
    ``sw.call(fn, key=key)`` (whose key is the redacted one)."""
    secret = "sk-live-4f9c1d2e8b7a6f5e4d3c2b1a"
    key = f"https://api.example.com/v1/charges?api_key={secret}"
    sw = seawall.Seawall(
        seawall.Policy(
            retry=seawall.RetryPolicy(max_attempts=1),
            breaker=seawall.BreakerPolicy(failure_threshold=2, hold=0),
        )
    )

    async def fail() -> None:
        raise ConnectionError("upstream down")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            await sw.call(fail, key=key)
    guard = sw.breaker(key)
    with pytest.raises(seawall.CircuitOpenError) as caught:
        async with guard:
            pass
    texts = [str(caught.value), repr(guard), str(sw.health()), *sw.health()["keys"]]
    assert len(sw.health()["keys"]) == 1
    assert not [t for t in texts if secret in t], texts
    await sw.aclose()
