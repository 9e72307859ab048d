"""The spine end to end: a 503 then a 200 through the aiohttp middleware."""

from __future__ import annotations

import seawall

from .conftest import status


async def test_retries_a_503_then_returns_the_200(upstream, make_session) -> None:
    """A GET that meets one 503 is retried and the caller sees only the 200."""
    up, server = upstream
    up.then(status(503))
    sw = seawall.Seawall(entrypoints=False)
    async with make_session(sw) as session, session.get(server.make_url("/")) as resp:
        assert resp.status == 200
        assert await resp.text() == "ok"
    assert up.hits == 2
