"""An escalation sink that POSTs incidents as JSON to a webhook (Slack-compatible).

::

    from seawall.plugins.webhook import WebhookSink

    sw = seawall.Seawall(plugins=[WebhookSink("https://hooks.slack.com/services/...")])
    # or, configured by the environment (None when SEAWALL_WEBHOOK_URL is unset):
    sw = seawall.Seawall(plugins=[p for p in [WebhookSink.from_env()] if p])

Not registered unless given. The body is ``{"text": summary, **incident}``:
Slack, Mattermost and Teams-style incoming webhooks show ``text``; other
receivers get every incident field (severity, category, key, redacted
request line, reason, count, first/last seen, context).

The sink has its own ``aiohttp`` session with no middleware, so its requests
never pass through seawall (no recursion, no escalation of escalations); its
own small retry (network errors, 429 and 5xx; ``retries`` more attempts);
and a rate limit (at most ``max_per_minute`` posts; the rest are dropped and
counted in ``stats["rate_limited"]``). Redirects are not followed: the
sink's headers and the incident would go where nobody configured. The
escalation worker bounds each delivery by ``EscalationPolicy.sink_timeout``.
``sw.aclose()`` closes the session.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import TYPE_CHECKING, Any

import aiohttp
from yarl import URL

from seawall import _testmode as _testing
from seawall.plugins import hookimpl

if TYPE_CHECKING:
    from seawall.engine import Seawall
    from seawall.escalation import Incident

__all__ = ["ENV_URL", "WebhookError", "WebhookSink"]

#: The environment variable ``WebhookSink.from_env`` reads.
ENV_URL = "SEAWALL_WEBHOOK_URL"

_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class WebhookError(RuntimeError):
    """The webhook did not accept an incident after every attempt."""


class WebhookSink:
    """POSTs each incident to ``url`` as JSON.

    :param url: the webhook URL (it may hold a token: it is never logged unredacted).
    :param timeout: seconds per POST.
    :param retries: further attempts after a failed POST (0 for none).
    :param backoff: seconds before the first retry, doubled each time.
    :param max_per_minute: posts allowed per rolling minute; more are dropped.
    :param headers: extra request headers (e.g. an authorization header).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.5,
        max_per_minute: int = 30,
        headers: dict[str, str] | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            msg = f"WebhookSink(url={_where(url)!r}): give an http:// or https:// URL"
            raise ValueError(msg)
        if retries < 0 or max_per_minute < 1 or timeout <= 0:
            msg = (
                f"WebhookSink: retries={retries!r} must be >= 0, max_per_minute="
                f"{max_per_minute!r} >= 1 and timeout={timeout!r} > 0"
            )
            raise ValueError(msg)
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_per_minute = max_per_minute
        self.headers = dict(headers or {})
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._sent_at: list[float] = []  # monotonic times of recent posts
        self.stats = {"sent": 0, "failed": 0, "rate_limited": 0, "retried": 0}

    @classmethod
    def from_env(cls, **kwargs: Any) -> WebhookSink | None:
        """A sink for ``$SEAWALL_WEBHOOK_URL``, or ``None`` when it is unset or empty."""
        url = os.environ.get(ENV_URL, "").strip()
        return cls(url, **kwargs) if url else None

    def __repr__(self) -> str:
        return f"WebhookSink({_where(self.url)!r})"

    @hookimpl
    def seawall_configure(self, seawall: Seawall) -> None:
        seawall.on_close(self.aclose)

    @hookimpl
    def seawall_escalate(self, incident: Incident) -> Any:
        if not self._allow():
            self.stats["rate_limited"] += 1
            return None
        return self.post(incident)

    def _allow(self) -> bool:
        now = time.monotonic()
        recent = [t for t in self._sent_at if now - t < 60.0]
        if len(recent) >= self.max_per_minute:
            self._sent_at = recent
            return False
        recent.append(now)
        self._sent_at = recent
        return True

    @staticmethod
    def payload(incident: Incident) -> dict[str, Any]:
        """The JSON body for ``incident``: Slack's ``text`` plus every field."""
        return {"text": incident.summary(), **incident.as_dict()}

    async def post(self, incident: Incident) -> None:
        """Deliver ``incident``, retrying a few times; raise ``WebhookError`` if it fails."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._drop_session()  # made on another loop (incidents of sync callers first)
            # middlewares=() : the sink's own requests never go through seawall.
            self._session = aiohttp.ClientSession(
                middlewares=(), timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
            self._session_loop = loop
        body = self.payload(incident)
        last = ""
        for number in range(1, self.retries + 2):
            if number > 1:
                self.stats["retried"] += 1
                await _testing.sleep(self.backoff * 2 ** (number - 2))
            try:
                # Redirects are not followed: the sink's headers (a token) and the
                # incident would go to a URL nobody configured.
                async with self._session.post(
                    self.url, json=body, headers=self.headers, allow_redirects=False
                ) as resp:
                    if resp.status < 300:
                        self.stats["sent"] += 1
                        return
                    last = f"HTTP {resp.status}"
                    if resp.status < 400:
                        last += ", a redirect, not followed: give the webhook's final URL"
                    if resp.status not in _RETRY_STATUSES:
                        break
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = type(exc).__name__
        self.stats["failed"] += 1
        msg = (
            f"webhook {_where(self.url)} refused the incident for {incident.key} "
            f"({last}, {number} attempt(s)); check the URL and the receiver"
        )
        raise WebhookError(msg)

    def _drop_session(self) -> None:
        """Forget the session; close it on its own loop when that loop still runs."""
        session, loop = self._session, self._session_loop
        self._session = self._session_loop = None
        if session is not None and not session.closed and loop is not None:
            with contextlib.suppress(RuntimeError):  # its loop closed: nothing to close on
                asyncio.run_coroutine_threadsafe(session.close(), loop)

    async def aclose(self) -> None:
        """Close the sink's HTTP session."""
        session, loop = self._session, self._session_loop
        if loop is not asyncio.get_running_loop():
            self._drop_session()
            return
        self._session = self._session_loop = None
        if session is not None and not session.closed:
            await session.close()


def _where(url: object) -> str:
    """Scheme and host only: webhook URLs carry their token in the path."""
    try:
        parsed = URL(str(url))
    except (TypeError, ValueError):
        return "<invalid URL>"
    return f"{parsed.scheme}://{parsed.host}/..." if parsed.host else "<invalid URL>"
