"""A new thread opened: who answers it, by when, and its acknowledgement queued.

Public API: `Choice`, `Opened`, `Opener` (`open`).

`Ingestor` calls `Opener.open` inside a message's one transaction once the rules granted
an acknowledgement: it chooses the language, the agent (`core.agents.assign`) and the FAQ
articles, then writes the thread, its first event, the rendered acknowledgement in the
outbox and the acknowledgement's Message-ID.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailbridge.config import Config
from mailbridge.core import agents as roster
from mailbridge.core import calendar as cal
from mailbridge.core import eta, faq, threads
from mailbridge.core.language import choose_language
from mailbridge.core.model import AckContext, Address, FaqLink, InboundMessage
from mailbridge.daemon.deadlines import Deadlines, NewThread
from mailbridge.mail.headers import make_message_id
from mailbridge.mail.render import Renderer
from mailbridge.store.tables import KnownId, OutboxItem, Thread
from mailbridge.store.tx import Tx


def minutes(offset: timedelta | None) -> int | None:
    """A UTC offset in whole minutes, as the thread stores it."""
    return None if offset is None else int(offset.total_seconds() // 60)


@dataclass(frozen=True)
class Choice:
    """For a new thread: who answers, in which language, which articles help, by when."""

    assignment: roster.Assignment
    language: str
    language_reason: str
    faq: tuple[faq.Suggestion, ...]
    promise: datetime
    """The time the acknowledgement promises; not before the agent's shift allows."""


@dataclass(frozen=True)
class Opened:
    """A thread `open` wrote: its reference, the choice, the first-response deadline, the
    acknowledgement's Message-ID and the open requests ahead of it in its agent's queue."""

    thread_id: str
    choice: Choice
    due: datetime
    ack_id: str
    queue_ahead: int


class Opener:
    """Opens new threads in the store (shares the `Deadlines` and `Renderer` of its ingestor)."""

    def __init__(self, config: Config, deadlines: Deadlines, renderer: Renderer, *,
                 entropy: Callable[[int], bytes] = os.urandom) -> None:
        self.config = config
        self.deadlines = deadlines
        self.renderer = renderer
        self.entropy = entropy

    def open(self, tx: Tx, message: InboundMessage, mailbox: str, customer: str,
             target: Address, *, received: datetime, now: datetime) -> Opened:
        """Open a thread for `message` (arrived in `mailbox`) and queue its acknowledgement
        to `target`."""
        thread_id = self._new_thread_id(tx)
        new = self.deadlines.open_thread(tx, message, mailbox, received)
        choice = self._choose(tx, message, customer, new, received=received, now=now)
        due = new.clock.first_response_due
        assert due is not None
        ack_id, ahead = self._queue_ack(tx, message, mailbox, customer, target,
                                        thread_id=thread_id, choice=choice, new=new,
                                        received=received, now=now)
        return Opened(thread_id, choice, due, ack_id, ahead)

    def _new_thread_id(self, tx: Tx) -> str:
        return tx.reads.free_thread_id(
            lambda count: [threads.make_ref(self.entropy(threads.REF_LENGTH))
                           for _ in range(count)])

    def _choose(self, tx: Tx, message: InboundMessage, customer: str, new: NewThread, *,
                received: datetime, now: datetime) -> Choice:
        """The language, the agent (`core.agents.assign`) and the FAQ articles of a new
        thread. When nobody is on shift, the promise is no earlier than the business time it
        allows, counted from the start of the agent's shift; an agent chosen for the
        customer's language starts before the deadline, which is then the promise."""
        team = self.deadlines.team
        language, language_reason = choose_language(
            message.header("content-language"), policy=new.policy.language,
            support=self.config.support.language, available=self.renderer.languages)
        last = tx.last_agent(customer) if customer else None
        assignment = roster.assign(
            team.members, policy=new.policy.name, language=language, now=now,
            open_counts=tx.open_counts(), turn=tx.round_robin_turn(),
            last=roster.LastContact(*last) if last is not None else None,
            due=new.clock.first_response_due)
        promise = new.promise
        member = roster.find(team.members, assignment.agent.email)
        if assignment.rule == "language" and new.clock.first_response_due is not None:
            promise = new.clock.first_response_due
        elif assignment.starts_at is not None and member is not None:
            needed = self.deadlines.targets[new.policy.name].measure(received, new.promise)
            promise = max(promise, cal.add_business_time(member.shift, assignment.starts_at,
                                                         needed))
        suggestions = faq.suggest(team.articles, subject=message.subject, text=message.text,
                                  language=language)
        return Choice(assignment, language, language_reason, suggestions, promise)

    def _queue_ack(self, tx: Tx, message: InboundMessage, mailbox: str, customer: str,
                   target: Address, *, thread_id: str, choice: Choice, new: NewThread,
                   received: datetime, now: datetime) -> tuple[str, int]:
        """Write the thread, the rendered acknowledgement and its Message-ID; return the id
        and the requests ahead of it in its agent's queue, which the acknowledgement says.
        Counted after `_choose` took the round-robin turn (see `Tx.queue_ahead`)."""
        support = self.config.support
        due = new.clock.first_response_due
        assert due is not None
        assignment = choice.assignment
        agent = assignment.agent
        ahead = tx.queue_ahead(agent.email, due=due, since=received, thread_id=thread_id)
        offset = eta.customer_offset(message.date)
        context = AckContext(
            support_name=support.name, support_address=support.address,
            customer_name=target.name, customer_address=target.addr, subject=message.subject,
            thread_ref=thread_id, agent=agent, due=choice.promise, timezone=support.timezone,
            received=received, customer_offset=offset, opens_at=new.opens_at,
            language=choice.language, faq=tuple(FaqLink(s.title, s.url) for s in choice.faq),
            agent_starts_at=choice.assignment.starts_at, queue_ahead=ahead,
        )
        ack_id = make_message_id(support.domain)
        ack = self.renderer.render_ack(context, message, message_id=ack_id, date=now, now=now)
        tx.insert(Thread, id=thread_id, created_at=received, customer=customer,
                  subject=message.subject, agent_name=agent.name, agent_email=agent.email,
                  state="awaiting_agent", first_response_due=due,
                  subject_key=threads.normalize_subject(message.subject),
                  language=choice.language, assignment=assignment.reason,
                  customer_name=target.name, customer_offset=minutes(offset),
                  **self.deadlines.thread_columns(new, now, agent.email))
        tx.event(thread_id, received, "opened",
                 f"policy {new.policy.name} ({new.why}), assigned to {agent.name} "
                 f"({assignment.reason}), in {choice.language} ({choice.language_reason})")
        envelope_from = self.config.smtp.envelope_sender if self.config.smtp else ""
        tx.insert(OutboxItem, thread_id=thread_id, kind="ack", mailbox=mailbox,
                  message_id=ack_id, envelope_from=envelope_from, recipient=target.addr,
                  body=ack.as_bytes(), state="pending", attempts=0, next_attempt_at=now,
                  created_at=now, arrived_at=received, sent_at=None, last_error="")
        # A fresh Message-ID of our own domain: no need to look it up first.
        tx.insert(KnownId, message_id=ack_id, thread_id=thread_id, direction="out")
        # Agents with [[agents]] notify "new" hear of it at once; for the others, the thread
        # just written is not read back (that read cost a third of recording a message).
        if self.deadlines.handovers.wants(agent.email, why="new"):
            row = tx.thread(thread_id)
            if row is not None:
                self.deadlines.handovers.tell(tx, row, why="new", by="", now=now,
                                              text=message.text)
        return ack_id, ahead
