"""The retry budget's accounting on an injected clock: deposits, withdrawals, the window."""

from __future__ import annotations

from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seawall
from seawall.budget import RetryBudget


class Clock:
    def __init__(self, now: float = 500.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _budget(clock: Clock, **settings: object) -> RetryBudget:
    defaults: dict[str, object] = {"ratio": 0.5, "min_retries_per_second": 0.0, "window": 10.0}
    return RetryBudget(seawall.BudgetPolicy(**{**defaults, **settings}), clock)  # type: ignore[arg-type]


def _requests(budget: RetryBudget, clock: Clock, count: int) -> None:
    for _ in range(count):
        budget.on_request(clock.now)


def test_requests_in_the_newest_bucket_earn_at_once() -> None:
    """Each request deposits ``ratio`` tokens, counted as soon as it is made."""
    clock = Clock()
    budget = _budget(clock)
    assert budget.balance() == 0.0
    _requests(budget, clock, 4)
    assert budget.balance() == 2.0
    clock.now += 0.5  # still the same bucket
    _requests(budget, clock, 2)
    assert budget.balance() == 3.0


def test_the_floor_is_per_second_times_the_window() -> None:
    clock = Clock()
    budget = _budget(clock, ratio=0.0, min_retries_per_second=0.3, window=10.0)
    assert budget.balance() == pytest.approx(3.0)
    assert [budget.try_spend() for _ in range(4)] == [True, True, True, False]


def test_a_retry_withdraws_one_token_and_a_refusal_withdraws_none() -> None:
    clock = Clock()
    budget = _budget(clock, ratio=1.0)
    _requests(budget, clock, 2)
    assert budget.try_spend()
    assert budget.balance() == 1.0
    assert budget.try_spend()
    assert budget.balance() == 0.0
    assert not budget.try_spend()
    assert not budget.try_spend()
    assert budget.balance() == 0.0  # refusals cost nothing
    _requests(budget, clock, 1)
    assert budget.try_spend()  # one new request is enough again


def test_a_balance_just_below_one_refuses() -> None:
    clock = Clock()
    budget = _budget(clock, ratio=0.25)
    _requests(budget, clock, 3)  # 0.75 tokens
    assert not budget.try_spend()
    _requests(budget, clock, 1)  # exactly 1
    assert budget.try_spend()


def test_requests_advance_the_window_before_counting() -> None:
    """A request made in a later bucket lands in that bucket, not in a stale one.

    Nobody asks for the balance in between: the request alone moves the window.
    """
    clock = Clock(0.0)
    budget = _budget(clock, window=10.0)
    clock.now = 5.5
    _requests(budget, clock, 4)  # 2 tokens, in the bucket of second 5
    clock.now = 14.5  # second 5 is still inside the 10 s window
    assert budget.balance() == 2.0
    clock.now = 15.5  # now it is not
    assert budget.balance() == 0.0


def test_the_window_slides_bucket_by_bucket() -> None:
    """Deposits and withdrawals leave the window ``window`` seconds after their bucket."""
    clock = Clock(100.0)
    budget = _budget(clock, ratio=1.0, window=10.0)
    _requests(budget, clock, 4)
    assert budget.try_spend()
    clock.now = 103.0
    _requests(budget, clock, 2)
    assert budget.balance() == 5.0
    clock.now = 109.9
    assert budget.balance() == 5.0
    clock.now = 110.0  # the bucket of second 100 (4 requests, 1 retry) leaves
    assert budget.balance() == 2.0
    clock.now = 113.0
    assert budget.balance() == 0.0


def test_a_long_silence_empties_every_bucket() -> None:
    clock = Clock(100.0)
    budget = _budget(clock, ratio=1.0, window=1.0)
    _requests(budget, clock, 3)
    clock.now = 100.35
    _requests(budget, clock, 3)
    assert budget.balance() == 6.0
    clock.now = 1000.0  # far beyond the window, across many wraps of the buckets
    _requests(budget, clock, 1)
    assert budget.balance() == 1.0


def test_buckets_are_a_tenth_of_the_window() -> None:
    clock = Clock(0.0)
    budget = _budget(clock, ratio=1.0, window=2.0)  # buckets of 0.2 s
    _requests(budget, clock, 1)
    clock.now = 0.25
    _requests(budget, clock, 1)
    clock.now = 2.05  # the first bucket [0, 0.2) left at 2.0; the second stays until 2.2
    assert budget.balance() == 1.0
    clock.now = 2.2
    assert budget.balance() == 0.0


def test_a_disabled_budget_earns_nothing_but_never_refuses() -> None:
    clock = Clock()
    budget = _budget(clock, enabled=False, ratio=1.0, min_retries_per_second=0.2, window=10.0)
    _requests(budget, clock, 5)
    assert budget.balance() == 2.0  # the floor only
    assert all(budget.try_spend() for _ in range(10))
    assert budget.balance() == 2.0  # and nothing was withdrawn


def test_a_budget_made_at_time_zero_starts_empty() -> None:
    """A fresh budget holds nothing but its floor, even when the clock starts at 0."""
    clock = Clock(0.0)
    budget = _budget(clock, ratio=1.0)
    assert budget.balance() == 0.0
    assert not budget.try_spend()
    budget.on_request(0.0)
    clock.now = 1.5  # a bucket later: the request still counts
    assert budget.balance() == 1.0
    assert budget.try_spend()
    assert budget.balance() == 0.0


def test_a_request_exactly_on_a_bucket_edge_belongs_to_the_new_bucket() -> None:
    clock = Clock(0.0)
    budget = _budget(clock, ratio=1.0, window=10.0)
    clock.now = 1.0
    budget.on_request(1.0)  # the bucket [1, 2): it counts until 11
    clock.now = 10.5
    assert budget.balance() == 1.0
    clock.now = 11.0
    assert budget.balance() == 0.0


def test_a_bucket_is_exactly_a_tenth_of_the_window() -> None:
    clock = Clock(0.0)
    budget = _budget(clock, ratio=1.0, window=2.0)
    clock.now = 0.25
    budget.on_request(0.25)  # the bucket [0.2, 0.4): it counts until 2.2
    clock.now = 2.19
    assert budget.balance() == 1.0
    clock.now = 2.2
    assert budget.balance() == 0.0


def test_a_request_at_time_zero_counts_for_the_whole_window_and_no_longer() -> None:
    """From a budget made at 0, a request at 0 still counts at 0.95 x window, not at 1 x."""
    clock = Clock(0.0)
    budget = _budget(clock, ratio=1.0)
    budget.on_request(0.0)
    clock.now = 9.5
    assert budget.balance() == 1.0
    clock.now = 10.0
    assert budget.balance() == 0.0


# --- against a model: every request and retry with its time, nothing else -------------

_WIDTH_STEPS = st.sampled_from([0.0, 0.0, 0.1, 0.25, 0.999, 1.0, 1.5, 3.0, 9.0, 10.0, 25.0])
_OPS = st.lists(
    st.tuples(st.sampled_from(["request", "spend", "read", "read"]), _WIDTH_STEPS), max_size=60
)


class _Model:
    """The window by definition: what happened in the newest ten buckets of ``now``."""

    def __init__(self, width: float, ratio: float) -> None:
        self.width, self.ratio = width, ratio
        self.events: list[tuple[int, str]] = []  # (bucket, "request" | "retry")

    def counts(self, now: float) -> tuple[int, int]:
        newest = int(now / self.width)
        live = [kind for bucket, kind in self.events if bucket > newest - 10]
        return live.count("request"), live.count("retry")

    def spend(self, now: float) -> bool:
        requests, retries = self.counts(now)
        if requests * self.ratio - retries < 1.0:
            return False
        self.events.append((int(now / self.width), "retry"))
        return True


@given(ops=_OPS, window=st.sampled_from([1.0, 10.0, 30.0]), start=st.sampled_from([0.0, 7.3]))
@settings(max_examples=300, deadline=None)
def test_the_budget_counts_what_a_plain_list_of_events_would(
    ops: list[tuple[str, float]], window: float, start: float
) -> None:
    """Requests, retries and reads at any times: ``counts`` and ``try_spend`` agree with
    a list of every event and its bucket. Reads change nothing (``health()`` and the
    exporters read without the key's lock), and the requests counted apart from the
    buckets (``_pending``) are in the window exactly as long as their bucket."""
    clock = Clock(start)
    budget = _budget(clock, ratio=0.5, window=window)
    model = _Model(window / 10, 0.5)
    for kind, step in ops:
        clock.now += step * window / 10
        if kind == "request":
            budget.on_request(clock.now)
            model.events.append((int(clock.now / model.width), "request"))
        elif kind == "spend":
            assert budget.try_spend() == model.spend(clock.now)
        else:
            before = _fields(budget)
            assert budget.counts() == model.counts(clock.now)
            assert _fields(budget) == before  # a read writes nothing
    assert budget.counts() == model.counts(clock.now)


def _fields(budget: RetryBudget) -> list[object]:
    """Every field's value (the buckets copied: an array is changed in place)."""
    values = [getattr(budget, name) for name in RetryBudget.__slots__]
    return [value[:] if isinstance(value, array) else value for value in values]
