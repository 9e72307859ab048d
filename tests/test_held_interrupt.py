"""A held thread interrupted (fix/heldint): Ctrl-C reaches the main thread while a sync
form (``sw.call_sync``, ``@sw.protect`` on a ``def``, ``with sw.breaker(key):``) holds
it for another thread's probe verdict (``hold.held_thread``).

Real signals: ``signal.pthread_kill`` of SIGINT to the main thread (pytest runs tests
there) once it is blocked in the hold, and in one test a child process sent SIGINT as a
terminal's Ctrl-C is (to the process, not a thread). The probe is another thread's call,
gated by the test. The holds are 30 s on the real clock (``time.monotonic``, on which a
held thread blocks in one wait instead of looking at an injected clock every 20 ms): an
interrupt that waited for the hold to end would take 30 s. No sleeps wait for state: a
bounded poll of a condition another thread brings about (``_until``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import seawall
from seawall._path import hold
from seawall.breaker import Breaker, BreakerState
from tests._helpers import Clock

from .test_sync_wait import KEY, Probe, _breaker, _in_thread, _until

HOLD = 30.0  # seconds held for a verdict, on the real clock
PROMPT = 5.0  # an interrupt felt within this is not one that waited for the hold to end


@pytest.fixture(autouse=True)
def _ctrl_c() -> Iterator[None]:
    """Ctrl-C's default handler (``KeyboardInterrupt`` in the main thread) for the test,
    whatever this process inherited: a shell starts a background job (``make test &``)
    with SIGINT ignored, and Python keeps ignoring it."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def _real_sw(
    *,
    hold_max_calls: int = 100,
    plugins: list[object] | None = None,
    clock: Clock | None = None,
    attempt: float | None = 60.0,
) -> seawall.Seawall:
    """One attempt a call (``attempt``: its time limit, which a thread's probe keeps its
    turn for); the breaker opens on one failed call and holds calls for a probe's verdict
    up to ``HOLD`` seconds. On the real clock it lets a probe go at once; on ``clock``
    (a test clock, moved by hand) after 8-10 s."""
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=1),
        breaker=seawall.BreakerPolicy(
            failure_threshold=1,
            recovery_timeout=0.0 if clock is None else 10.0,
            hold=HOLD,
            hold_max_calls=hold_max_calls,
        ),
        timeout=seawall.TimeoutPolicy(attempt=attempt, deadline=None),
    )
    if clock is None:
        return seawall.Seawall(policy, entrypoints=False, plugins=plugins or ())
    return seawall.Seawall(
        policy, entrypoints=False, plugins=plugins or (), clock=clock, sleep=clock.sleep
    )


def _down() -> str:
    raise ConnectionError("refused")


def _probing(sw: seawall.Seawall) -> tuple[Probe, threading.Thread, list[object]]:
    """Open the key (one failed call) and start a thread's probe, which waits for the
    test's answer; the breaker is half-open with its one probe out."""
    with pytest.raises(ConnectionError):
        sw.call_sync(_down, key=KEY)
    probe = Probe()
    thread, ended = _in_thread(lambda: sw.call_sync(probe, key=KEY))
    assert probe.started.wait(30)
    assert _breaker(sw).state is BreakerState.HALF_OPEN
    return probe, thread, ended


def _blocked(breaker: Breaker, count: int) -> bool:
    """``count`` calls are held and each is blocked in its wait. ``breaker.held`` counts
    a call from when it joins the queue, a few bytecodes before its thread blocks on
    the waiter's event; the tests interrupt the wait itself, so they look for the
    blocked thread on the event's condition (CPython's ``threading``)."""
    held = breaker._held
    if held is None or breaker.held != count:
        return False
    return all(waiter._event._cond._waiters for _, waiter in held.queue)  # type: ignore[union-attr]


def _interrupt_when_blocked(breaker: Breaker) -> list[float]:
    """A thread that sends SIGINT to the main thread once it is blocked in the hold; the
    time it sent it (``time.monotonic``), once sent."""
    sent: list[float] = []
    main = threading.main_thread().ident
    assert main is not None

    def send() -> None:
        _until(lambda: _blocked(breaker, 1))
        sent.append(time.monotonic())
        signal.pthread_kill(main, signal.SIGINT)

    threading.Thread(target=send, daemon=True).start()
    return sent


