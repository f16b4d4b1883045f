"""The thread clock: deadlines, pauses, updates, breaches and escalations, with literal times."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from mailbridge.core import sla

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday
H = timedelta(hours=1)


def always(**overrides: object) -> sla.Targets:
    base = sla.Targets(first_response=4 * H, add=lambda t, d: t + d,
                       measure=lambda a, b: max(timedelta(0), b - a), is_open=lambda t: True,
                       next_open=lambda t: t, always_open=True, next_response=2 * H,
                       escalate=True)
    return replace(base, **overrides)  # type: ignore[arg-type]


def office() -> sla.Targets:
    """Open 09:00-17:00 UTC every day: enough to see closed hours."""
    def is_open(t: datetime) -> bool:
        return 9 <= t.hour < 17

    def next_open(t: datetime) -> datetime:
        if is_open(t):
            return t
        day = t if t.hour < 9 else t + timedelta(days=1)
        return day.replace(hour=9, minute=0, second=0, microsecond=0)

    return always(always_open=False, is_open=is_open, next_open=next_open)


def test_a_new_thread_is_due_after_its_target() -> None:
    """The first response is due the target after receipt, and updates come before it."""
    clock = sla.start(T0, always())
    assert clock.state == sla.AWAITING_AGENT
    assert clock.first_response_due == T0 + 4 * H
    assert sla.next_due(clock, always(), T0) == T0 + 4 * H - timedelta(minutes=30)


def test_an_agent_reply_records_the_response_and_pauses_the_clock() -> None:
    """The first reply is measured in wall and business time; then nothing is due."""
    targets = always()
    clock, decisions = sla.agent_reply(sla.start(T0, targets), T0 + 90 * timedelta(minutes=1),
                                       targets)
    assert decisions == [sla.Responded("first_response", 5400.0, 5400.0, met=True)]
    assert clock.state == sla.AWAITING_CUSTOMER
    assert sla.next_due(clock, targets, T0 + 2 * H) == T0 + 90 * timedelta(minutes=1) \
        + targets.resolve_after_quiet


def test_the_customer_writing_again_starts_the_next_response_clock() -> None:
    """After an answer, the customer's next message is due within next_response."""
    targets = always()
    clock, _ = sla.agent_reply(sla.start(T0, targets), T0 + H, targets)
    clock = sla.customer_message(clock, T0 + 5 * H, targets)
    assert clock.response_due == ("next_response", T0 + 7 * H)
    clock, decisions = sla.agent_reply(clock, T0 + 8 * H, targets)
    assert decisions == [sla.Responded("next_response", 3 * 3600.0, 3 * 3600.0, met=False)]


def test_an_unanswered_thread_gets_one_update_one_breach_one_escalation() -> None:
    """Ticking through a missed deadline: an update before it, then breach and escalation."""
    targets = always(max_updates=1)
    clock = sla.start(T0, targets)
    clock, first = sla.tick(clock, T0 + 3 * H + 30 * timedelta(minutes=1), targets)
    assert first == [sla.StatusUpdate(T0 + 4 * H), sla.Nudge("first_response", T0 + 4 * H)]
    clock, second = sla.tick(clock, T0 + 4 * H, targets)
    assert second == [sla.Breach("first_response", T0 + 4 * H),
                      sla.Escalate("first_response", T0 + 4 * H)]
    clock, third = sla.tick(clock, T0 + 10 * H, targets)
    assert third == []
    assert sla.next_due(clock, targets, T0 + 10 * H) is None


def test_nothing_goes_out_while_the_calendar_is_closed() -> None:
    """Updates and escalations wait for opening hours; breaches are recorded on time."""
    targets = office()
    received = T0.replace(hour=16)
    clock = sla.start(received, targets)  # due 20:00 on the 24/7 arithmetic of this fake
    clock, decisions = sla.tick(clock, received.replace(hour=20), targets)
    assert decisions == [sla.Breach("first_response", received.replace(hour=20))]
    tomorrow_nine = (received + timedelta(days=1)).replace(hour=9)
    assert sla.next_due(clock, targets, received.replace(hour=20)) == tomorrow_nine
    clock, decisions = sla.tick(clock, tomorrow_nine, targets)
    assert sla.Escalate("first_response", received.replace(hour=20)) in decisions


def test_quiet_threads_are_resolved() -> None:
    """A thread awaiting the customer for the quiet period is resolved."""
    targets = always()
    clock, _ = sla.agent_reply(sla.start(T0, targets), T0 + H, targets)
    clock, decisions = sla.tick(clock, T0 + H + targets.resolve_after_quiet, targets)
    assert clock.state == sla.RESOLVED and isinstance(decisions[0], sla.Resolved)


