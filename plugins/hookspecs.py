"""Every seawall hook, with when it is called and what its return means.

Hooks are called with keyword arguments; an implementation may accept any
subset of them, so adding an argument later breaks no plugin. Arguments are
frozen value objects, never seawall's live state.

Only ``seawall_escalate`` may be implemented with ``async def`` (seawall awaits
it); an ``async def`` implementation of any other hook is refused with a
``PluginError`` when the plugin is registered, since nothing would await it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from seawall.plugins import hookspec

if TYPE_CHECKING:
    from seawall.engine import Seawall
    from seawall.escalation import Incident
    from seawall.events import Event
    from seawall.outcome import Classification, Outcome
    from seawall.policy import RetryPolicy


# --- classification -------------------------------------------------------


@hookspec(firstresult=True)
def seawall_classify(outcome: Outcome) -> Classification | None:
    """Decide what one finished attempt means.

    Called once per attempt, after the response headers arrived (and, for a
    4xx/5xx status, its body up to 64 KiB was read) or the attempt raised.

    :param outcome: the attempt's result: key, method, redacted URL, attempt
        number, status, response headers, body, exception, elapsed seconds
        and call context. Frozen.
    :returns: a ``Classification``, or ``None`` to let the next plugin decide.

    The first non-``None`` result wins; the built-in classifiers run last. A
    plugin that raises is skipped for that call (and reported once).
    """


# --- backoff --------------------------------------------------------------


@hookspec(firstresult=True)
def seawall_backoff(
    attempt: int, outcome: Outcome, classification: Classification, policy: RetryPolicy
) -> float | None:
    """Choose how long to wait before the next attempt.

    Called after a failed attempt that will be retried, before the wait.

    :param attempt: the number of the attempt that just failed (1 for the first).
    :param outcome: that attempt's result.
    :param classification: what it was classified as.
    :param policy: the route's retry policy (``backoff``, ``jitter``,
        ``base_delay``, ``multiplier``, ``max_delay``).
    :returns: seconds to wait, or ``None`` to let the next plugin decide.

    The first non-``None`` result wins; the built-in strategies run last. The
    result is clamped to ``[0, policy.max_delay]``; a server's ``Retry-After``
    (up to ``retry_after_max``) can still lengthen the wait.
    """


# --- escalation -----------------------------------------------------------


@hookspec
def seawall_escalate(incident: Incident) -> Any:
    """Tell a human about an incident: paging, chat, tickets, logs.

    Called off the request path, from seawall's escalation worker, for a
    classification with ``escalate`` set or ``CRITICAL`` severity, at most
    once per (key, category) in the dedup window (``incident.count`` says how
    many were folded in).

    :param incident: severity, category, key, redacted request line, reason,
        count, first and last seen.
    :returns: nothing, or an awaitable, which seawall awaits with a timeout.

    An ``async def`` sink is awaited on the event loop. A plain ``def`` sink
    runs in a thread of its own, so it may block (an HTTP call with
    ``requests``, a slow log handler); it must not touch the event loop. Each
    sink gets ``sink_timeout`` seconds per incident; a sink whose thread is
    still running from an earlier incident is skipped. Every sink runs; one
    that raises, blocks or hangs does not stop the others.
    """


# --- observability --------------------------------------------------------


@hookspec
def seawall_event(event: Event) -> None:
    """Observe what seawall does: attempts, retries, rejections, breaker moves.

    Called synchronously on the request path, so keep it cheap; hand slow work
    to a queue. When no plugin implements this hook, no event is ever built.

    :param event: a frozen event object; ``event.kind`` names its type
        (``attempt``, ``retry``, ``call``, ``rejected``, ``breaker``, ``budget``).
    """


# --- lifecycle ------------------------------------------------------------


@hookspec
def seawall_configure(seawall: Seawall) -> None:
    """Called once when a ``Seawall`` is built, after every plugin is registered.

    :param seawall: the new instance; a plugin may keep it to read
        ``health()`` later, or call ``add_pattern`` on it.
    """