def _call_sync(sw: seawall.Seawall) -> object:
    return sw.call_sync(lambda: "up", key=KEY)


def _protected(sw: seawall.Seawall) -> object:
    @sw.protect(key=KEY)
    def fetch() -> str:
        return "up"

    return fetch()


def _guarded(sw: seawall.Seawall) -> object:
    with sw.breaker(KEY):
        return "up"


FORMS: dict[str, Callable[[seawall.Seawall], object]] = {
    "call_sync": _call_sync,
    "protect": _protected,
    "breaker_guard": _guarded,
}


def _held_and_interrupted(sw: seawall.Seawall, form: Callable[[seawall.Seawall], object]) -> None:
    """``form`` in the main thread, held for the probe's verdict, gets SIGINT: the
    ``KeyboardInterrupt`` comes out of the hold at once, not when the hold ends."""
    breaker = _breaker(sw)
    sent = _interrupt_when_blocked(breaker)
    with pytest.raises(KeyboardInterrupt):
        form(sw)
    felt = time.monotonic()
    assert len(sent) == 1
    assert felt - sent[0] < PROMPT
    assert breaker.held == 0  # its place in the queue is given back


# --- 1. the verdict after the interrupt ---------------------------------------------------


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_an_interrupted_held_thread_frees_its_place_and_the_success_releases_the_others(
    form: Callable[[seawall.Seawall], object],
) -> None:
    """The main thread, held (hold_max_calls=2) for another thread's probe, is
    interrupted: KeyboardInterrupt at once, its place free. Two other threads are then
    held (the cap, not one less), a third is refused at once; the probe succeeds and
    releases both. The interrupted call is counted neither as a failure nor a rejection."""
    sw = _real_sw(hold_max_calls=2)
    probe, probe_thread, probed = _probing(sw)
    breaker = _breaker(sw)
    _held_and_interrupted(sw, form)
    assert breaker.state is BreakerState.HALF_OPEN
    others = [_in_thread(lambda: form(sw)) for _ in range(2)]
    _until(lambda: breaker.held == 2)
    with pytest.raises(seawall.CircuitOpenError):  # the cap holds: a third is not held
        form(sw)
    probe.answer()
    probe_thread.join(30)
    for thread, _ in others:
        thread.join(30)
    assert probed == ["probe"]
    assert [ended for _, ended in others] == [["up"], ["up"]]
    books = sw.health()["keys"][KEY]
    assert books["state"] == "closed"
    assert books["failures"] == {"network": 1}  # the opening call's only
    assert books["rejections"] == {"breaker": 1}  # the third caller
    assert books["held"] == 0
    assert books["held_total"] == 3


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_an_interrupted_held_thread_leaves_the_probes_failure_to_fail_the_others(
    form: Callable[[seawall.Seawall], object],
) -> None:
    """As above, the probe failing: the thread held beside the interrupted one fails with
    CircuitOpenError at the verdict, the breaker opens again, and the only failures
    counted are the upstream's (the opening call, the probe)."""
    sw = _real_sw()
    probe, probe_thread, _ = _probing(sw)
    breaker = _breaker(sw)
    _held_and_interrupted(sw, form)
    other, ended = _in_thread(lambda: form(sw))
    _until(lambda: breaker.held == 1)
    probe.answer(fail=True)
    probe_thread.join(30)
    other.join(30)
    assert len(ended) == 1
    assert isinstance(ended[0], seawall.CircuitOpenError)
    books = sw.health()["keys"][KEY]
    assert books["state"] == "open"
    assert books["failures"] == {"network": 2}
    assert books["held"] == 0


def test_no_probe_turn_is_lost_when_the_interrupted_thread_was_the_only_one_held() -> None:
    """The interrupted thread was the only caller waiting: the probe's success closes the
    breaker and the next call goes at once (no ramp turn booked for the one that left)."""
    sw = _real_sw()
    probe, probe_thread, probed = _probing(sw)
    _held_and_interrupted(sw, _call_sync)
    probe.answer()
    probe_thread.join(30)
    assert probed == ["probe"]
    breaker = _breaker(sw)
    assert breaker.state is BreakerState.CLOSED
    assert not breaker.ramp_until
    assert _call_sync(sw) == "up"


