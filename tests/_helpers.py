"""Small plugins tests register to watch what seawall does, and a clock tests move by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import seawall
from seawall.events import Event


class Clock:
    """A monotonic clock that moves only when told (at 1000 s, so times are exact); its
    ``sleep`` (for ``Seawall(sleep=...)``) moves it too, and records each sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Recorder:
    """Records every event and incident, and every outcome classified."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.incidents: list[seawall.Incident] = []
        self.outcomes: list[seawall.Outcome] = []

    @seawall.hookimpl
    def seawall_event(self, event: Event) -> None:
        self.events.append(event)

    @seawall.hookimpl
    def seawall_escalate(self, incident: seawall.Incident) -> None:
        self.incidents.append(incident)

    @seawall.hookimpl(tryfirst=True)
    def seawall_classify(self, outcome: seawall.Outcome) -> None:
        self.outcomes.append(outcome)

    def of(self, kind: str) -> list[Any]:
        """The events of one kind (``attempt``, ``retry``, ``call``, ...)."""
        return [e for e in self.events if e.kind == kind]

    def delays(self) -> list[tuple[float, str]]:
        """(delay, reason) of each scheduled retry that was not a cooldown wait."""
        return [(e.delay, e.reason) for e in self.of("retry") if e.reason != "cooldown"]


def policy(
    *,
    breaker: bool = False,
    budget: bool = False,
    **retry: Any,
) -> seawall.Policy:
    """A policy with ``retry`` settings; breaker and budget off unless asked for."""
    return seawall.Policy(
        retry=seawall.RetryPolicy(**retry),
        breaker=seawall.BreakerPolicy(enabled=breaker),
        budget=seawall.BudgetPolicy(enabled=budget),
    )


def opens_after_two() -> seawall.Policy:
    """One attempt a call, no budget, and a breaker that opens after two failed calls."""
    return seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=1),
        # probe_share=0: the third call is refused at once, however slow the host.
        breaker=seawall.BreakerPolicy(
            failure_threshold=2, minimum_calls=2, window=2, probe_share=0
        ),
        budget=seawall.BudgetPolicy(enabled=False),
    )


def pip_install_target(source: Path, target: Path) -> None:
    """``pip install --no-deps --target target source``, as a real user install would."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    subprocess.run(
        [*command, "--target", str(target), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
