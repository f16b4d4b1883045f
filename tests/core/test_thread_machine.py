"""The thread machine under any order of mail, commands and time: no thread without a clock.

A stateful property test in the shape of vdirsyncer's SyncMachine: customer mail (decided by
`core.rules`, the only source of acknowledgements), agent replies, the `#pending`, `#close`,
`#reopen` and `#assign` commands (planned by `core.commands`, applied as the daemon applies
them) and the clock advancing, in any order, on the default targets and on explicit ones.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from mailbridge.core import commands, rules, sla
from mailbridge.core.model import Address, Agent, InboundMessage

T0 = datetime(2026, 3, 27, 15, 0, tzinfo=UTC)  # a Friday before the spring DST change
H = timedelta(hours=1)
SUPPORT = "support@example.com"
AGENTS = (Agent("Dana Whitfield", "dana@example.com"), Agent("Sam Okafor", "sam@example.com"))
POLICY = rules.RulePolicy(support_addresses=frozenset({SUPPORT}))
STATE_CHANGES: dict[str, Callable[[sla.Clock, datetime, sla.Targets], sla.Clock]] = {
    sla.AWAITING_CUSTOMER: sla.pending, sla.RESOLVED: sla.close, sla.AWAITING_AGENT: sla.reopen}
"""As `mailbridge.daemon.deadlines` applies a planned state change."""
DEADLINES = ("first_response_due", "next_response_due", "resolution_due")


def office(first_response: timedelta, next_response: timedelta | None) -> sla.Targets:
    """Open 09:00-17:00 UTC; deadlines count only open time, an hour at a time at most."""
    def is_open(t: datetime) -> bool:
        return 9 <= t.hour < 17

    def next_open(t: datetime) -> datetime:
        if is_open(t):
            return t
        day = t if t.hour < 9 else t + timedelta(days=1)
        return day.replace(hour=9, minute=0, second=0, microsecond=0)

    def add(start: datetime, span: timedelta) -> datetime:
        at, left = next_open(start), span
        while left > timedelta(0):
            close = at.replace(hour=17, minute=0, second=0, microsecond=0)
            step = min(left, close - at)
            at, left = at + step, left - step
            if left > timedelta(0):
                at = next_open(at)
        return at

    def measure(start: datetime, end: datetime) -> timedelta:
        total, at = timedelta(0), start
        while at < end:
            step = min(timedelta(minutes=15), end - at)
            total += step if is_open(at) else timedelta(0)
            at += step
        return total

    return sla.Targets(first_response=first_response, next_response=next_response, add=add,
                       measure=measure, is_open=is_open, next_open=next_open,
                       always_open=False, escalate=True)


def customer_mail(n: int) -> InboundMessage:
    customer = Address("Ana Souza", "ana@example.org")
    return InboundMessage(
        message_id=f"<m{n}@example.org>", from_=(customer,), sender=None, reply_to=(),
        to=(Address("Example Support", SUPPORT),), cc=(), return_path=customer.addr,
        subject="Printer", date=None, in_reply_to=(), references=(), text="Hello?")


class ThreadMachine(RuleBasedStateMachine):
    """One customer's thread, from the first mail on."""

    @initialize(next_response=st.sampled_from([None, 2 * H, 8 * H]),
                first_response=st.sampled_from([H, 4 * H]))
    def first_mail(self, next_response: timedelta | None, first_response: timedelta) -> None:
        """The first mail opens the thread and is acknowledged."""
        self.targets = office(first_response, next_response)
        self.now = T0
        self.mails = 0
        self.thread: str | None = None
        self.acks = 0
        self.clock = sla.start(self.now, self.targets)
        self._customer_writes()
        self.thread = "T1"

    def _customer_writes(self) -> None:
        self.mails += 1
        verdict = rules.evaluate(customer_mail(self.mails),
                                 rules.RuleContext(policy=POLICY, thread=self.thread))
        self.acks += verdict.reply
        if self.thread is not None:
            self._change(sla.customer_message(self.clock, self.now, self.targets))

    def _change(self, clock: sla.Clock) -> None:
        """Take the new clock; a deadline set now lies ahead."""
        for name in DEADLINES:
            due = getattr(clock, name)
            if due is not None and due != getattr(self.clock, name):
                assert due >= self.now, f"{name} set in the past"
        self.clock = clock

    def _command(self, text: str) -> None:
        planned = commands.plan(commands.parse(text), agents=AGENTS, priorities=("normal",),
                                in_thread=True)
        assert planned.errors == ()
        for action in planned.actions:
            if isinstance(action, commands.SetState):
                self._change(STATE_CHANGES[action.state](self.clock, self.now, self.targets))
            # #assign changes who answers, never the clock

    @rule()
    def customer_writes(self) -> None:
        self._customer_writes()

    @rule()
    def agent_replies(self) -> None:
        clock, _ = sla.agent_reply(self.clock, self.now, self.targets)
        self._change(clock)

    @rule(command=st.sampled_from(["#pending", "#close", "#reopen", "#assign Sam",
                                   "#assign Dana\n#pending"]))
    def agent_commands(self, command: str) -> None:
        self._command(command)

    @rule(minutes=st.integers(1, 3 * 24 * 60))
    def time_passes(self, minutes: int) -> None:
        self.now += timedelta(minutes=minutes)
        clock, _ = sla.tick(self.clock, self.now, self.targets)
        self._change(clock)

    @invariant()
    def awaiting_an_agent_means_a_deadline(self) -> None:
        """Every thread awaiting an agent has a response deadline."""
        if self.clock.state == sla.AWAITING_AGENT:
            assert self.clock.response_due is not None

    @invariant()
    def at_most_one_ack(self) -> None:
        assert self.acks == 1


ThreadMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=30,
                                           deadline=None)
TestThreadMachine = ThreadMachine.TestCase


def test_a_follow_up_on_the_default_targets_is_due_within_the_first_response_target() -> None:
    """With no next_response, the customer's follow-up is due within first_response."""
    targets = office(4 * H, None)
    clock, _ = sla.agent_reply(sla.start(T0, targets), T0 + H, targets)
    clock = sla.customer_message(clock, T0 + 2 * H, targets)
    assert clock.response_due == ("next_response", T0 + 2 * H + 16 * H + 4 * H)


def test_an_explicit_next_response_is_kept() -> None:
    """A policy that sets next_response keeps it."""
    targets = office(4 * H, 30 * timedelta(minutes=1))
    clock, _ = sla.agent_reply(sla.start(T0, targets), T0 + H, targets)
    clock = sla.customer_message(clock, T0 + 2 * H, targets)
    assert clock.response_due == ("next_response", T0 + 2 * H + 16 * H + 30 * timedelta(minutes=1))
