"""The fleet's learnt rate against a real redis-server, on a standing whole-seconds limit.

Every 429 under the fleet's pace pauses the whole fleet for its ``Retry-After``
(a second at least, when the upstream says only whole seconds): a fleet rate that
goes on probing upward a few seconds after each cut, or comes down from a rate
far too high by 10 % per pause, spends much of its time paused. Two rules here:

- after a cut (or a bound) the rate rises back to its plateau and *holds* it for
  ``RATE_HOLD_MS`` (``HOLD``, as in one process) before it probes upward;
- a new overshoot while the rate still rises back from the last cut says that
  cut did not bring it under the limit: the rate stays at the new cut (no
  plateau above it), the next such cut in a row goes to ``RATE_AGAIN_CUT`` of
  the rate, and each counts as a miss of the early probe (its backoff grows).

As in ``test_fleet_probe``, a test ages the shared state instead of sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from seawall.fleet import store as fleet_store
from seawall.fleet.parts import FLEET_CUT
from tests._redis import RedisServer, redis_server
from tests.test_fleet import step
from tests.test_fleet_probe import LEVEL, Fleet2

#: Spelt out (``seawall.fleet.scripts``), so that this module runs against code without them.
HOLD_S = 15.0
AGAIN_CUT = 0.75

#: Seconds by which a test moves the last cut back so that Redis takes the next one: the
#: fleet's cuts are spaced 5 refreshes apart (25 s with ``Member``'s 5 s refresh).
SPACED = 30.0


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    srv = redis_server()
    yield srv
    srv.kill()


@pytest.fixture(autouse=True)
def _read_idle_keys_every_round(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fleet_store, "IDLE_EVERY", 1)


@pytest.fixture
async def fleet(server: RedisServer) -> AsyncIterator[Fleet2]:
    made = Fleet2(server.url)
    yield made
    await made.aclose()


async def shared_rate(fleet: Fleet2) -> float:
    """The fleet's rate now, as both members read it in a round."""
    await step(fleet.members)
    rates = [fleet.cooldown(m).shared for m in fleet.members]
    assert rates[0] is not None
    assert rates[1] is not None
    assert rates[0][0] == pytest.approx(rates[1][0], rel=0.001)
    return rates[0][0]


async def test_the_rate_holds_its_plateau_after_a_cut_then_probes_slowly(fleet: Fleet2) -> None:
    """Not a step upward for ``HOLD`` s after the last cut or bound; then slowly upward."""
    await fleet.paced()  # a 10 ms wait: the fleet's rate is 97/s
    await fleet.age(4.0)
    assert await shared_rate(fleet) == pytest.approx(LEVEL, rel=0.001)
    await fleet.age(HOLD_S - 4.0 - 1.0)  # 14 s after the bound: still held
    assert await shared_rate(fleet) == pytest.approx(LEVEL, rel=0.001)
    await fleet.age(9.0)  # 23 s: up, slowly (doubling in 60 s from the end of the hold)
    grown = await shared_rate(fleet)
    assert LEVEL * 1.05 < grown < LEVEL * 2 ** (8.5 / 60)


async def test_a_new_overshoot_while_rising_back_stays_cut_and_the_next_goes_deeper(
    fleet: Fleet2,
) -> None:
    """A cut that did not get under the limit is no plateau to rise back to."""
    await fleet.paced()
    await fleet.age(4.0)  # risen, held at 97/s
    await fleet.age(SPACED, "cut")
    a, b = fleet.cooldown(fleet.a), fleet.cooldown(fleet.b)
    fleet.clocks[0].advance(2.0)
    a.start(1.0)  # a 429 at the plateau: a dip back to it (the host's jitter, once)
    await step(fleet.members)
    stored = await fleet.rate()
    assert stored["r"] == pytest.approx(FLEET_CUT * LEVEL, rel=0.001)
    assert stored["w"] == pytest.approx(LEVEL, rel=0.001)
    await fleet.age(1.0)  # a second later, still rising back: the overshoot again
    await fleet.age(SPACED, "cut")
    rising = await shared_rate(fleet)
    assert FLEET_CUT * LEVEL < rising < LEVEL
    fleet.clocks[1].advance(2.0)
    b.start(1.0)
    await step(fleet.members)
    stored = await fleet.rate()
    cut = FLEET_CUT * rising
    assert stored["r"] == pytest.approx(cut, rel=0.01)
    assert stored["w"] == stored["r"]  # no rise back to the plateau that did not fit
    assert stored["q"] == 1  # an early probe waits longer: 4 s after this cut
    assert stored["x"] - stored["cut"] == 4000
    await fleet.age(1.0)
    assert await shared_rate(fleet) == pytest.approx(cut, rel=0.01)  # flat, not rising
    await fleet.age(SPACED, "cut")
    fleet.clocks[0].advance(2.0)
    a.start(1.0)  # the second in a row: deeper
    await step(fleet.members)
    stored = await fleet.rate()
    assert stored["r"] == pytest.approx(AGAIN_CUT * cut, rel=0.01)
    assert stored["w"] == stored["r"]
    assert stored["q"] == 2
    assert stored["x"] - stored["cut"] == HOLD_S * 1000  # 16 s, capped at HOLD


async def test_a_429_of_the_same_overshoot_is_no_new_one(fleet: Fleet2) -> None:
    """A 429 under ``RATE_AGAIN_MS`` after a cut (an answer to a send at the old rate; with
    the default refresh the fleet's cut spacing already ignores it) lowers the plateau as
    before, and is not taken for a new overshoot."""
    link = fleet.a.store.link
    keys = [fleet.key[: -len("r")] + part for part in "bvcr"]

    async def rate(value: float, *, bound: bool = False) -> dict[str, float]:
        # rate, doubling, ttl, no spacing of cuts, bound, rise 3 s, plateau 0.97 (outbox.py's)
        args = ["n", round(value * 1000), 60_000, 10_000, 0, int(bound), 3000, 970]
        await link.run([("RATE", keys, args)])
        return await fleet.rate()

    assert (await rate(97.0, bound=True))["w"] == 97.0
    await fleet.age(4.0)  # risen back
    stored = await rate(87.3)  # a dip
    assert stored["w"] == 97.0
    await fleet.age(0.3)
    stored = await rate(80.0)
    assert stored["r"] == 80.0
    assert stored["w"] > stored["r"]  # it rises back to a plateau
    assert stored.get("q", 0) == 0  # and delays no early probe
