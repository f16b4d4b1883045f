"""The thread's life against its deadlines: events in, a new clock and decisions out.

Public API: `Targets`, `Clock`, `Decision` kinds (`StatusUpdate`, `Nudge`, `Breach`,
`Escalate`, `Responded`, `Resolved`), `start(...)`, `customer_message(...)`,
`agent_reply(...)`, `tick(...)`, `next_due(...)`.

What pauses a clock is who sent the last message, never a status someone can
flip: after an agent's reply the thread awaits the customer and the response
clocks stop; the customer's next message starts the next-response clock (its target
defaults to the first response's, so no thread awaits an agent without a deadline). Every
deadline is business time on the policy's calendar, passed in as two functions
(`add` and `measure`) so this module stays independent of calendar details.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

AWAITING_AGENT = "awaiting_agent"
AWAITING_CUSTOMER = "awaiting_customer"
RESOLVED = "resolved"

AddBusiness = Callable[[datetime, timedelta], datetime]
MeasureBusiness = Callable[[datetime, datetime], timedelta]
IsOpen = Callable[[datetime], bool]
NextOpen = Callable[[datetime], datetime]


@dataclass(frozen=True)
class Targets:
    """A policy's targets and the desk's update rules, with its calendar's arithmetic."""

    first_response: timedelta
    add: AddBusiness
    measure: MeasureBusiness
    is_open: IsOpen
    next_open: NextOpen
    always_open: bool = True
    next_response: timedelta | None = None
    """None: `first_response`; every wait for an agent has a deadline."""
    periodic_update: timedelta | None = None
    resolution: timedelta | None = None
    escalate: bool = False
    update_before: timedelta = timedelta(minutes=30)
    max_updates: int = 2
    resolve_after_quiet: timedelta = timedelta(days=14)


@dataclass(frozen=True)
class Clock:
    """Everything the deadlines of one thread depend on; stored with the thread."""

    state: str
    waiting_since: datetime | None
    """Arrival of the oldest customer message we still owe an answer to."""
    first_response_due: datetime | None
    first_response_at: datetime | None = None
    next_response_due: datetime | None = None
    resolution_due: datetime | None = None
    resolution_used: timedelta = timedelta(0)
    """Business time spent awaiting an agent before the current wait."""
    last_from_us: datetime | None = None
    last_agent_reply: datetime | None = None
    updates_sent: int = 0
    last_update: datetime | None = None
    """When the latest status update went out: the next is `update_before` later at the
    earliest."""
    breached: frozenset[str] = field(default_factory=frozenset)
    escalations_due: tuple[tuple[str, datetime], ...] = ()
    """Breaches whose escalation waits for the calendar to open: (kind, when)."""

    @property
    def response_due(self) -> tuple[str, datetime] | None:
        """The pending response deadline and its kind, if the thread awaits an agent."""
        if self.state != AWAITING_AGENT:
            return None
        if self.first_response_due is not None and self.first_response_at is None:
            return "first_response", self.first_response_due
        if self.next_response_due is not None:
            return "next_response", self.next_response_due
        return None


@dataclass(frozen=True)
class StatusUpdate:
    """Tell the waiting customer we are on it, with the time they will hear from us."""

    due: datetime


@dataclass(frozen=True)
class Nudge:
    """Remind the assigned agent that a deadline is near."""

    kind: str
    due: datetime


@dataclass(frozen=True)
class Breach:
    """A deadline passed unmet; recorded once per kind and wait."""

    kind: str
    due: datetime


@dataclass(frozen=True)
class Escalate:
    """Tell the policy's lead about a breach, at a sensible hour."""

    kind: str
    due: datetime


@dataclass(frozen=True)
class Responded:
    """An agent answered: how long it took, in wall-clock and business time."""

    kind: str
    seconds: float
    business_seconds: float
    met: bool


@dataclass(frozen=True)
class Resolved:
    reason: str


Decision = StatusUpdate | Nudge | Breach | Escalate | Responded | Resolved


