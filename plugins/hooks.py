"""``Hooks``: how the core calls plugins, isolating the ones that raise.

The request path reaches plugins only through this dispatcher (never a
built-in plugin's module directly), and ``fallback`` is where the built-in
classifiers answer when every implementation deferred or failed.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
import traceback
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from seawall.outcome import SUCCESS, Classification, Outcome
from seawall.plugins.builtin.exceptions import classify_exception
from seawall.redact import exception_repr, redact_text
from seawall.tables import UNKNOWN, classify_status, with_reason

if TYPE_CHECKING:
    from seawall.plugins.manager import SeawallPluginManager

__all__ = ["BUILTIN_PREFIX", "SLOW_HOOK", "Hooks"]

log = logging.getLogger("seawall.plugins")

#: Prefix of the names built-in plugins are registered under.
BUILTIN_PREFIX = "seawall.builtin."

_Impl = tuple[str, Callable[..., Any], tuple[str, ...]]
#: An implementation and whether its calls are timed (a user's plugin, not a built-in).
_Call = tuple[str, Callable[..., Any], tuple[str, ...], bool]

#: A plugin's hook call that takes this many seconds or more is reported (once per plugin and
#: hook): a plain ``def`` hook runs on the caller's thread, so on an event loop every other
#: request waited meanwhile (asyncio's own debug mode reports callbacks from 0.1 s too).
SLOW_HOOK = 0.1


class Hooks:
    """Calls hooks for the engine, isolating plugins that raise.

    A plugin that raises is skipped for that call and the next implementation
    answers (so the built-in answer is used); the fault is logged once per
    plugin and hook and counted in ``faults``. A user's plugin whose call takes
    ``SLOW_HOOK`` seconds or more is logged once per plugin and hook and
    counted in ``slow`` (its answer is used: seawall cannot take back the time
    it blocked). Implementation lists are cached and rebuilt when plugins change.
    """

    def __init__(self, pm: SeawallPluginManager) -> None:
        self.pm = pm
        self.faults: dict[tuple[str, str], int] = {}
        self.slow: dict[tuple[str, str], int] = {}
        #: Times the calls of users' plugins (a test may move it by hand).
        self.clock: Callable[[], float] = time.perf_counter
        self._cache: dict[str, tuple[_Impl, ...]] = {}
        self._calls: dict[str, tuple[_Call, ...]] = {}
        self._custom: dict[str, bool] = {}
        self._has: dict[str, bool] = {}
        self.tracing = os.environ.get("SEAWALL_TRACE_PLUGINS") == "1"
        pm.listeners.append(self._forget)

    def impls(self, hook: str) -> tuple[_Impl, ...]:
        """Implementations of ``hook`` in call order (the one pluggy calls first, first)."""
        cached = self._cache.get(hook)
        if cached is None:
            caller = getattr(self.pm.hook, hook)
            cached = tuple(
                (impl.plugin_name, impl.function, tuple(impl.argnames))
                for impl in reversed(caller.get_hookimpls())
                if not (impl.hookwrapper or impl.wrapper)
            )
            self._cache[hook] = cached
        return cached

    def custom(self, hook: str) -> bool:
        """True when a plugin other than the built-ins implements ``hook``."""
        cached = self._custom.get(hook)
        if cached is None:
            cached = self._custom[hook] = any(
                not name.startswith(BUILTIN_PREFIX) for name, _, _ in self.impls(hook)
            )
        return cached

    def _forget(self) -> None:
        self._cache.clear()
        self._calls.clear()
        self._custom.clear()
        self._has.clear()

    def has(self, hook: str) -> bool:
        """True when some plugin implements ``hook`` (cached: asked on every request)."""
        found = self._has.get(hook)
        if found is None:
            found = self._has[hook] = bool(self.impls(hook))
        return found

    def fault(self, plugin: str, hook: str, exc: BaseException) -> None:
        """Count a plugin's fault; log it the first time."""
        key = (plugin, hook)
        seen = self.faults.get(key, 0)
        self.faults[key] = seen + 1
        if not seen:
            # The traceback is formatted here and redacted: an exception's text can
            # hold request headers (aiohttp's ClientResponseError does).
            trace = "".join(traceback.format_exception(exc)).rstrip()
            log.error(
                "seawall plugin %r raised in %s and was skipped (reported once): %s\n%s",
                plugin,
                hook,
                redact_text(exception_repr(exc)),
                redact_text(trace),
            )

    def took(self, plugin: str, hook: str, seconds: float) -> None:
        """Count a plugin's slow call; log it the first time."""
        key = (plugin, hook)
        seen = self.slow.get(key, 0)
        self.slow[key] = seen + 1
        if not seen:
            log.warning(
                "seawall plugin %r took %.2f s in %s (reported once): a plain 'def' hook runs "
                "on the caller's thread, so every request on its event loop waited meanwhile; "
                "keep hooks fast and hand slow work (I/O, locks) to a thread or a task of "
                "your own",
                plugin,
                seconds,
                hook,
            )

    def _answers(self, hook: str, kwargs: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        """(plugin name, result) from each implementation in call order, skipping faults."""
        calls = self._calls.get(hook)
        if calls is None:
            calls = self._calls[hook] = tuple(
                (plugin, function, argnames, not plugin.startswith(BUILTIN_PREFIX))
                for plugin, function, argnames in self.impls(hook)
            )
        for plugin, function, argnames, timed in calls:
            try:
                if timed:
                    began = self.clock()
                    try:
                        result = function(*[kwargs[name] for name in argnames])
                    finally:
                        took = self.clock() - began
                        if took >= SLOW_HOOK:
                            self.took(plugin, hook, took)
                else:
                    result = function(*[kwargs[name] for name in argnames])
            except (Exception, asyncio.CancelledError) as exc:
                # A plain def is never interrupted by a cancellation: a CancelledError
                # here is the plugin's own, and must not cancel the caller's request.
                self.fault(plugin, hook, exc)
                continue
            if self.tracing:
                log.debug("%s from %s -> %s", hook, plugin, redact_text(repr(result)))
            yield plugin, result

    def first(self, hook: str, **kwargs: Any) -> tuple[Any, str | None]:
        """Call ``hook`` until an implementation answers; return (answer, plugin name)."""
        for plugin, result in self._answers(hook, kwargs):
            if result is not None:
                return result, plugin
        return None, None

    def each(self, hook: str, **kwargs: Any) -> list[Any]:
        """Call every implementation of ``hook``; return the results that are not None.

        A coroutine returned by a plain ``def`` (``return queue.put(event)``) is
        a fault: closed (nobody awaits it: the work it stands for never happens)
        and counted, so it shows instead of vanishing with a RuntimeWarning.
        """
        results = []
        for plugin, result in self._answers(hook, kwargs):
            if result is None:
                continue
            if inspect.iscoroutine(result):
                result.close()
                why = (
                    f"{hook} returned a coroutine, which seawall never awaits: do the work "
                    "in the hook (or hand it to a task of your own) and return None"
                )
                self.fault(plugin, hook, TypeError(why))
                continue
            results.append(result)
        return results

    def each_with_names(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of ``hook``; return (plugin name, result) pairs."""
        return list(self._answers(hook, kwargs))

    def fallback(self, outcome: Outcome) -> Classification:
        """When every classifier deferred or failed: the user's patterns, then the tables.

        The registered built-in instances when they are there (they hold the
        user's patterns and the cache), else the plain tables. Isolated as the
        plugins are: a built-in that raises (on an exception whose properties
        raise, say) is counted as a fault and the next one answers; last,
        ``UNKNOWN``. So classifying an attempt never raises.
        """
        pm = self.pm
        patterns = pm.get_plugin("seawall.builtin.patterns")
        if patterns is not None:
            try:
                found: Classification | None = patterns.match(outcome)
            except Exception as fault:
                self.fault("seawall.builtin.patterns", "seawall_classify", fault)
                found = None
            if found is not None:
                return found
        exc = outcome.exception
        if exc is not None:
            registered = pm.get_plugin("seawall.builtin.exceptions")
            try:
                if registered is not None:
                    cached: Classification = registered.classify(exc)  # holds the cache and counts
                    return cached
                return classify_exception(exc)
            except Exception as fault:
                self.fault("seawall.builtin.exceptions", "seawall_classify", fault)
                return with_reason(UNKNOWN, exc)
        if outcome.status is not None:
            return classify_status(outcome.status)
        return SUCCESS
