"""``sw.costs()`` while sync threads add up what their calls cost.

The sync httpx transport counts a call's cost on the caller's thread; a report
read meanwhile on another thread iterated the tracker's dicts as they grew, and
raised ``RuntimeError: dictionary changed size during iteration``.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Iterator

import pytest

import seawall
from seawall.llm.usage import Usage


@pytest.fixture
def switching_often() -> Iterator[None]:
    """Threads switch every microsecond: a race shows within a second, not by luck. And a
    garbage collection lets another thread in (as a finalizer's Python code does in a
    real process), often: a copy made in C is not atomic then (CI at 09be80d)."""
    before = sys.getswitchinterval()
    thresholds = gc.get_threshold()

    def let_others_in(_phase: str, _info: object) -> None:
        time.sleep(0)

    sys.setswitchinterval(1e-6)
    gc.set_threshold(5)
    gc.callbacks.append(let_others_in)
    yield
    gc.callbacks.remove(let_others_in)
    gc.set_threshold(*thresholds)
    sys.setswitchinterval(before)


@pytest.mark.usefixtures("switching_often")
def test_a_report_read_while_threads_count_costs_never_raises() -> None:
    sw = seawall.Seawall(entrypoints=False)
    stop = threading.Event()

    def count() -> None:
        for i in range(1_000_000):  # bounded; stopped long before
            if stop.is_set():
                return
            usage = Usage(
                model=f"gpt-{i % 7}",
                provider="openai",
                flavor="chat",
                input_tokens=1,
                output_tokens=1,
            )
            sw.cost_tracker.record(f"https://api{i % 2000}.example", usage)

    thread = threading.Thread(target=count)
    thread.start()
    errors: list[BaseException] = []
    reports = 0
    try:
        until = time.monotonic() + 1.0
        while time.monotonic() < until and reports < 100_000:
            try:
                sw.costs()
            except RuntimeError as exc:  # the race, before
                errors.append(exc)
            reports += 1
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert not errors, errors[:1]
    assert len(sw.costs()["keys"]) >= 7  # the thread did count (each key a priced call)