def start(received: datetime, targets: Targets) -> Clock:
    """The clock of a new thread whose first message arrived at `received`."""
    resolution = targets.add(received, targets.resolution) if targets.resolution else None
    return Clock(state=AWAITING_AGENT, waiting_since=received,
                 first_response_due=targets.add(received, targets.first_response),
                 resolution_due=resolution, last_from_us=received)


def customer_message(clock: Clock, at: datetime, targets: Targets) -> Clock:
    """The customer wrote: a thread awaiting them (or resolved) awaits an agent again."""
    if clock.state == AWAITING_AGENT:
        return clock  # the clock keeps running from their oldest unanswered message
    next_due = targets.add(at, targets.next_response or targets.first_response)
    resolution = None
    if targets.resolution is not None:
        remaining = max(timedelta(0), targets.resolution - clock.resolution_used)
        resolution = targets.add(at, remaining)
    # A new wait is a new next-response deadline, which can be met or breached anew.
    return replace(clock, state=AWAITING_AGENT, waiting_since=at, next_response_due=next_due,
                   resolution_due=resolution, breached=clock.breached - {"next_response"})


def agent_reply(clock: Clock, at: datetime, targets: Targets) -> tuple[Clock, list[Decision]]:
    """An agent answered at `at`: stop the response clock and pause the others."""
    decisions: list[Decision] = []
    due = clock.response_due
    if due is not None and clock.waiting_since is not None:
        kind, deadline = due
        waited = max(timedelta(0), at - clock.waiting_since)
        business = targets.measure(clock.waiting_since, at)
        decisions.append(Responded(kind, waited.total_seconds(), business.total_seconds(),
                                   met=at <= deadline))
    used = clock.resolution_used
    if clock.state == AWAITING_AGENT and clock.waiting_since is not None:
        used += targets.measure(clock.waiting_since, at)
    first_at = clock.first_response_at or at
    new = replace(clock, state=AWAITING_CUSTOMER, waiting_since=None, first_response_at=first_at,
                  next_response_due=None, resolution_due=None, resolution_used=used,
                  last_from_us=at, last_agent_reply=at)
    return new, decisions


def _deadlines(clock: Clock) -> list[tuple[str, datetime]]:
    found = []
    response = clock.response_due
    if response is not None:
        found.append(response)
    if clock.state == AWAITING_AGENT and clock.resolution_due is not None:
        found.append(("resolution", clock.resolution_due))
    return [(kind, due) for kind, due in found if kind not in clock.breached]


def _update_time(clock: Clock, targets: Targets) -> datetime | None:
    """When the next status update is due, or None when none will be sent."""
    if clock.state != AWAITING_AGENT or clock.updates_sent >= targets.max_updates:
        return None
    # Never two updates closer than `update_before`, whatever asks for them.
    floor = clock.last_update + targets.update_before if clock.last_update else None
    times = []
    response = clock.response_due
    if response is not None and response[0] not in clock.breached:
        update_at = response[1] - targets.update_before
        # One update before each deadline: none if we already wrote since that point, nor
        # when the spacing would put it at or after the deadline.
        if (clock.last_from_us is None or clock.last_from_us < update_at) \
                and (floor is None or floor < response[1]):
            times.append(max(update_at, floor) if floor else update_at)
    if targets.periodic_update is not None and clock.last_from_us is not None:
        periodic = targets.add(clock.last_from_us, targets.periodic_update)
        times.append(max(periodic, floor) if floor else periodic)
    return min(times, default=None)


def _open_at(when: datetime, now: datetime, targets: Targets) -> datetime:
    """The first moment at or after `when` at which staff-facing or customer-facing
    mail may go out: inside the calendar's opening hours, unless it is 24/7."""
    if targets.always_open:
        return when
    if when <= now:
        return now if targets.is_open(now) else targets.next_open(now)
    return targets.next_open(when)


