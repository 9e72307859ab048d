"""Type-checked, never run: the httpx and httpx2 transports fit their clients and the SDKs
(mypy --strict), whichever way they are asked for."""

from __future__ import annotations

import anthropic
import httpx
import httpx2
import openai

import seawall
import seawall.httpx
import seawall.httpx2

sw = seawall.Seawall(routes={"api.anthropic.com": seawall.Policy.for_llm()})

# httpx: the default package; the direction from `sync`.
plain: seawall.httpx.AsyncTransport = sw.httpx_transport()
plain_sync: seawall.httpx.SyncTransport = sw.httpx_transport(sync=True)
wrapped: seawall.httpx.AsyncTransport = sw.httpx_transport(httpx.AsyncHTTPTransport(retries=0))
http = httpx.AsyncClient(transport=plain)
http_sync = httpx.Client(transport=sw.httpx_transport(httpx.HTTPTransport(), sync=True))

# httpx2: named, or read from the wrapped transport.
two: seawall.httpx2.AsyncTransport = sw.httpx_transport(package="httpx2")
two_sync: seawall.httpx2.SyncTransport = sw.httpx_transport(sync=True, package="httpx2")
two_wrapped: seawall.httpx2.AsyncTransport = sw.httpx_transport(httpx2.AsyncHTTPTransport())
two_wrapped_sync: seawall.httpx2.SyncTransport = sw.httpx_transport(
    httpx2.HTTPTransport(), sync=True
)
direct = seawall.httpx2.AsyncTransport(sw, httpx2.AsyncHTTPTransport(retries=0))

claude = anthropic.AsyncAnthropic(max_retries=0, http_client=httpx2.AsyncClient(transport=two))
claude_sync = anthropic.Anthropic(max_retries=0, http_client=httpx2.Client(transport=two_sync))
# openai 3.x takes an httpx client at run time, but its types name httpx2's.
gpt = openai.AsyncOpenAI(max_retries=0, http_client=httpx2.AsyncClient(transport=two_wrapped))
gpt_sync = openai.OpenAI(max_retries=0, http_client=httpx2.Client(transport=two_wrapped_sync))


def breaker_open(exc: anthropic.APIConnectionError) -> bool:
    """An open breaker reaches the SDK's caller inside its connection error."""
    return isinstance(seawall.unwrap(exc), seawall.CircuitOpenError)
