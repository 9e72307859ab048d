"""``FleetStore``: per-key state shared by a fleet of processes through Redis.

Decisions stay local: every call reads this process's ``KeyState`` as with
``LocalStore``, and the success path of an idle key makes no round trip.
One background task per store links the local view with Redis every
``refresh`` seconds, in one pipelined round trip: it publishes what changed
here (a breaker opened or closed, a 429's wait) and reads what changed
elsewhere. ``docs/fleet.md`` has the rules; in short:

- a process whose breaker opens *votes*; the fleet is open when votes of at
  least ``QUORUM`` processes are live. A closed process adopts the fleet's
  open when the fleet is open, or when one other process voted and it has
  failures of its own (the partition guard: one process cut off from an
  upstream that is fine for the rest cannot open everyone's breaker);
- an open breaker probes only when it wins the fleet's probe lease (one per
  recovery interval for the whole fleet); a probe that succeeds closes the
  fleet, and every process adopts the close;
- a 429's wait is shared: every process waits until the latest end;
- Redis slow or gone: a breaker of seawall's own around the link opens on
  the first failed round trip, and every key runs on in-process state
  (``health().state == "local-fallback"``); when a retry succeeds the store
  publishes its open breakers again and reads the fleet's state.

The parts' news waits in the ``Outbox`` (``seawall.fleet.outbox``, with the
constants the writes carry) until a round publishes it; the round trips and
their books are ``Rounds``' (``seawall.fleet.rounds``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

from seawall.breaker import BreakerState, Transition
from seawall.fleet.outbox import QUORUM, RATE_DOUBLING, RATE_RISE, RATE_TTL, Call, Outbox, ms
from seawall.fleet.pacing import FleetCooldown
from seawall.fleet.parts import FleetBreaker
from seawall.fleet.repair import BadReply, Repairs
from seawall.fleet.rounds import Rounds
from seawall.fleet.schedule import IDLE_EVERY, ReadSchedule, urgent
from seawall.fleet.totals import COSTS_EVERY, COSTS_TTL, CostExchange, FleetBudget, merge
from seawall.policy import Policy
from seawall.reports import CostReport
from seawall.state import KeyState

__all__ = [
    "COSTS_EVERY",
    "COSTS_TTL",
    "HOLD",
    "IDLE_EVERY",
    "MEMBER_TTL",
    "QUORUM",
    "FleetStore",
]

#: Seconds a process stays a pacing member of a key after its last turn asked for.
MEMBER_TTL = 2.0

#: Seconds a breaker awaiting the lease waits for the store before it may probe on its own
#: (only matters if the store's task stalls without noticing Redis is gone; every round
#: renews it, and a loop stalled for a second must not let callers probe on their own).
HOLD = 5.0

#: Seconds a probe lease lasts in Redis beyond the recovery interval: the time news of the
#: probe's send (which restarts the interval from the send) has to reach Redis.
LEASE_SLACK = 0.5

#: Values in a ``READ`` reply (``seawall.fleet.scripts``; an older script's lacks the last).
_READ_REPLY = 12

_CLOSED = BreakerState.CLOSED
_OPEN = BreakerState.OPEN
_HALF_OPEN = BreakerState.HALF_OPEN


class FleetStore(Rounds):
    """Hands out fleet members' states and keeps them in step with Redis (see the module)."""

    def __init__(
        self,
        target: object,
        clock: Callable[[], float],
        on_transition: Callable[[Transition], None],
        *,
        prefix: str = "seawall",
        timeout: float = 0.05,
        refresh: float = 0.1,
    ) -> None:
        if not prefix or "{" in prefix or "}" in prefix:
            msg = f"FleetStore(prefix={prefix!r}): give a non-empty prefix without braces"
            raise ValueError(msg)
        super().__init__(target, clock, timeout=timeout, refresh=refresh)
        self.on_transition = on_transition
        self.prefix = prefix
        #: This process in the fleet's votes and leases.
        self.node = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.states: dict[str, KeyState] = {}
        self.outbox = Outbox(self.node, self._keys)
        #: Falling back: when the paced keys stop holding the fleet's last rate.
        self._unpace_at: float | None = None
        #: Which keys each round reads (``seawall.fleet.schedule``): a bounded number.
        self.schedule = ReadSchedule()
        #: What ``sw.costs()`` says in this process (set by the engine); published for the fleet.
        self.cost_source: Callable[[], CostReport] | None = None
        #: The other processes' cost reports, as last read.
        self.exchange = CostExchange(f"{prefix}:{{costs}}", self.node)
        #: Keys whose crowded callers asked for an early probe since the last round.
        self._early: set[str] = set()
        #: Values in Redis seawall did not write, to repair (``seawall.fleet.repair``).
        self.repairs = Repairs(prefix, self._keys, self.log_limit, f"{prefix}:{{costs}}")

    # --- the StateStore seam ---------------------------------------------------

    def new_state(self, key: str, policy: Policy) -> KeyState:
        state = KeyState(key, policy, self.clock, self.on_transition)
        state.breaker = FleetBreaker(
            key, policy.breaker, self.clock, self.on_transition, self, calls=state
        )
        state.cooldown = FleetCooldown(key, self.clock, policy.retry.retry_after_max, self)
        state.budget = FleetBudget(policy.budget, self.clock)
        self.schedule.track(state)  # (its counters note its calls: read at the next round)
        self.states[key] = state
        self.needed = True
        self.start()
        return state

    def forget(self, keys: list[str]) -> None:
        """The registry forgot ``keys`` (its idle rule): so does the store, and stops reading them.

        Their entries in Redis expire on their own (every one has a TTL).
        """
        for key in keys:
            self.states.pop(key, None)
            self.schedule.forget(key)
            self._early.discard(key)

    # --- news from the parts (synchronous, no I/O) --------------------------------

    def moved(self, breaker: FleetBreaker, old: BreakerState, new: BreakerState) -> None:
        if new is not _CLOSED:
            self.schedule.mark_urgent(breaker.key)  # read every round while not closed
        if new is _OPEN:  # opened here: a vote; held until the fleet's lease
            breaker.voter = True
            breaker.due = breaker.reopen_at
            if self.linked:
                breaker.await_lease(self.clock() + max(HOLD, breaker.due - self.clock()))
                self._post("vote", breaker.key)
            elif self._unpace_at is not None:
                # Falling back lately: a failed probe keeps this process's share of the
                # fleet's probing (one per interval and member), as the pacing keeps its share.
                breaker.share_probes(self.clock(), breaker.members)
        elif new is _HALF_OPEN:
            if self.linked:  # the probe leaves now: no other for a recovery interval from here
                self._post("probed", breaker.key)
        elif new is _CLOSED and old is _HALF_OPEN:
            breaker.voter = breaker.awaiting = False
            if self.linked:
                self._post("close", breaker.key)

    def cooled(self, key: str, seconds: float) -> None:
        self.schedule.mark_urgent(key)  # read every round while the wait runs
        if self.linked:
            self._post("cool", key, seconds)

    def rated(self, key: str, rate: float, *, bound: bool = False, costly: bool = False) -> None:
        if self.linked:
            self._post("bound" if bound else "costly" if costly else "rate", key, rate)
            return
        state = self.states.get(key)
        pacing = None if state is None else state.cooldown
        if isinstance(pacing, FleetCooldown) and pacing.shared is not None:
            # Falling back with the fleet's last rate held: this process's 429s cut it here.
            held, members = pacing.shared
            pacing.pace((min(rate, held), members))

    def demanded(self, key: str) -> None:
        self._nudge()  # join the key's pacing members soon

    def crowded(self, key: str) -> None:
        if self.linked and key not in self._early:
            self._early.add(key)  # once a round: Redis decides whether the probe starts
            self._post("early", key)

    def _post(self, op: str, key: str, value: float = 0.0) -> None:
        self.outbox.post(op, key, value)
        self._nudge()

    def _nudge(self) -> None:
        """Wake the store's task for a round now (news to publish).

        The news may come from any thread (a sync call's breaker opened): an
        ``asyncio.Event`` is set only on its own loop's thread, so another
        thread hands the wake to that loop; a loop already closed has no task
        left to wake, and the caller is not troubled with it.
        """
        self.start()  # (again, if its loop ended)
        wake, task = self._wake, self._task
        if wake is None or task is None:
            return
        loop = task.get_loop()
        if asyncio._get_running_loop() is loop:
            wake.set()
            return
        with contextlib.suppress(RuntimeError):  # closed: no round to run
            loop.call_soon_threadsafe(wake.set)

    # --- falling back and resyncing (``Rounds`` keeps the books) ------------------------

    def _before_round(self) -> None:
        unpace_at = self._unpace_at
        if unpace_at is not None and self.clock() >= unpace_at:
            self._unpace_at = None  # fallen back for long: every key learns alone
            for state in self.states.values():
                if isinstance(state.cooldown, FleetCooldown):
                    state.cooldown.unpace()
                if isinstance(state.breaker, FleetBreaker):
                    state.breaker.members = 1  # and probes on its own interval

    def _drop_news(self) -> None:
        self.outbox.clear()  # dropped, not replayed: the resync republishes what holds
        # (open breakers' votes and running cooldowns: ``_relinked``)

    def _fell_back(self) -> None:
        # A paced key keeps its share of the fleet's last rate for as long as that rate
        # would live in Redis (cut by this process's own 429s meanwhile), then learns
        # alone: a blip of Redis (or of this process) must not send the fleet unpaced.
        now = self.clock()
        self._unpace_at = now + RATE_TTL
        self._early.clear()
        for state in self.states.values():
            if isinstance(state.cooldown, FleetCooldown):
                state.cooldown.hold_level()  # an early probe ends at its level here
            breaker = state.breaker
            if isinstance(breaker, FleetBreaker):
                breaker.own_clock(now, breaker.members)

    def _relinked(self) -> None:
        self._unpace_at = None
        now = self.clock()
        for key, state in self.states.items():
            breaker = state.breaker
            if isinstance(breaker, FleetBreaker) and breaker.state is _OPEN:
                breaker.await_lease(now + HOLD)
                if breaker.voter:
                    self._post("vote", key)
            # A 429's wait still running here: news of it was dropped with the round that
            # failed, or never posted while Redis was out of reach. The fleet waits too.
            waiting = state.cooldown.until - now
            if waiting > 0:
                self._post("cool", key, waiting)

    def _keys(self, key: str, *parts: str) -> list[str]:
        return [f"{self.prefix}:{{{key}}}:{part}" for part in parts]

    async def _exchange(self) -> None:
        """One round trip: the outbox, a read of every key, the costs, the leases wanted."""
        if not self.linked:
            await self.link.run([])  # a PING: does Redis answer at all?
            self._relink()
        self._early.clear()
        batch = self.outbox.calls(self.states, self.clock(), self.refresh)
        now = self.clock()
        batch += self.repairs.calls()
        news = len(batch)
        picked = [
            (key, state)
            for key in self.schedule.due(self.states, now, IDLE_EVERY)
            if (state := self.states.get(key)) is not None  # (a thread may forget one)
        ]
        read_at = len(batch)
        for key, state in picked:
            batch.append(self._read_call(key, state, now))
        costs_at = len(batch)
        costs = self.exchange.call(now, self.cost_source)
        if costs is not None:
            batch.append(costs)
        lease_at = len(batch)
        leases = [
            (key, state)
            for key, state in picked
            if isinstance(b := state.breaker, FleetBreaker) and b.awaiting and b.due <= now
        ]
        for key, state in leases:
            lease = ms(state.policy.breaker.recovery_timeout + LEASE_SLACK)
            batch.append(("LEASE", self._keys(key, "p"), [self.node, lease]))
        sent = self.clock()
        replies = await self.link.run(batch)
        if not self.linked:
            return
        now = self.clock()
        for call, reply in zip(batch[:news], replies[:news], strict=True):
            if isinstance(reply, BadReply):  # a write met a value seawall did not write
                self.repairs.bad(self.repairs.key_of(call[1][0]), reply)
        read = False
        for (key, state), reply in zip(picked, replies[read_at:costs_at], strict=True):
            values = self.repairs.numbers(key, reply)
            if values is None:
                continue
            if len(values) < _READ_REPLY:  # a Lua nil (a value that is no number) cut it
                self.repairs.bad(key, BadReply("a READ reply cut short"))
                continue
            if not read:
                read = True
                self._clock_sample(values[0] / 1000, sent, now)
            self._apply(state, values, now)
            if urgent(state, now):  # the fleet's open or wait, adopted: no news of it
                self.schedule.mark_urgent(key)
        if costs is not None and not self.exchange.read(replies[costs_at]):
            self.repairs.bad(None, replies[costs_at])  # (a report that does not read)

        for (key, state), reply in zip(leases, replies[lease_at:], strict=True):
            values = self.repairs.numbers(key, reply)
            if values is None or not isinstance(b := state.breaker, FleetBreaker):
                continue
            if values[1] and b.awaiting:
                # Usable for one recovery interval from Redis's grant, however late this
                # process's callers come (a later send restarts the interval: ``probed``).
                until = self._local(values[0]) + state.policy.breaker.recovery_timeout
                b.grant(now, min(until, now + state.policy.breaker.recovery_timeout))
            elif b.awaiting:
                b.await_lease(now + HOLD)

    def _read_call(self, key: str, state: KeyState, now: float) -> Call:
        pacing = state.cooldown
        # A member while it asks for turns, or while its callers wait for turns booked
        # ahead (asleep, they ask for none: they wait for the fleet's pace to void them).
        active = isinstance(pacing, FleetCooldown) and (
            pacing.demand_at > now - MEMBER_TTL or pacing.booked_ahead(now)
        )
        budget = state.budget
        used = budget.counts() if isinstance(budget, FleetBudget) else (0, 0)
        args: list[Any] = [self.node, ms(MEMBER_TTL) if active else 0, ms(RATE_DOUBLING)]
        args += [*used, ms(state.policy.budget.window), ms(RATE_RISE)]
        return ("READ", self._keys(key, "b", "v", "c", "r", "m", "u"), args)

    def costs_due(self) -> None:
        """Exchange cost reports at the next sync (the task does every ``COSTS_EVERY`` s)."""
        self.exchange.due()

    def costs(self, local: CostReport) -> CostReport:
        """The fleet's costs: ``local`` (this process, fresh) plus the others' last reports."""
        return merge([local, *self.exchange.fleet])

    def _apply(self, state: KeyState, reply: list[int], now: float) -> None:
        """Bring one key's local view in line with the fleet's (one READ reply)."""
        _, gen, votes, mine, due_ms, cool_ms, rate_mhz, members, index, *used = reply
        probe_mhz = used[3] if len(used) > 3 else 0  # (an older script's reply has none)
        breaker = state.breaker
        budget = state.budget
        if isinstance(budget, FleetBudget):
            budget.others, budget.members = (used[0], used[1]), max(1, used[2])
        pacing = state.cooldown
        if isinstance(pacing, FleetCooldown):
            pacing.members = max(1, members)
            paced = rate_mhz > 0 and index >= 0
            pacing.pace((rate_mhz / 1000, members) if paced else None, probe_mhz / 1000)
        if cool_ms:
            until = min(self._local(cool_ms), now + state.cooldown.max_wait)
            if until > state.cooldown.until:
                state.cooldown.until = until
        if not isinstance(breaker, FleetBreaker):
            return
        fleet_open = due_ms > 0 and votes >= QUORUM
        if breaker.state is _CLOSED:
            breaker.gen = gen  # Redis's, as is: after a reset, a lower one
            evidence = breaker.consecutive_failures > 0 or breaker.failure_rate > 0
            if fleet_open or (votes - mine >= 1 and evidence):
                # Probed no later than this process's own interval: a due Redis holds
                # beyond it (a hostile or foreign value) would keep the key open for good.
                due = now + breaker.policy.recovery_timeout
                breaker.adopt_open(min(self._local(due_ms), due) if fleet_open else due)
                breaker.voter = evidence
                breaker.await_lease(max(due, now) + HOLD)
                if evidence:
                    self._post("vote", state.key)
            return
        if gen > breaker.gen and not fleet_open:
            breaker.gen = gen
            breaker.adopt_close()  # another process's probe succeeded
            return
        if gen < breaker.gen:
            # Redis forgot the generation (the hash expired, a restart, FLUSHALL): no
            # close, but the next one is measured from here, so it is adopted.
            breaker.gen = gen
        if breaker.state is not _CLOSED:
            breaker.members = max(votes, members, 1)
        if breaker.state is _OPEN:
            if not breaker.awaiting and now >= breaker.granted_until:
                breaker.await_lease(now + HOLD)  # a grant unused in its interval: gone
            vote_ttl = max(2 * breaker.policy.recovery_timeout, 10.0)
            if breaker.voter and (not mine or now - breaker.voted_at > vote_ttl / 2):
                self._post("vote", state.key)
            if breaker.awaiting and breaker.due > now:
                breaker.await_lease(breaker.due + HOLD)
