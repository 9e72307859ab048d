"""``seawall classify``: what seawall would make of one attempt's result, and why.

The answer comes from the engine itself (``Seawall.classify``, ``rules.why_stop``,
``Loop.delay``) on a fresh key, so it is the decision a real call would get on
its first failure (attempt ``N`` with ``--attempt``).

What it echoes is redacted as everything seawall shows: secret header
values, key-like query values, credentials and tokens in the exception text
(people paste real requests into it, and terminals end up in tickets).
"""

from __future__ import annotations

import argparse
import builtins
from typing import Any

from multidict import CIMultiDict
from yarl import URL

from seawall._body import ERROR_BODY_LIMIT
from seawall._path.rules import StopReason, why_stop
from seawall._path.spec import CallSpec
from seawall._testmode import cap_attempts
from seawall.backoff import bounds, ceiling
from seawall.engine import Seawall
from seawall.outcome import Category, Outcome
from seawall.redact import redact_headers, redact_text

__all__ = [
    "build_exception",
    "explain",
    "parse_header",
    "parse_method",
    "parse_status",
    "parse_url",
]

#: Modules whose exception classes ``--exception`` may name (``aiohttp.X`` or ``X``).
_MODULES = ("builtins", "aiohttp", "asyncio", "ssl", "socket")


def parse_header(text: str) -> tuple[str, str]:
    """``"Retry-After: 5"`` -> ``("Retry-After", "5")``."""
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        # Only the first word is echoed: the rest may be a secret without its colon.
        first = text.split(None, 1)[0] if text.strip() else ""
        msg = (
            f"--header {redact_text(first)!r}... is not 'Name: value'; "
            "write it like --header 'Retry-After: 5'"
        )
        raise ValueError(msg)
    return name.strip(), value.strip()


#: The characters of an HTTP token (RFC 9110, section 5.6.2): what a method is made of.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")


def parse_method(text: str) -> str:
    """``--method``: an HTTP method (a token: letters, digits, ``-`` and alike), upper-cased."""
    if not text or not set(text) <= _TOKEN or len(text) > 32:
        shown = text if len(text) <= 32 else f"{text[:29]}..."
        msg = f"{shown!r} is not an HTTP method; give one such as GET, POST or PUT"
        raise argparse.ArgumentTypeError(msg)
    return text.upper()


def parse_status(text: str) -> int:
    """``--status``: an HTTP status code, 100 to 599 (an argparse type: a usage error else)."""
    try:
        code = int(text)
    except ValueError:
        code = 0
    if not 100 <= code <= 599:
        msg = f"{text!r} is not an HTTP status code; give one from 100 to 599, e.g. 503"
        raise argparse.ArgumentTypeError(msg)
    return code


def parse_url(text: str) -> str:
    """``--url``: an absolute URL, with a scheme and a host (an argparse type)."""
    try:
        url = URL(text)
        ok = bool(url.scheme and url.host)
    except ValueError:
        ok = False
    if not ok:
        shown = redact_text(text.rsplit("@", 1)[-1])  # never echo credentials
        msg = (
            f"{shown!r} is not an absolute URL; "
            "give its scheme and host, e.g. https://api.example.com/v1"
        )
        raise argparse.ArgumentTypeError(msg)
    return text


def _lookup(name: str) -> type[BaseException] | None:
    import importlib

    module_name, _, attr = name.rpartition(".")
    candidates = [module_name] if module_name else list(_MODULES)
    for candidate in candidates:
        if candidate not in _MODULES and not candidate.startswith("aiohttp"):
            continue
        try:
            module = builtins if candidate == "builtins" else importlib.import_module(candidate)
        except ImportError:
            continue
        found = getattr(module, attr, None)
        if isinstance(found, type) and issubclass(found, BaseException):
            return found
    return None


def build_exception(text: str) -> BaseException:
    """An exception from ``"Name: message"``, as close to the real one as we can.

    Known names (builtins, aiohttp, asyncio, ssl, socket) give an instance of
    that class; one whose constructor wants more than a message gets a
    same-named subclass that takes only the message. Unknown names become a
    new ``Exception`` subclass with that name, as an SDK's error would look.
    """
    name, _, message = text.partition(":")
    name, message = name.strip(), message.strip()
    if not name.replace(".", "").replace("_", "").isalnum():
        msg = (
            f"--exception {redact_text(text)!r} does not start with a class name; "
            "write it like 'ConnectionResetError: reset by peer'"
        )
        raise ValueError(msg)
    cls = _lookup(name)
    short = name.rpartition(".")[2]
    if cls is None:
        unknown: type[Exception] = type(short, (Exception,), {"__module__": "cli"})
        return unknown(message)
    try:
        return cls(message)
    except Exception:  # constructors that want more than a message
        pass

    def init(self: BaseException, text: str) -> None:
        BaseException.__init__(self, text)

    def show(self: BaseException) -> str:
        return str(self.args[0]) if self.args else ""

    stand_in: type[BaseException] = type(
        short, (cls,), {"__init__": init, "__str__": show, "status": 0}
    )
    return stand_in(message)