def test_an_interrupt_between_joining_the_queue_and_blocking_leaves_no_place_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C lands after the thread joined the key's queue of held calls and before it
    blocks (it reads the real clock there for its wake-up time): it left its place
    behind, counted against hold_max_calls until its hold ran out (30 s), and a verdict
    would have answered it (a ramp turn booked for nobody). Now the place is freed."""
    sw = _real_sw(hold_max_calls=1)
    probe, probe_thread, _ = _probing(sw)
    breaker = _breaker(sw)
    armed = [True]

    def monotonic() -> float:
        queued = breaker._held is not None and len(breaker._held.queue) == 1
        if armed[0] and queued and threading.current_thread() is threading.main_thread():
            armed[0] = False
            signal.raise_signal(signal.SIGINT)
        return time.monotonic()

    monkeypatch.setattr(hold, "_monotonic", monotonic)
    with pytest.raises(KeyboardInterrupt):
        _call_sync(sw)
    assert not armed[0]
    assert breaker.held == 0
    other, ended = _in_thread(lambda: _call_sync(sw))  # the one place is free
    _until(lambda: breaker.held == 1)
    probe.answer()
    probe_thread.join(30)
    other.join(30)
    assert ended == ["up"]
    assert sw.health()["keys"][KEY]["rejections"] == {}


# --- 2. interrupted as it takes the probe over ----------------------------------------------


class _CtrlCOnHalfOpen:
    """A plugin that, told in the main thread that the breaker went half-open, gets
    Ctrl-C there and then (a real SIGINT, raised by the process to itself): the user's
    interrupt landing while seawall tells its observers (a log handler writing to a slow
    terminal, an event hook), once."""

    def __init__(self) -> None:
        self.armed = False
        self.told: list[str] = []

    @seawall.hookimpl
    def seawall_event(self, event: object) -> None:
        if getattr(event, "new", None) != "half_open" or not self.armed:
            return
        if threading.current_thread() is threading.main_thread():
            self.armed = False
            self.told.append("half_open")
            signal.raise_signal(signal.SIGINT)


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_a_held_thread_interrupted_as_it_becomes_the_probe_gives_the_probes_turn_back(
    form: Callable[[seawall.Seawall], object],
) -> None:
    """The main thread, held while the breaker is open, wakes when the probe is due and
    takes the probe's turn itself; the breaker's move to half-open is told to the
    observers before the call goes, and Ctrl-C lands there. The turn went nowhere: the
    key stayed half-open with its one probe out for good (``Breaker.admit`` refused every
    later caller, held each for a verdict that could not come). Now it is given back:
    the next call is the probe and closes the breaker."""
    clock = Clock()
    plugin = _CtrlCOnHalfOpen()
    sw = _real_sw(clock=clock, plugins=[plugin])
    with pytest.raises(ConnectionError):
        sw.call_sync(_down, key=KEY)
    breaker = _breaker(sw)
    assert breaker.state is BreakerState.OPEN

    def due() -> None:
        _until(lambda: breaker.held == 1)
        clock.advance(11.0)  # past the recovery timeout (jittered down, never up)

    threading.Thread(target=due, daemon=True).start()
    plugin.armed = True
    with pytest.raises(KeyboardInterrupt):
        form(sw)
    assert plugin.told == ["half_open"]
    _the_next_call_probes(sw, clock)


def _the_next_call_probes(sw: seawall.Seawall, clock: Clock) -> None:
    """After an interrupt the breaker is half-open with no probe out: the next call is
    the probe and closes it (bounded: held instead, it is let fail at its hold's end),
    and nothing is left counted in flight."""
    breaker = _breaker(sw)
    assert breaker.state is BreakerState.HALF_OPEN
    after, ended = _in_thread(lambda: _call_sync(sw))
    _until(lambda: bool(ended) or breaker.held == 1)
    if not ended:
        clock.advance(HOLD + 1.0)
    after.join(30)
    assert ended == ["up"]
    books = sw.health()["keys"][KEY]
    assert books["state"] == "closed"
    assert books["failures"] == {"network": 1}
    assert sw.registry.call_route(KEY, None).state.cooldown.inflight == 0  # type: ignore[union-attr]


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_a_thread_interrupted_as_it_is_told_it_is_the_probe_gives_the_turn_back(
    form: Callable[[seawall.Seawall], object],
) -> None:
    """Not held: the thread arrives when the probe is due and is let in as the probe at
    once; Ctrl-C lands as the move to half-open is told, after its permit was counted
    in flight and before the attempt runs. With no attempt limit (a thread's probe is
    then not lent: it keeps its turn until it ends) the key stayed half-open with its
    one probe out for good, and one attempt counted in flight; with a limit, until the
    limit. Now the permit goes back: the next call probes."""
    clock = Clock()
    plugin = _CtrlCOnHalfOpen()
    sw = _real_sw(clock=clock, plugins=[plugin], attempt=None)
    with pytest.raises(ConnectionError):
        sw.call_sync(_down, key=KEY)
    clock.advance(11.0)  # the probe is due
    plugin.armed = True
    with pytest.raises(KeyboardInterrupt):
        form(sw)
    assert plugin.told == ["half_open"]
    _the_next_call_probes(sw, clock)


# --- 3. Ctrl-C at a terminal: the signal goes to the process --------------------------------

_CHILD = textwrap.dedent(
    """
    import json, signal, sys, threading, time
    import seawall

    signal.signal(signal.SIGINT, signal.default_int_handler)
    KEY = "k"
    policy = seawall.Policy(
        retry=seawall.RetryPolicy(max_attempts=1),
        breaker=seawall.BreakerPolicy(
            failure_threshold=1, recovery_timeout=0.0, hold=30.0, hold_max_calls=1
        ),
        timeout=seawall.TimeoutPolicy(attempt=60.0, deadline=None),
    )
    sw = seawall.Seawall(policy, entrypoints=False)

    def down():
        raise ConnectionError("refused")

    try:
        sw.call_sync(down, key=KEY)
    except ConnectionError:
        pass
    breaker = sw.registry.call_route(KEY, None).state.breaker
    started, go = threading.Event(), threading.Event()

    def probe():
        started.set()
        go.wait(60)
        return "probe"

    probed = []
    prober = threading.Thread(target=lambda: probed.append(sw.call_sync(probe, key=KEY)))
    prober.start()
    started.wait(60)

    def blocked():
        held = breaker._held
        return breaker.held == 1 and all(w._event._cond._waiters for _, w in held.queue)

    def tell():
        end = time.monotonic() + 30
        while not blocked() and time.monotonic() < end:
            threading.Event().wait(0.001)
        print("held", flush=True)

    threading.Thread(target=tell, daemon=True).start()
    t0 = time.monotonic()
    try:
        sw.call_sync(lambda: "up", key=KEY)
        outcome = "not interrupted"
    except KeyboardInterrupt:
        outcome = "interrupted"
    waited = time.monotonic() - t0
    held_after = breaker.held
    other = []
    helper = threading.Thread(target=lambda: other.append(sw.call_sync(lambda: "up", key=KEY)))
    helper.start()
    end = time.monotonic() + 30
    while breaker.held != 1 and time.monotonic() < end:  # the one place (hold_max_calls=1)
        threading.Event().wait(0.001)
    go.set()
    prober.join(60)
    helper.join(60)
    books = sw.health()["keys"][KEY]
    print(json.dumps({
        "outcome": outcome, "waited": waited, "held_after": held_after, "probed": probed,
        "other": other, "state": books["state"], "failures": books["failures"],
    }), flush=True)
    """
)


def test_ctrl_c_sent_to_the_process_ends_the_hold_of_its_main_thread() -> None:
    """A terminal's Ctrl-C is sent to the process, not to a thread (Linux hands it to the
    main thread unless that thread blocks it): a child whose main thread is held (30 s,
    hold_max_calls=1) while its probe thread waits gets SIGINT by ``os.kill`` once it
    says so. The main thread gets KeyboardInterrupt well before the hold's end, its
    place is free for another thread, which the probe's success then releases."""
    with subprocess.Popen(
        [sys.executable, "-c", _CHILD],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "held\n"
            os.kill(child.pid, signal.SIGINT)
            out, err = child.communicate(timeout=60)
        finally:
            if child.poll() is None:  # bounded: a child that hangs is ended here
                child.kill()
    assert (child.returncode, err) == (0, "")
    seen = json.loads(out)
    assert seen.pop("waited") < PROMPT
    assert seen == {
        "outcome": "interrupted",
        "held_after": 0,
        "probed": ["probe"],
        "other": ["up"],
        "state": "closed",
        "failures": {"network": 1},
    }