def _updates(targets: sla.Targets, until: timedelta) -> list[datetime]:
    """The status updates of a thread nobody answers, ticked every minute from T0."""
    clock, sent = sla.start(T0, targets), []
    for minute in range(1, int(until.total_seconds() // 60) + 1):
        now = T0 + timedelta(minutes=minute)
        clock, decisions = sla.tick(clock, now, targets)
        sent += [now for d in decisions if isinstance(d, sla.StatusUpdate)]
    return sent


def test_updates_are_spaced_and_limited() -> None:
    """A 10-minute periodic update still leaves 30 minutes between two updates, and the
    limit holds; the update before the deadline waits for the spacing too."""
    targets = always(periodic_update=timedelta(minutes=10), max_updates=3, escalate=False)
    assert _updates(targets, 6 * H) == [T0 + timedelta(minutes=m) for m in (10, 40, 70)]
    before = always(periodic_update=3 * H + timedelta(minutes=20), escalate=False)
    # The periodic one at 3h20m, then the one before the 4h deadline 30 minutes later.
    assert _updates(before, 5 * H) == [T0 + timedelta(minutes=m) for m in (200, 230)]
    assert _updates(always(max_updates=0), 5 * H) == []


class ThreadMachine(RuleBasedStateMachine):
    """Customer mail, agent replies and time passing, in any order."""

    @initialize(office_hours=st.booleans(), periodic=st.sampled_from((None, 10, 180)),
                resolution=st.booleans(), max_updates=st.integers(0, 4))
    def begin(self, office_hours: bool, periodic: int | None, resolution: bool,
              max_updates: int) -> None:
        targets = office() if office_hours else always()
        self.targets = replace(targets, resolution=10 * H if resolution else None,
                               periodic_update=timedelta(minutes=periodic) if periodic else None,
                               max_updates=max_updates)
        self.now = T0
        self.clock = sla.start(T0, self.targets)
        self.breaches: list[tuple[str, datetime]] = []
        self.escalations: list[tuple[str, datetime]] = []
        self.updates: list[datetime] = []
        self.awaiting_agent_time = timedelta(0)
        self.responses: list[sla.Responded] = []

    def _advance(self, minutes: int) -> None:
        if self.clock.state == sla.AWAITING_AGENT:
            self.awaiting_agent_time += timedelta(minutes=minutes)
        self.now += timedelta(minutes=minutes)

    @rule(minutes=st.integers(1, 600))
    def time_passes(self, minutes: int) -> None:
        self._advance(minutes)
        self.clock, decisions = sla.tick(self.clock, self.now, self.targets)
        for d in decisions:
            if isinstance(d, sla.Breach):
                self.breaches.append((d.kind, d.due))
            elif isinstance(d, sla.Escalate):
                self.escalations.append((d.kind, d.due))
            elif isinstance(d, sla.StatusUpdate):
                self.updates.append(self.now)
                assert d.due >= self.now, "an update never promises a time in the past"
                assert self.targets.always_open or self.targets.is_open(self.now)

    @rule()
    def customer_writes(self) -> None:
        self.clock = sla.customer_message(self.clock, self.now, self.targets)

    @rule()
    def agent_replies(self) -> None:
        waiting = self.clock.waiting_since
        self.clock, decisions = sla.agent_reply(self.clock, self.now, self.targets)
        for d in decisions:
            assert isinstance(d, sla.Responded)
            assert waiting is not None
            assert d.seconds == (self.now - waiting).total_seconds()
            self.responses.append(d)

    @invariant()
    def no_deadline_left_behind(self) -> None:
        """After a tick, whatever is due next lies in the future."""
        clock, _ = sla.tick(self.clock, self.now, self.targets)
        due = sla.next_due(clock, self.targets, self.now)
        assert due is None or due > self.now
        again, decisions = sla.tick(clock, self.now, self.targets)
        assert decisions == [] and again == clock, "ticking twice at one instant does nothing"

    @invariant()
    def each_breach_once(self) -> None:
        assert len(self.breaches) == len(set(self.breaches))
        assert len(self.escalations) == len(set(self.escalations))
        assert len(self.updates) <= self.targets.max_updates

    @invariant()
    def updates_are_spaced(self) -> None:
        """Never two status updates closer than `update_before`, even with a shorter
        periodic update interval."""
        gaps = [b - a for a, b in zip(self.updates, self.updates[1:], strict=False)]
        assert all(gap >= self.targets.update_before for gap in gaps), self.updates

    @invariant()
    def paused_time_is_never_counted(self) -> None:
        """A response never measures more than the time spent awaiting an agent."""
        total = sum(r.seconds for r in self.responses)
        assert total <= self.awaiting_agent_time.total_seconds() + 1e-6


ThreadMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30,
                                           deadline=None)
TestThreadMachine = ThreadMachine.TestCase
