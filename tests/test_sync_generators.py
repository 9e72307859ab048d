"""A generator function (``def`` with ``yield``) under seawall's sync forms is refused with
what to do: its code runs only as it is iterated, after the protected call has returned it,
so seawall would count a success for every call and retry nothing; a failing upstream
would never open the breaker."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest

import seawall

from ._helpers import policy


def rows() -> Iterator[int]:
    yield 1
    raise ConnectionResetError("connection reset by peer")


class Feed:
    def rows(self) -> Iterator[int]:
        yield from rows()

    def __call__(self) -> Iterator[int]:
        yield from rows()


@pytest.mark.parametrize(
    "fn",
    [
        pytest.param(rows, id="function"),
        pytest.param(functools.partial(rows), id="partial"),
        pytest.param(Feed().rows, id="method"),
        pytest.param(Feed(), id="callable-object"),
    ],
)
def test_decorators_and_call_sync_refuse_a_generator_function(fn: object) -> None:
    sw = seawall.Seawall(policy(max_attempts=3, breaker=True), entrypoints=False)
    with pytest.raises(TypeError, match=r"generator function.*sw.attempts"):
        sw.protect(fn)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"generator function.*sw.attempts"):
        sw.protect(key="feed")(fn)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"generator function.*sw.attempts"):
        seawall.retry(fn)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"sw.call_sync cannot protect .*generator function"):
        sw.call_sync(fn)  # type: ignore[arg-type]
    assert sw.health()["keys"] == {}  # refused before any state was made


def test_a_staticmethod_generator_is_refused() -> None:
    sw = seawall.Seawall(entrypoints=False)
    with pytest.raises(TypeError, match="generator function"):

        class Source:
            @sw.protect
            @staticmethod
            def rows() -> Iterator[int]:
                yield 1


def test_the_function_that_consumes_it_is_protected() -> None:
    """What the error advises: the consumer is retried as a whole."""
    sw = seawall.Seawall(policy(max_attempts=3), entrypoints=False)
    tries = 0

    def flaky() -> Iterator[int]:
        nonlocal tries
        tries += 1
        yield 1
        if tries < 2:
            raise ConnectionResetError("connection reset by peer")
        yield 2

    @sw.protect
    def read_all() -> list[int]:
        return list(flaky())

    assert read_all() == [1, 2]
    assert tries == 2
