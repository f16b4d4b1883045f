"""The SLA side of the daemon: a thread's clock through its events, and the scheduler's work.

Public API: `targets_for(policy, settings)`, `Deadlines` (`open_thread`, `customer_wrote`,
`agent_replied`, `run_due`).

The decisions come from the pure `core.sla`; this module loads and stores the
clock, records events, and turns decisions into outbox mail (status updates to
the customer, nudges to the agent, escalations to the lead), each in the same
transaction as the clock that caused it. Outbox kinds are unique per thread
("update-1", "escalation-first_response"), so nothing is ever sent twice.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import datetime

from mailbridge.clock import Clock as TimeSource
from mailbridge.config import Config, SlaSettings
from mailbridge.core import calendar as cal
from mailbridge.core import eta, sla
from mailbridge.core.model import Agent, InboundMessage, NoticeContext, UpdateContext
from mailbridge.core.policy import Policy
from mailbridge.logs import fields
from mailbridge.mail.headers import make_message_id
from mailbridge.mail.render import Renderer
from mailbridge.policies import PolicySet
from mailbridge.store.codec import dump_clock, load_clock
from mailbridge.store.db import Store, Tx
from mailbridge.store.tables import KnownId, OutboxItem, Thread

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

    def thread_columns(self, new: NewThread, now: datetime) -> dict[str, object]:
        """The SLA columns of a new thread row."""
        targets = self.targets[new.policy.name]
        return {"policy": new.policy.name, "priority": new.policy.priority,
                "clock": dump_clock(new.clock),
                "next_due_at": sla.next_due(new.clock, targets, now)}

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
        _policy, targets = self._policy(thread.policy)
        after, decisions = sla.agent_reply(load_clock(thread.clock), at, targets)
        responded = next((d for d in decisions if isinstance(d, sla.Responded)), None)
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

    def _save(self, tx: Tx, thread: Thread, clock: sla.Clock, targets: sla.Targets,
              now: datetime, **columns: object) -> None:
        tx.update_thread(thread.id, state=clock.state, clock=dump_clock(clock),
                         next_due_at=sla.next_due(clock, targets, now), **columns)

    # -- the scheduler's work -----------------------------------------------------------------

    def run_due(self, now: datetime, limit: int = 50) -> int:
        """Act on up to `limit` threads with something due at `now`; return how many."""
        with self.store.transaction() as tx:
            due = tx.due_threads(now, limit)
            for thread in due:
                self._tick(tx, thread, now)
        return len(due)

    def _tick(self, tx: Tx, thread: Thread, now: datetime) -> None:
        policy, targets = self._policy(thread.policy)
        if not thread.clock:
            tx.update_thread(thread.id, next_due_at=None)
            return
        clock, decisions = sla.tick(load_clock(thread.clock), now, targets)
        for decision in decisions:
            self._act(tx, thread, policy=policy, clock=clock, decision=decision, now=now)
        self._save(tx, thread, clock, targets, now)

    def _act(self, tx: Tx, thread: Thread, *, policy: Policy, clock: sla.Clock,
             decision: sla.Decision, now: datetime) -> None:
        if isinstance(decision, sla.Breach):
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
            self._status_update(tx, thread, promise=decision.due, number=clock.updates_sent,
                                now=now)
            tx.event(thread.id, now, "status_update",
                     f"promised {decision.due:%Y-%m-%d %H:%M} UTC")
        elif isinstance(decision, sla.Nudge):
            self._notice(tx, thread, policy, kind="nudge",
                         to=(thread.agent_email, thread.agent_name), deadline=decision.kind,
                         due=decision.due, now=now, outbox_kind=f"nudge-{clock.updates_sent}")
        elif isinstance(decision, sla.Resolved):
            tx.event(thread.id, now, "resolved", decision.reason)

    def _queue(self, tx: Tx, thread: Thread, *, kind: str, recipient: str, body: bytes,
               message_id: str, now: datetime, customer_facing: bool = True) -> None:
        envelope = self.config.smtp.envelope_sender if self.config.smtp else ""
        tx.insert(OutboxItem, thread_id=thread.id, kind=kind, mailbox="scheduler",
                  message_id=message_id, envelope_from=envelope, recipient=recipient, body=body,
                  state="pending", attempts=0, next_attempt_at=now, created_at=now,
                  arrived_at=now, sent_at=None, last_error="")
        if customer_facing:
            # Only mail the customer sees links their answers to the thread; a lead's
            # reply to an escalation must not count as the customer writing again.
            tx.insert(KnownId, message_id=message_id, thread_id=thread.id, direction="out")

    def _status_update(self, tx: Tx, thread: Thread, *, promise: datetime, number: int,
                       now: datetime) -> None:
        recipient = tx.ack_recipient(thread.id)
        if recipient is None:
            return
        parent, references = tx.latest_customer_message(thread.id)
        support = self.config.support
        context = UpdateContext(
            support_name=support.name, support_address=support.address, customer_name="",
            customer_address=recipient, subject=thread.subject, thread_ref=thread.id,
            agent=Agent(thread.agent_name, thread.agent_email), due=promise,
            timezone=support.timezone, received=thread.created_at, in_reply_to=parent,
            references=references)
        message_id = make_message_id(support.domain)
        msg = self.renderer.render_status_update(context, message_id=message_id, date=now,
                                                 now=now)
        self._queue(tx, thread, kind=f"update-{number}", recipient=recipient,
                    body=msg.as_bytes(), message_id=message_id, now=now)

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
        self._queue(tx, thread, kind=outbox_kind, recipient=to_address, body=msg.as_bytes(),
                    message_id=message_id, now=now, customer_facing=False)
