"""One inbound message in: decide with the core, record it, queue the acknowledgement.

Public API: `Source`, `Outcome`, `Ingestor`.

The same `Ingestor` serves the IMAP watcher, `replay` and the demo, so a dry
run shows exactly what the daemon would do. Each message is one transaction:
the message row, its thread, the known Message-IDs, the outbox row and the
mailbox cursor are committed together or not at all.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from mailbridge.config import Config
from mailbridge.core import agents as roster
from mailbridge.core import rules, sla, threads
from mailbridge.core.model import AckContext, Agent, InboundMessage, Verdict
from mailbridge.mail.headers import make_message_id
from mailbridge.mail.render import Renderer
from mailbridge.store.db import Store, Tx
from mailbridge.store.tables import KnownId, Message, OutboxItem, Thread


@dataclass(frozen=True)
class Source:
    """Where a message came from: an IMAP mailbox and UID, or a file."""

    mailbox: str
    uidvalidity: int | None = None
    uid: int | None = None
    label: str = ""

    def describe(self) -> str:
        if self.label:
            return self.label
        return f"{self.mailbox}/{self.uidvalidity}:{self.uid}"


@dataclass(frozen=True)
class Outcome:
    """What happened to one message; `recorded` is False for an already-seen source."""

    source: Source
    message_id: str | None
    verdict: Verdict
    thread: str | None
    agent: Agent | None
    due: datetime | None
    ack_to: str | None
    ack_message_id: str | None
    received: datetime
    recorded: bool = True


class Ingestor:
    """Decides and records inbound messages against one store."""

    def __init__(self, config: Config, store: Store, renderer: Renderer, *,
                 entropy: Callable[[int], bytes] = os.urandom) -> None:
        self.config = config
        self.store = store
        self.renderer = renderer
        self.entropy = entropy
        self.agents = tuple(Agent(a.name, a.email) for a in config.agents)
        self.support_addresses = frozenset(config.support.addresses)

    def ingest(self, message: InboundMessage, source: Source, *, received: datetime,
               now: datetime) -> Outcome:
        """Record `message` with its decision; queue an acknowledgement if one is due."""
        received = received.astimezone(UTC)
        with self.store.transaction() as tx:
            if tx.source_recorded(source.mailbox, source.uidvalidity, source.uid):
                verdict = Verdict(False, "already_recorded", "this UID was recorded before")
                return Outcome(source, message.message_id, verdict, None, None, None, None, None,
                               received, recorded=False)
            outcome = self._decide_and_record(tx, message, source, received, now)
            if source.uid is not None and source.uidvalidity is not None:
                tx.advance_cursor(source.mailbox, source.uidvalidity, source.uid, now)
            return outcome

    def record_failure(self, source: Source, error: str, *, size: int, received: datetime,
                       now: datetime) -> Outcome:
        """Record a message that could not be processed at all, so it is never lost."""
        verdict = Verdict(False, "internal_error", f"could not be processed: {error}"[:500])
        with self.store.transaction() as tx:
            if not tx.source_recorded(source.mailbox, source.uidvalidity, source.uid):
                tx.insert(Message, source=source.describe(), mailbox=source.mailbox,
                          uidvalidity=source.uidvalidity, uid=source.uid, message_id=None,
                          sender="", subject="", size=size, received_at=received,
                          recorded_at=now, thread_id=None, action="ignore", rule=verdict.rule,
                          reason=verdict.detail, defects="")
            if source.uid is not None and source.uidvalidity is not None:
                tx.advance_cursor(source.mailbox, source.uidvalidity, source.uid, now)
        return Outcome(source, None, verdict, None, None, None, None, None, received)

    def _decide_and_record(self, tx: Tx, message: InboundMessage, source: Source,
                           received: datetime, now: datetime) -> Outcome:
        thread_id = self._find_thread(tx, message)
        context = rules.RuleContext(
            support_addresses=self.support_addresses,
            thread=thread_id,
            duplicate=bool(message.message_id) and tx.message_id_recorded(message.message_id or ""),
        )
        verdict = rules.evaluate(message, context)
        agent = due = ack_to = ack_id = None
        if verdict.reply:
            thread_id = self._new_thread_id(tx)
            agent = roster.round_robin(self.agents, tx.take_turn("round_robin"))
            due = sla.first_response_due(received, self.config.sla.first_response)
            ack_to, ack_id = self._queue_ack(tx, message, source, thread_id=thread_id,
                                             agent=agent, due=due, received=received, now=now)
        author = message.author
        tx.insert(
            Message, source=source.describe(), mailbox=source.mailbox,
            uidvalidity=source.uidvalidity, uid=source.uid, message_id=message.message_id,
            sender=author.addr.lower() if author else "", subject=message.subject,
            received_at=received, recorded_at=now, size=message.size, thread_id=thread_id,
            action="acknowledge" if verdict.reply else "ignore", rule=verdict.rule,
            reason=verdict.detail, defects="\n".join(message.defects),
        )
        if message.message_id and thread_id and not context.duplicate:
            tx.know_id(message.message_id, thread_id, "in")
        return Outcome(source, message.message_id, verdict, thread_id, agent, due, ack_to,
                       ack_id, received)

    def _find_thread(self, tx: Tx, message: InboundMessage) -> str | None:
        found = tx.thread_for_ids(threads.linked_ids(message))
        if found is not None:
            return found
        ref = threads.subject_ref(message.subject)
        author = message.author
        if ref is None or author is None:
            return None
        # A guessed reference must not join a stranger's thread.
        if tx.thread_customer(ref) == author.addr.lower():
            return ref
        return None

    def _new_thread_id(self, tx: Tx) -> str:
        while True:
            candidate = threads.make_ref(self.entropy(threads.REF_LENGTH))
            if tx.thread_customer(candidate) is None:
                return candidate

    def _queue_ack(self, tx: Tx, message: InboundMessage, source: Source, *, thread_id: str,
                   agent: Agent, due: datetime, received: datetime,
                   now: datetime) -> tuple[str, str]:
        author = message.author
        assert author is not None  # the no_sender rule guarantees it
        support = self.config.support
        context = AckContext(
            support_name=support.name, support_address=support.address,
            customer_name=author.name, customer_address=author.addr, subject=message.subject,
            thread_ref=thread_id, agent=agent, due=due, timezone=support.timezone,
            received=received,
        )
        ack_id = make_message_id(support.domain)
        ack = self.renderer.render_ack(context, message, message_id=ack_id, date=now, now=now)
        tx.insert(Thread, id=thread_id, created_at=received, customer=author.addr.lower(),
                  subject=message.subject, agent_name=agent.name, agent_email=agent.email,
                  state="awaiting_agent", first_response_due=due)
        envelope_from = self.config.smtp.envelope_sender if self.config.smtp else ""
        tx.insert(OutboxItem, thread_id=thread_id, kind="ack", mailbox=source.mailbox,
                  message_id=ack_id, envelope_from=envelope_from, recipient=author.addr,
                  body=ack.as_bytes(), state="pending", attempts=0, next_attempt_at=now,
                  created_at=now, arrived_at=received, sent_at=None, last_error="")
        # A fresh Message-ID of our own domain: no need to look it up first.
        tx.insert(KnownId, message_id=ack_id, thread_id=thread_id, direction="out")
        return author.addr, ack_id