def next_due(clock: Clock, targets: Targets, now: datetime) -> datetime | None:
    """The next moment `tick` has something to do for this thread (the scheduler's index)."""
    times = [due for _, due in _deadlines(clock)]
    times += [_open_at(when, now, targets) for _, when in clock.escalations_due]
    update = _update_time(clock, targets)
    if update is not None:
        times.append(_open_at(update, now, targets))
    if clock.state == AWAITING_CUSTOMER and clock.last_agent_reply is not None:
        times.append(clock.last_agent_reply + targets.resolve_after_quiet)
    return min(times, default=None)


def tick(clock: Clock, now: datetime, targets: Targets) -> tuple[Clock, list[Decision]]:
    """Act on everything due at `now`: breaches, escalations, updates, quiet resolution.

    Idempotent: ticking again at the same `now` decides nothing more.
    """
    decisions: list[Decision] = []
    breached = set(clock.breached)
    escalations = list(clock.escalations_due)
    for kind, due in _deadlines(clock):
        if due <= now:
            breached.add(kind)
            decisions.append(Breach(kind, due))
            if targets.escalate:
                escalations.append((kind, due))
    ready = [(kind, when) for kind, when in escalations
             if _open_at(when, now, targets) <= now]
    decisions += [Escalate(kind, when) for kind, when in ready]
    escalations = [item for item in escalations if item not in ready]
    clock = replace(clock, breached=frozenset(breached), escalations_due=tuple(escalations))
    update = _update_time(clock, targets)
    if update is not None and _open_at(update, now, targets) <= now:
        decisions.append(StatusUpdate(_promise(clock, now, targets)))
        response = clock.response_due
        if response is not None:
            decisions.append(Nudge(response[0], response[1]))
        clock = replace(clock, updates_sent=clock.updates_sent + 1, last_from_us=now,
                        last_update=now)
    if clock.state == AWAITING_CUSTOMER and clock.last_agent_reply is not None \
            and now >= clock.last_agent_reply + targets.resolve_after_quiet:
        clock = replace(clock, state=RESOLVED)
        decisions.append(Resolved("the customer has not written since the agent's answer"))
    return clock, decisions


def _promise(clock: Clock, now: datetime, targets: Targets) -> datetime:
    """The time a status update promises: the deadline while it is still ahead, else
    the update interval from now, in business time."""
    response = clock.response_due
    if response is not None and response[1] > now:
        return response[1]
    return targets.add(now, targets.update_before if targets.periodic_update is None
                       else targets.periodic_update)


# -- an agent's mail commands (`core.commands`) -----------------------------------------------


def _paused(clock: Clock, at: datetime, targets: Targets) -> timedelta:
    """Resolution time used, including the current wait for an agent up to `at`."""
    used = clock.resolution_used
    if clock.state == AWAITING_AGENT and clock.waiting_since is not None:
        used += targets.measure(clock.waiting_since, at)
    return used


def pending(clock: Clock, at: datetime, targets: Targets) -> Clock:
    """`#pending`: the thread waits on the customer; the response clocks stop.

    Not a response: no first-response time is recorded, since no answer went out. The quiet
    timer starts, so a customer who never writes back lets the thread resolve itself.
    """
    if clock.state == AWAITING_CUSTOMER:
        return clock
    return replace(clock, state=AWAITING_CUSTOMER, waiting_since=None, next_response_due=None,
                   resolution_due=None, resolution_used=_paused(clock, at, targets),
                   last_agent_reply=at, escalations_due=())


def close(clock: Clock, at: datetime, targets: Targets) -> Clock:
    """`#close`: the thread is resolved; nothing more is due until the customer writes."""
    if clock.state == RESOLVED:
        return clock
    return replace(clock, state=RESOLVED, waiting_since=None, next_response_due=None,
                   resolution_due=None, resolution_used=_paused(clock, at, targets),
                   escalations_due=())


def reopen(clock: Clock, at: datetime, targets: Targets) -> Clock:
    """`#reopen`: the thread awaits an agent again, as if the customer had just written."""
    return customer_message(clock, at, targets)
