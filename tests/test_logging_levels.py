"""Failed attempts and breaker moves are logged under ``seawall`` at their severity's level."""

from __future__ import annotations

import logging

import seawall
from seawall.policy import BreakerPolicy, Policy, RetryPolicy

from .conftest import status


async def test_attempt_log_levels_follow_severity(upstream, make_session, caplog):
    """A 503 (MEDIUM) logs WARNING, a 401 (HIGH) ERROR, on seawall.attempts; opening is WARNING."""
    up, server = upstream
    up.then(status(401), status(503))
    sw = seawall.Seawall(
        Policy(retry=RetryPolicy(max_attempts=1), breaker=BreakerPolicy(failure_threshold=1)),
        entrypoints=False,
        blocked=["seawall.builtin.logging_sink"],
    )
    with caplog.at_level(logging.INFO, logger="seawall"):
        async with make_session(sw) as session:
            for expected in (401, 503):  # the call failing with a 503 opens the breaker
                async with session.get(server.make_url("/")) as resp:
                    assert resp.status == expected
    attempts = [
        (r.levelno, r.seawall_category) for r in caplog.records if r.name == "seawall.attempts"
    ]  # type: ignore[attr-defined]
    assert attempts == [(logging.ERROR, "authentication"), (logging.WARNING, "server")]
    breaker = [r for r in caplog.records if r.name == "seawall.breaker"]
    assert [r.levelno for r in breaker] == [logging.WARNING]
    assert "closed -> open" in breaker[0].getMessage()


async def test_nothing_is_logged_when_the_level_is_disabled(upstream, make_session, caplog):
    """With seawall.attempts above CRITICAL, failed attempts build no log record."""
    up, server = upstream
    up.then(status(503))
    sw = seawall.Seawall(entrypoints=False)
    logger = logging.getLogger("seawall.attempts")
    before = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        with caplog.at_level(logging.DEBUG):
            logger.setLevel(logging.CRITICAL + 1)
            async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
                assert resp.status == 200
    finally:
        logger.setLevel(before)
    assert not [r for r in caplog.records if r.name == "seawall.attempts"]
