"""The peers in ``overhead.py``'s decision-cost table (issue 16): same run, same rounds.

Each peer wraps the same async function that ``sw.call(fn)`` and the bare
``await fn()`` use, and is measured against that bare await, so the µs it adds
share the host and the hour with seawall's rows and their ratio does not move
with either:

- ``purgatory``: a bare breaker, ``async with await factory.get_breaker("k"):
  await fn()`` (``AsyncCircuitBreakerFactory``, threshold 5, ttl 2, as
  ``_common.py``'s ``purgatory_tenacity`` variant configures it);
- ``tenacity``: ``fn`` decorated with ``@tenacity.retry(stop=stop_after_attempt(3))``,
  the decorator form of tenacity's own README (rather than the
  ``async for attempt in AsyncRetrying(...)`` loop the end-to-end variants use);
- ``stamina``: ``fn`` decorated with ``@stamina.retry(on=Exception, attempts=3)``
  (its default 45 s timeout kept: what a user gets).

The sync forms (``sw.call_sync``, ``@sw.protect`` on a ``def``) have their own
peers (``SYNC_PEERS``) around the same plain function, measured against a bare
``fn()``: purgatory's ``SyncCircuitBreakerFactory`` (``with
factory.get_breaker("k"): fn()``), tenacity's and stamina's ``retry`` on a ``def``.

On success none waits or jitters, and none suspends (``instructions.py``
drives the loops without an event loop). Each is optional (the ``bench``
extra): one that cannot be imported is left out of the cases, and
``missing_note`` says so under the table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

#: Each peer's case: its label in the table, and the module it needs.
PEERS: dict[str, tuple[str, str]] = {
    "purgatory": ('bare purgatory breaker (`async with await get_breaker("k")`)', "purgatory"),
    "tenacity": ("tenacity (`@tenacity.retry(stop=stop_after_attempt(3))`)", "tenacity"),
    "stamina": ("stamina (`@stamina.retry(on=Exception, attempts=3)`)", "stamina"),
}

#: The sync forms' peers (``sync_peer_cases``), each around a plain function.
SYNC_PEERS: dict[str, tuple[str, str]] = {
    "purgatory_sync": (
        'bare purgatory sync breaker (`with get_breaker("k"): fn()`)',
        "purgatory",
    ),
    "tenacity_sync": (
        "tenacity on a `def` (`@tenacity.retry(stop=stop_after_attempt(3))`)",
        "tenacity",
    ),
    "stamina_sync": ("stamina on a `def` (`@stamina.retry(on=Exception, attempts=3)`)", "stamina"),
}

#: The figures issue 16 quotes for each peer (µs added per successful call, on some
#: host at some hour), beside its 2 µs target for ``sw.call``.
ISSUE_US: dict[str, float] = {"purgatory": 2.0, "tenacity": 52.0, "stamina": 35.0}

#: Each round gives the retry libraries a tenth of the calls: at 50-80 µs a call, the
#: full count would make them most of the run's time (and ``make bench`` runs it twice).
CALLS_DIVISOR: dict[str, int] = {
    "tenacity": 10,
    "stamina": 10,
    "tenacity_sync": 10,
    "stamina_sync": 10,
}

Case = Callable[[int], Coroutine[Any, Any, None]]


def missing_note(name: str) -> str:
    """What the table says instead of a peer's row when its module is not importable."""
    module = {**PEERS, **SYNC_PEERS}[name][1]
    return (
        f"{module} is not installed, so its row is left out "
        "(`pip install -e '.[bench]'` installs every peer)."
    )


def _purgatory(fn: Callable[[], Awaitable[object]]) -> Case:
    from purgatory import AsyncCircuitBreakerFactory

    factory = AsyncCircuitBreakerFactory(default_threshold=5, default_ttl=2)

    async def purgatory(n: int) -> None:
        for _ in range(n):
            async with await factory.get_breaker("k"):
                await fn()

    return purgatory


def _tenacity(fn: Callable[[], Awaitable[object]]) -> Case:
    import tenacity

    retried = tenacity.retry(stop=tenacity.stop_after_attempt(3))(fn)

    async def tenacity_case(n: int) -> None:
        for _ in range(n):
            await retried()

    return tenacity_case


def _stamina_checked() -> Any:
    import stamina

    # In test mode stamina caps the attempts and waits nothing, and when inactive
    # it calls the function bare: either would measure less than a user's call.
    if stamina.is_testing() or not stamina.is_active():
        raise RuntimeError(
            "stamina is in test mode or inactive in this process: "
            "call stamina.set_testing(False) and stamina.set_active(True) first"
        )
    return stamina


def _stamina(fn: Callable[[], Awaitable[object]]) -> Case:
    stamina = _stamina_checked()
    retried = stamina.retry(on=Exception, attempts=3)(fn)

    async def stamina_case(n: int) -> None:
        for _ in range(n):
            await retried()

    return stamina_case


_BUILDERS: dict[str, Callable[[Callable[[], Awaitable[object]]], Case]] = {
    "purgatory": _purgatory,
    "tenacity": _tenacity,
    "stamina": _stamina,
}


def peer_cases(fn: Callable[[], Awaitable[object]]) -> dict[str, Case]:
    """Each importable peer's case around ``fn``, in ``PEERS`` order."""
    cases: dict[str, Case] = {}
    for name in PEERS:
        try:
            cases[name] = _BUILDERS[name](fn)
        except ImportError:
            continue  # optional: left out, and missing_note() says so
    return cases


def _purgatory_sync(fn: Callable[[], object]) -> Case:
    from purgatory import SyncCircuitBreakerFactory

    factory = SyncCircuitBreakerFactory(default_threshold=5, default_ttl=2)

    async def purgatory_sync(n: int) -> None:
        for _ in range(n):
            with factory.get_breaker("k"):
                fn()

    return purgatory_sync


def _tenacity_sync(fn: Callable[[], object]) -> Case:
    import tenacity

    retried = tenacity.retry(stop=tenacity.stop_after_attempt(3))(fn)

    async def tenacity_sync(n: int) -> None:
        for _ in range(n):
            retried()

    return tenacity_sync


def _stamina_sync(fn: Callable[[], object]) -> Case:
    retried = _stamina_checked().retry(on=Exception, attempts=3)(fn)

    async def stamina_sync(n: int) -> None:
        for _ in range(n):
            retried()

    return stamina_sync


_SYNC_BUILDERS: dict[str, Callable[[Callable[[], object]], Case]] = {
    "purgatory_sync": _purgatory_sync,
    "tenacity_sync": _tenacity_sync,
    "stamina_sync": _stamina_sync,
}


def sync_peer_cases(fn: Callable[[], object]) -> dict[str, Case]:
    """Each importable sync peer's case around the plain function ``fn`` (``SYNC_PEERS``).

    Each case is a coroutine function like the async ones (so the drivers stay one),
    whose loop calls the plain function through the peer and never awaits."""
    cases: dict[str, Case] = {}
    for name in SYNC_PEERS:
        try:
            cases[name] = _SYNC_BUILDERS[name](fn)
        except ImportError:
            continue  # optional: left out, and missing_note() says so
    return cases
