"""Status updates to customers still waiting for an answer: what they say, and queueing them.

Public API: `StatusUpdates(config, renderer, team, store)` with `seen` (the mailbox's \\Seen
lookup, `io.imap_seen.SeenFlags`, set by the service; None: the mailbox is not asked),
`opened(threads, sources)` and `queue(tx, thread, *, decided, number, targets, opened, now)`.

An update says what the acknowledgement said, as it is now: it greets the customer by the
name the ack used, gives the time in the desk's zone and in the customer's (from the same
Date header offset), says who has the request and whether a person has opened it yet, its
place in its agent's queue (`Tx.queue_ahead`), and an honest time from the same data the
ack's promise came from (`core.standing.revised_promise`, `core.eta`), no earlier than the
agent's shift allows. Whether it was opened comes from the \\Seen flag of the customer's
messages in the support mailbox, asked before the scheduler's transaction (`opened`), or
from an agent's note or command on the thread since the customer wrote; when neither tells,
the update says nothing about it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from mailbridge.config import Config
from mailbridge.core import agents, sla
from mailbridge.core import calendar as cal
from mailbridge.core.model import UpdateContext
from mailbridge.core.standing import revised_promise
from mailbridge.daemon.team import Team
from mailbridge.io.imap_seen import Located
from mailbridge.mail.headers import make_message_id
from mailbridge.mail.render import Renderer
from mailbridge.store.db import Store
from mailbridge.store.tables import KnownId, OutboxItem, Thread
from mailbridge.store.tx import CustomerSource, Tx

SeenLookup = Callable[[Iterable[Located]], dict[Located, bool]]

PERSON_EVENTS = ("note", "assigned", "priority")
"""Thread events that only a person who read the thread causes: an agent's note or command."""


class StatusUpdates:
    def __init__(self, config: Config, renderer: Renderer, team: Team, store: Store) -> None:
        self.config = config
        self.renderer = renderer
        self.team = team
        self.store = store
        self.seen: SeenLookup | None = None

    def opened(self, threads: Sequence[Thread],
               sources: Sequence[CustomerSource]) -> dict[str, bool]:
        """Per thread of `threads`, whether the customer's messages it awaits an answer to
        (those of `sources` since it waits) were opened: True when one is \\Seen, False
        when the mailbox knows them all and none is; left out when it cannot tell."""
        if self.seen is None:
            return {}
        waiting = {t.id: t.waiting_since for t in threads if t.waiting_since is not None}
        wanted: dict[str, list[Located]] = {}
        for source in sources:
            since = waiting.get(source.thread_id)
            if since is not None and source.received_at >= since:
                wanted.setdefault(source.thread_id, []).append(
                    (source.account, source.mailbox, source.uidvalidity, source.uid))
        flags = self.seen([item for items in wanted.values() for item in items])
        found: dict[str, bool] = {}
        for thread_id, items in wanted.items():
            known = [flags[item] for item in items if item in flags]
            if any(known):
                found[thread_id] = True
            elif len(known) == len(items):
                found[thread_id] = False
        return found

    def queue(self, tx: Tx, thread: Thread, *, decided: datetime, number: int,
              targets: sla.Targets, opened: Mapping[str, bool], now: datetime) -> datetime:
        """Queue the thread's update number `number`; return the time it promises.

        `decided` is the time `core.sla` decided on; `opened` what the mailbox said
        (`opened`) before this transaction."""
        promise = self._promise(tx, thread, decided, targets, now)
        recipient = tx.ack_recipient(thread.id)
        if recipient is None:
            return promise
        parent, references = tx.latest_customer_message(thread.id)
        was_opened = opened.get(thread.id)
        if thread.waiting_since is not None and tx.has_event(thread.id, PERSON_EVENTS,
                                                             since=thread.waiting_since):
            was_opened = True
        ahead = None
        if thread.response_due_at is not None and thread.waiting_since is not None:
            ahead = tx.queue_ahead(thread.agent_email, due=thread.response_due_at,
                                   since=thread.waiting_since, thread_id=thread.id)
        offset = thread.customer_offset
        support = self.config.support
        context = UpdateContext(
            support_name=support.name, support_address=support.address,
            customer_name=thread.customer_name, customer_address=recipient,
            subject=thread.subject, thread_ref=thread.id,
            agent=self.team.agent(thread.agent_email, thread.agent_name), due=promise,
            timezone=support.timezone, received=thread.created_at, in_reply_to=parent,
            references=references, language=thread.language,
            customer_offset=None if offset is None else timedelta(minutes=offset),
            queue_ahead=ahead, opened=was_opened)
        message_id = make_message_id(support.domain)
        msg = self.renderer.render_status_update(context, message_id=message_id, date=now,
                                                 now=now)
        envelope = self.config.smtp.envelope_sender if self.config.smtp else ""
        tx.insert(OutboxItem, thread_id=thread.id, kind=f"update-{number}", mailbox="scheduler",
                  message_id=message_id, envelope_from=envelope, recipient=recipient,
                  body=msg.as_bytes(), state="pending", attempts=0, next_attempt_at=now,
                  created_at=now, arrived_at=now, sent_at=None, last_error="")
        # Its id links the customer's answers to the thread (staff notices: `daemon.notices`).
        tx.insert(KnownId, message_id=message_id, thread_id=thread.id, direction="out")
        return promise

    def _promise(self, tx: Tx, thread: Thread, decided: datetime, targets: sla.Targets,
                 now: datetime) -> datetime:
        """What recent first responses let us expect (as the ack promised) while that is
        still ahead, else `decided`; no earlier than the agent's shift allows."""
        promise = decided
        if thread.waiting_since is not None:
            settings = self.config.sla
            samples = tx.recent_first_responses(thread.policy, now - settings.eta_window)
            promise = revised_promise(
                decided, deadline=thread.response_due_at, waiting_since=thread.waiting_since,
                recent_seconds=samples, percentile=settings.eta_percentile,
                min_samples=settings.eta_min_samples, add_business=targets.add, now=now)
        return self._in_shift(thread, promise, now)

    def _in_shift(self, thread: Thread, promise: datetime, now: datetime) -> datetime:
        """`promise`, or later when the thread's agent is not on shift for that long: the
        time until it, counted in their shift (a status update on Saturday must not promise
        Saturday when they are back on Monday)."""
        member = agents.find(self.team.members, thread.agent_email)
        if member is None or not member.active or member.shift.always_open or promise <= now:
            return promise
        try:
            return max(promise, cal.add_business_time(member.shift, now, promise - now))
        except ValueError:  # no shift ahead within the calendar's horizon
            return promise
