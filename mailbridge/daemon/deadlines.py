"""The SLA side of the daemon: a thread's clock through its events, and the scheduler's work.

Public API: `targets_for(policy, settings)`, `SlaOutcome`, `clock_columns(clock)`,
`Deadlines` (`open_thread`, `customer_wrote`, `agent_replied`, `apply_command` and
`set_state` for an agent's mail commands, `run_due`, `digests` (the shift digests of
`daemon.digests`, run by the scheduler beside `run_due`), and `on_outcome`,
called with each `SlaOutcome` once its transaction has committed: the metrics' hook).

The decisions come from the pure `core.sla`; this module loads and stores the
clock, records events, and turns decisions into outbox mail (status updates to
the customer, nudges to the agent, escalations to the lead), each in the same
transaction as the clock that caused it. Outbox kinds are unique per thread
("update-1", "escalation-first_response"), so nothing is ever sent twice.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from mailbridge.clock import Clock as TimeSource
from mailbridge.config import Config, SlaSettings
from mailbridge.core import agents, commands, eta, sla
from mailbridge.core import calendar as cal
from mailbridge.core.model import Agent, InboundMessage, NoticeContext, SlaOutcome
from mailbridge.core.policy import Policy
from mailbridge.daemon.digests import Digests
from mailbridge.daemon.handovers import Handovers
from mailbridge.daemon.notices import StaffNotice, queue_notice
from mailbridge.daemon.policies import PolicySet
from mailbridge.daemon.team import build_team
from mailbridge.daemon.updates import StatusUpdates
from mailbridge.logs import fields
from mailbridge.mail.headers import make_message_id
from mailbridge.mail.render import Renderer
from mailbridge.store.codec import dump_clock, load_clock
from mailbridge.store.db import Store
from mailbridge.store.tables import Thread
from mailbridge.store.tx import Tx

log = logging.getLogger(__name__)


def targets_for(policy: Policy, settings: SlaSettings) -> sla.Targets:
    """The policy's targets with its calendar's business-time arithmetic bound in."""
    calendar = policy.calendar
    return sla.Targets(
        first_response=policy.first_response,
        add=functools.partial(cal.add_business_time, calendar),
        measure=functools.partial(cal.business_time_between, calendar),
        is_open=functools.partial(cal.is_open, calendar),
        next_open=functools.partial(cal.next_open, calendar),
        always_open=calendar.always_open,
        next_response=policy.next_response, periodic_update=policy.periodic_update,
        resolution=policy.resolution, escalate=policy.escalate_to is not None,
        update_before=settings.status_update_before, max_updates=settings.max_status_updates,
        resolve_after_quiet=settings.resolve_after_quiet)


def clock_columns(clock: sla.Clock) -> dict[str, object]:
    """The thread columns the metrics scrape aggregates, as the clock sets them."""
    waiting = clock.state == sla.AWAITING_AGENT
    response = clock.response_due
    return {"waiting_since": clock.waiting_since if waiting else None,
            "response_due_at": response[1] if response else None,
            "response_kind": response[0] if response else None,
            "resolution_due_at": clock.resolution_due if waiting else None}


_STATE_EVENTS = {sla.AWAITING_CUSTOMER: ("pending", "waiting on the customer, set"),
                 sla.RESOLVED: ("resolved", "closed"),
                 sla.AWAITING_AGENT: ("reopened", "reopened")}
_STATE_CHANGES = {sla.AWAITING_CUSTOMER: sla.pending, sla.RESOLVED: sla.close,
                  sla.AWAITING_AGENT: sla.reopen}


def _resolved_at(thread: Thread, state: str, now: datetime) -> datetime | None:
    """When a thread in `state` was resolved (retention counts from it): `now` when it
    becomes resolved, unchanged while it stays so, None once it is open again."""
    if state != sla.RESOLVED:
        return None
    return thread.resolved_at if thread.state == sla.RESOLVED and thread.resolved_at else now


@dataclass(frozen=True)
class NewThread:
    """The SLA of a thread about to be started: its policy, clock and promised time."""

    policy: Policy
    why: str
    clock: sla.Clock
    promise: datetime
    """The time the acknowledgement promises: the deadline or, from recent data, earlier."""
    opens_at: datetime | None


class Deadlines:
    def __init__(self, config: Config, policies: PolicySet, store: Store, renderer: Renderer,
                 clock: TimeSource) -> None:
        self.config = config
        self.policies = policies
        self.store = store
        self.renderer = renderer
        self.clock = clock
        self.targets = {p.name: targets_for(p, config.sla)
                        for p in (policies.default, *policies.policies)}
        self.on_outcome: Callable[[SlaOutcome], None] | None = None
        self.team = build_team(config)
        self.handovers = Handovers(config, renderer, self.team)
        self.digests = Digests(config, renderer, self.team, store)
        self.updates = StatusUpdates(config, renderer, self.team, store)
        self._rechecked = False

    def _policy(self, name: str) -> tuple[Policy, sla.Targets]:
        """A thread's policy; the default when the configuration no longer has it."""
        policy = self.policies.by_name.get(name, self.policies.default)
        return policy, self.targets[policy.name]

    # -- events from ingest -------------------------------------------------------------

    def open_thread(self, tx: Tx, message: InboundMessage, mailbox: str,
                    received: datetime) -> NewThread:
        policy, why = self.policies.choose(message, mailbox)
        targets = self.targets[policy.name]
        clock = sla.start(received, targets)
        assert clock.first_response_due is not None
        settings = self.config.sla
        samples = tx.recent_first_responses(policy.name, received - settings.eta_window)
        promise = eta.honest_due(clock.first_response_due, received=received,
                                 recent_seconds=samples, percentile=settings.eta_percentile,
                                 min_samples=settings.eta_min_samples, add_business=targets.add)
        opens_at = None if targets.always_open or targets.is_open(received) \
            else targets.next_open(received)
        return NewThread(policy, why, clock, promise, opens_at)

    def thread_columns(self, new: NewThread, now: datetime,
                       agent_email: str = "") -> dict[str, object]:
        """The SLA columns of a new thread row assigned to `agent_email`."""
        targets = self.targets[new.policy.name]
        return {"policy": new.policy.name, "priority": new.policy.priority,
                "clock": dump_clock(new.clock),
                "next_due_at": self._next_due(new.policy.name, agent_email, new.clock, targets,
                                              now),
                **clock_columns(new.clock)}

    def customer_wrote(self, tx: Tx, thread_id: str, at: datetime) -> None:
        thread = tx.thread(thread_id)
        if thread is None or not thread.clock:
            return
        _policy, targets = self._policy(thread.policy)
        before = load_clock(thread.clock)
        after = sla.customer_message(before, at, targets)
        if after != before:
            tx.event(thread_id, at, "customer_message", "awaiting an agent again")
            self._save(tx, thread, after, targets, at)

    def agent_replied(self, tx: Tx, thread_id: str, at: datetime,
                      agent: str) -> sla.Responded | None:
        thread = tx.thread(thread_id)
        if thread is None or not thread.clock:
            return None
        policy, targets = self._policy(thread.policy)
        before = load_clock(thread.clock)
        after, decisions = sla.agent_reply(before, at, targets)
        responded = next((d for d in decisions if isinstance(d, sla.Responded)), None)
        if responded is not None:
            # A late answer is a breach the scheduler may not have seen yet (it was down,
            # or the answer came first); a deadline it already counted as breached is not
            # counted again, even when the answer, recorded late, turns out to be in time.
            counted = responded.kind in before.breached
            self._outcome(tx, policy, responded.kind, evaluated=not counted,
                          breached=not responded.met and not counted,
                          business_seconds=responded.business_seconds)
        columns: dict[str, object] = {}
        detail = f"{agent} answered"
        if responded is not None:
            detail += (f" ({responded.kind} after {round(responded.business_seconds)} "
                       f"business seconds, {'met' if responded.met else 'late'})")
            if responded.kind == "first_response":
                columns = {"first_response_at": at,
                           "first_response_seconds": responded.seconds,
                           "first_response_business_seconds": responded.business_seconds,
                           "first_response_met": responded.met}
        tx.event(thread_id, at, "agent_reply", detail)
        self._save(tx, thread, after, targets, at, **columns)
        return responded

    # -- an agent's mail commands (`core.commands`) ------------------------------------------

    def apply_command(self, tx: Tx, thread_id: str, action: commands.Action, at: datetime,
                      by: str) -> None:
        """Apply one planned command to the thread; `by` names the agent who gave it."""
        if isinstance(action, commands.SetState):
            self.set_state(tx, thread_id, action.state, at, by)
        elif isinstance(action, commands.Assign):
            tx.update_thread(thread_id, agent_name=action.agent.name,
                             agent_email=action.agent.email, assignment=f"assigned by {by}")
            tx.event(thread_id, at, "assigned", f"to {action.agent.name} by {by}")
            thread = tx.thread(thread_id)
            if thread is not None:
                self.handovers.tell(tx, thread, why="assigned", by=by, now=at)
        elif isinstance(action, commands.SetPriority):
            tx.update_thread(thread_id, priority=action.priority)
            tx.event(thread_id, at, "priority", f"{action.priority}, set by {by}")
        else:
            tx.event(thread_id, at, "note", f"{by}: {action.text}")

    def set_state(self, tx: Tx, thread_id: str, state: str, at: datetime, by: str) -> None:
        """#pending (awaiting_customer), #close (resolved) or #reopen (awaiting_agent)."""
        thread = tx.thread(thread_id)
        if thread is None:
            return
        kind, detail = _STATE_EVENTS[state]
        tx.event(thread_id, at, kind, f"{detail} by {by}")
        if not thread.clock:
            tx.update_thread(thread_id, state=state, resolved_at=_resolved_at(thread, state, at))
            return
        policy, targets = self._policy(thread.policy)
        before = load_clock(thread.clock)
        after = _STATE_CHANGES[state](before, at, targets)
        if after.state == sla.RESOLVED and before.state != sla.RESOLVED \
                and policy.resolution is not None and "resolution" not in after.breached:
            self._outcome(tx, policy, "resolution", evaluated=True, breached=False,
                          business_seconds=after.resolution_used.total_seconds())
        self._save(tx, thread, after, targets, at)

    def _save(self, tx: Tx, thread: Thread, clock: sla.Clock, targets: sla.Targets,
              now: datetime, **columns: object) -> None:
        if "next_due_at" not in columns:
            columns["next_due_at"] = self._next_due(thread.policy, thread.agent_email, clock,
                                                    targets, now)
        columns.setdefault("resolved_at", _resolved_at(thread, clock.state, now))
        tx.update_thread(thread.id, state=clock.state, clock=dump_clock(clock),
                         **clock_columns(clock), **columns)

    def _outcome(self, tx: Tx, policy: Policy, kind: str, *, evaluated: bool, breached: bool,
                 business_seconds: float | None = None) -> None:
        if self.on_outcome is not None:
            outcome = SlaOutcome(kind, policy.name, policy.priority, evaluated, breached,
                                 business_seconds)
            tx.after_commit(functools.partial(self.on_outcome, outcome))

    def _next_due(self, policy: str, agent_email: str, clock: sla.Clock, targets: sla.Targets,
                  now: datetime, *, ticked: bool = False) -> datetime | None:
        """The thread's next due time: its SLA's, or earlier when its agent's shift ends (or
        a colleague starts) before the pending response is due, to hand it over then.

        Right after a tick has looked at handing it over, a check at `now` would only
        repeat it, so it is left out.
        """
        due = sla.next_due(clock, targets, now)
        response = clock.response_due
        check = agents.next_check(self.team.members, current=agent_email,
                                  due=response[1] if response else None, policy=policy, now=now)
        if check is None or (ticked and check <= now):
            return due
        return check if due is None else min(due, check)

    # -- the scheduler's work -----------------------------------------------------------------

    def run_due(self, now: datetime, limit: int = 50) -> int:
        """Act on up to `limit` threads with something due at `now`; return how many.

        The first run also makes the waiting threads of every agent who is off shift or
        inactive now due, so that a changed rota (or a stop over a shift's end) is acted on.
        """
        if self._rechecked:
            # Most wake-ups find nothing due: look first without taking the write lock.
            next_at = self.store.next_due_time()
            if next_at is None or next_at > now:
                return 0
        opened = self._opened(now, limit) if self.updates.seen is not None else {}
        with self.store.transaction() as tx:
            if not self._rechecked:
                tx.recheck_agents(self.team.available(now), now)
                self._rechecked = True
            due = tx.due_threads(now, limit)
            for thread in due:
                self._tick(tx, thread, now, opened)
        return len(due)

    def _opened(self, now: datetime, limit: int) -> dict[str, bool]:
        """Whether the threads about to get a status update were opened, asked of the
        mailbox (`StatusUpdates.opened`) before the transaction that writes the updates,
        so that no lock is held while the IMAP server answers."""
        with self.store.transaction() as tx:
            due = [t for t in tx.due_threads(now, limit) if self._update_due(t, now)]
            sources = tx.customer_sources([t.id for t in due])
        return self.updates.opened(due, sources) if due else {}

    def _update_due(self, thread: Thread, now: datetime) -> bool:
        if not thread.clock:
            return False
        _policy, targets = self._policy(thread.policy)
        _clock, decisions = sla.tick(load_clock(thread.clock), now, targets)
        return any(isinstance(d, sla.StatusUpdate) for d in decisions)

    def _tick(self, tx: Tx, thread: Thread, now: datetime, opened: Mapping[str, bool]) -> None:
        policy, targets = self._policy(thread.policy)
        if not thread.clock:
            tx.update_thread(thread.id, next_due_at=None)
            return
        before = load_clock(thread.clock)
        self._hand_over(tx, thread, before, policy, now)
        clock, decisions = sla.tick(before, now, targets)
        for decision in decisions:
            self._act(tx, thread, policy=policy, clock=clock, decision=decision,
                      opened=opened, now=now)
        next_due = self._next_due(thread.policy, thread.agent_email, clock, targets, now,
                                  ticked=True)
        self._save(tx, thread, clock, targets, now, next_due_at=next_due)

    def _hand_over(self, tx: Tx, thread: Thread, clock: sla.Clock, policy: Policy,
                   now: datetime) -> None:
        """Move a waiting thread to a colleague on shift when its agent is away until after
        it is due (`core.agents.handover`). The customer is not told; a status update, if
        one goes out anyway, is signed by the new agent."""
        response = clock.response_due
        if response is None:
            return
        current = agents.find(self.team.members, thread.agent_email)
        if current is not None and current.on_shift(now):
            return
        moved = agents.handover(self.team.members, current=thread.agent_email,
                                due=response[1], policy=policy.name,
                                language=thread.language, now=now,
                                open_counts=tx.open_counts(), turn=tx.round_robin_turn())
        if moved is None:
            return
        agent = moved.to.agent
        reason = f"handed over: {moved.why}; {moved.to.reason}"
        tx.update_thread(thread.id, agent_name=agent.name, agent_email=agent.email,
                         assignment=reason)
        tx.event(thread.id, now, "reassigned",
                 f"from {thread.agent_name} to {agent.name}: {moved.why}; {moved.to.reason}")
        log.info("assignment %s", fields(event="reassigned", thread=thread.id,
                                         rule=moved.to.rule, policy=policy.name))
        # The loaded row serves the rest of this tick (status update, nudge): keep it current.
        former = thread.agent_name
        thread.agent_name, thread.agent_email, thread.assignment = agent.name, agent.email, reason
        self.handovers.tell(tx, thread, why="shift", by=former, now=now)

    def _act(self, tx: Tx, thread: Thread, *, policy: Policy, clock: sla.Clock,
             decision: sla.Decision, opened: Mapping[str, bool], now: datetime) -> None:
        if isinstance(decision, sla.Breach):
            self._outcome(tx, policy, decision.kind, evaluated=True, breached=True)
            tx.event(thread.id, now, "breach",
                     f"{decision.kind} was due {decision.due:%Y-%m-%d %H:%M} UTC")
            log.warning("sla %s", fields(event="breach", thread=thread.id, kind=decision.kind,
                                         policy=policy.name))
        elif isinstance(decision, sla.Escalate) and policy.escalate_to:
            self._notice(tx, thread, policy, kind="escalation", to=(policy.escalate_to, ""),
                         deadline=decision.kind, due=decision.due, now=now,
                         outbox_kind=f"escalation-{decision.kind}-{decision.due:%Y%m%dT%H%M%S}")
            tx.event(thread.id, now, "escalation", f"{decision.kind} escalated")
        elif isinstance(decision, sla.StatusUpdate):
            promise = self.updates.queue(tx, thread, decided=decision.due,
                                         number=clock.updates_sent,
                                         targets=self.targets[policy.name], opened=opened,
                                         now=now)
            tx.event(thread.id, now, "status_update",
                     f"promised {promise:%Y-%m-%d %H:%M} UTC")
        elif isinstance(decision, sla.Nudge):
            self._notice(tx, thread, policy, kind="nudge",
                         to=(thread.agent_email, thread.agent_name), deadline=decision.kind,
                         due=decision.due, now=now, outbox_kind=f"nudge-{clock.updates_sent}")
        elif isinstance(decision, sla.Resolved):
            if policy.resolution is not None and "resolution" not in clock.breached:
                self._outcome(tx, policy, "resolution", evaluated=True, breached=False,
                              business_seconds=clock.resolution_used.total_seconds())
            tx.event(thread.id, now, "resolved", decision.reason)

    def _notice(self, tx: Tx, thread: Thread, policy: Policy, *, kind: str,
                to: tuple[str, str], deadline: str, due: datetime, now: datetime,
                outbox_kind: str) -> None:
        """An internal mail to staff; `to` is (address, name)."""
        to_address, to_name = to
        support = self.config.support
        context = NoticeContext(
            kind=kind, to_name=to_name, to_address=to_address, support_name=support.name,
            support_address=support.address, thread_ref=thread.id, subject=thread.subject,
            customer_address=thread.customer, agent=Agent(thread.agent_name, thread.agent_email),
            policy=policy.name, priority=policy.priority, deadline=deadline, due=due,
            received=thread.created_at, timezone=support.timezone)
        message_id = make_message_id(support.domain)
        msg = self.renderer.render_notice(context, message_id=message_id, date=now, now=now)
        envelope = self.config.smtp.envelope_sender if self.config.smtp else ""
        queue_notice(tx, StaffNotice(thread.id, outbox_kind, "scheduler", to_address,
                                     message_id, msg.as_bytes()), envelope_from=envelope, now=now)