def explain(
    sw: Seawall,
    *,
    method: str = "GET",
    url: str | None = None,
    status: int | None = None,
    headers: list[tuple[str, str]] = (),  # type: ignore[assignment]
    body: bytes | None = None,
    exception: BaseException | None = None,
    attempt: int = 1,
) -> dict[str, Any]:
    """Classify one result and say whether and how long seawall would wait."""
    target = URL(url) if url else URL("http://upstream.example")
    key, policy = sw.resolve(target)
    hdrs = CIMultiDict(headers)
    spec = CallSpec(
        key=key,
        policy=policy,
        state=sw.state_for(key, policy),
        method=method.upper(),
        url=target,
        context={},
        idempotent=method.upper() in policy.retry.retry_methods or "Idempotency-Key" in hdrs,
        http=exception is None,
    )
    outcome = Outcome(
        key=key,
        method=spec.method,
        url=spec.redacted_url,
        attempt=attempt,
        status=status,
        headers=hdrs,
        body=body[:ERROR_BODY_LIMIT] if body is not None else None,
        exception=exception,
        content_type=hdrs.get("Content-Type", "").split(";")[0].strip(),
    )
    c, classifier = sw.classify(outcome)
    shown = f"{type(exception).__name__}: {exception}" if exception else None
    result: dict[str, Any] = {
        "key": redact_text(key),
        "input": {
            "method": spec.method,
            "url": str(spec.redacted_url),
            "attempt": attempt,
            "status": status,
            "headers": redact_headers(hdrs.items()),
            "exception": redact_text(shown) if shown else None,
        },
        "classification": {
            "category": c.category.value,
            "severity": c.severity.name.lower(),
            "retryable": c.retryable,
            "counts_as_failure": c.counts_as_failure,
            "retry_after": c.retry_after,
            "max_retries": c.max_retries,
            "escalate": c.escalate,
            "reason": redact_text(c.reason),
        },
        "classified_by": classifier or "seawall fallback (every classifier deferred)",
        "breaker": _breaker_effect(c),
        "retry": False,
        "why_not": None,
        "wait": None,
    }
    if c.is_success:
        result["why_not"] = "success: nothing to retry"
        return result
    # As if the earlier attempts had failed the same way.
    most = cap_attempts(policy.retry.max_attempts)
    stop = why_stop(spec, attempt, most, outcome, c, {c.category: attempt - 1})
    if stop is StopReason.ATTEMPTS:
        result["why_not"] = (
            f"attempt {attempt} was the last of max_attempts={policy.retry.max_attempts}"
        )
        return result
    if stop is not None:
        result["why_not"] = stop.describe(spec, c, status)
        return result
    _answer, backoff_by = sw.hooks.first(
        "seawall_backoff", attempt=attempt, outcome=outcome, classification=c, policy=policy.retry
    )
    delay, why = sw.path.delay(spec, attempt, outcome, c)
    top = ceiling(attempt, policy.retry)
    low, high = bounds(top, policy.retry)
    deadline = policy.timeout.deadline
    result["wait"] = {
        "decided_by": "Retry-After" if why == "retry-after" else (backoff_by or "built-in backoff"),
        "seconds": round(delay, 4) if delay is not None else None,
        "backoff": policy.retry.backoff,
        "jitter": policy.retry.jitter,
        "backoff_ceiling": round(top, 4),
        "backoff_range": [round(low, 4), round(high, 4)],
        "retry_after": c.retry_after,
    }
    if delay is not None and deadline is not None and delay >= deadline:
        result["why_not"] = f"the wait ({delay:g}s) would pass the deadline ({deadline:g}s)"
        return result
    result["retry"] = True
    return result


def _breaker_effect(c: Any) -> str:
    if c.is_success:
        return "records a success"
    if c.counts_as_failure:
        return "counts as a failure"
    if c.category is Category.CALLER:
        return "not counted (the calling code failed, not the upstream)"
    if c.category is Category.RATE_LIMIT:
        return "not counted; starts a cooldown for the key" + (
            f" ({c.retry_after:g}s)" if c.retry_after is not None else ""
        )
    return "records a success (the upstream answered)"
