"""One inbound message in: decide with the core, record it, queue the acknowledgement.

Public API: `Source`, `Incoming`, `Outcome`, `Ingestor`.

The same `Ingestor` serves the IMAP watcher, `replay` and the demo, so a dry
run shows exactly what the daemon would do. Each message is one transaction:
the message row, its thread, the known Message-IDs, the outbox row and the
mailbox cursor are committed together or not at all. A mailbox catching up
records a fetched batch in one transaction (`ingest_many`), all or nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError

from mailbridge.clock import Clock as TimeSource
from mailbridge.config import Config
from mailbridge.core import eta, rules, threads
from mailbridge.core.model import Agent, InboundMessage, Verdict
from mailbridge.daemon.bounces import record_bounce
from mailbridge.daemon.deadlines import Deadlines
from mailbridge.daemon.notices import is_notice
from mailbridge.daemon.opening import Choice, Opener, minutes
from mailbridge.daemon.policies import build_policies
from mailbridge.daemon.staff import RELAY_MAILBOX, Relayed, StaffMail
from mailbridge.daemon.unverified import StaffTrust
from mailbridge.logs import fields
from mailbridge.mail.render import Branding, Renderer
from mailbridge.store.db import Store
from mailbridge.store.tables import EXCERPT_CHARS, KnownId, Message
from mailbridge.store.tx import Tx

log = logging.getLogger(__name__)

FLOOD_WINDOW = timedelta(minutes=1)
"""The global cap counts the threads started in this window before a message arrived."""
RACE_ATTEMPTS = 3
"""How often one message is decided again after losing a race to another instance."""


def _constraint(exc: IntegrityError) -> str:
    """Which constraint refused the row (for the log; never the values, which hold PII)."""
    diag = getattr(exc.orig, "diag", None)
    name = getattr(diag, "constraint_name", None)
    if name:
        return str(name)
    text = str(exc.orig).splitlines()[0] if exc.orig is not None else ""
    return text.split(":", 1)[-1].strip()[:100]


@dataclass(frozen=True)
class Source:
    """Where a message came from: an IMAP mailbox and UID, or a file."""

    mailbox: str
    uidvalidity: int | None = None
    uid: int | None = None
    label: str = ""
    account: str = ""
    """The IMAP account of `mailbox` (`ImapSettings.account`); "" for none (relay, files)."""

    def describe(self) -> str:
        if self.label:
            return self.label
        return f"{self.mailbox}/{self.uidvalidity}:{self.uid}"


@dataclass(frozen=True)
class Incoming:
    """One message to record: parsed (None when it could not be, `error` says why), where
    it came from and when it arrived."""

    source: Source
    message: InboundMessage | None
    received: datetime
    size: int = 0
    error: str = ""


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
    queued: int = 0
    """Staff mail only: outbox rows queued besides an ack (relayed copies, one per recipient,
    or the mail that tells an agent their commands were wrong)."""
    choice: Choice | None = None
    """A new thread's assignment, language and FAQ articles, with their reasons."""
    queue_ahead: int | None = None
    """A new thread: the open requests ahead of it in its agent's queue, as its ack says (at
    most `core.standing.QUEUE_CAP`, which means that many or more)."""
    bounced: str | None = None
    """"bounce" or "complaint": it reported our mail failed (`mailbridge.daemon.bounces`)."""


class Ingestor:
    """Decides and records inbound messages against one store."""

    def __init__(self, config: Config, store: Store, renderer: Renderer, deadlines: Deadlines,
                 *, entropy: Callable[[int], bytes] = os.urandom) -> None:
        self.config = config
        self.store = store
        self.renderer = renderer
        self.deadlines = deadlines
        self.opener = Opener(config, deadlines, renderer, entropy=entropy)
        self.sent_folders = frozenset(config.imap.sent_names if config.imap else ())
        policies = deadlines.policies
        self.leads = frozenset(p.escalate_to.lower() for p in (policies.default, *policies.policies)
                               if p.escalate_to) | {lead.lower() for lead in config.support.leads}
        # The roster as configured (names, signatures, aliases), built once in Deadlines.
        self.agents = tuple(member.agent for member in deadlines.team.members)
        self.agent_emails = frozenset(agent.email.lower() for agent in self.agents)
        self.windows = threads.Windows(same_subject=config.threads.same_subject_window,
                                       burst=config.threads.burst_window)
        # How far back a customer's threads matter: subject matching, bursts, the cap.
        self.history = max(config.threads.same_subject_window, config.threads.burst_window,
                           config.rules.sender_cap_window)
        r = config.rules
        self.policy = rules.RulePolicy(
            support_addresses=frozenset(config.support.addresses), reply_to=r.reply_to,
            require_addressed=r.require_addressed,
            robot_senders=tuple(p.lower() for p in r.robot_senders),
            spam_header=r.spam_header.lower(), spam_value=r.spam_value.lower(),
            dmarc_check=r.dmarc_check, trusted_authserv_id=r.trusted_authserv_id,
            sender_cap=r.sender_cap, global_cap_per_minute=r.global_cap_per_minute)
        # Staff mail is judged only on being automatic: agents are not customers.
        self.staff_policy = replace(self.policy, support_addresses=frozenset(),
                                    require_addressed=False)
        self.staff = StaffMail(config, deadlines, agents=self.agents,
                               staff_policy=self.staff_policy, sent_folders=self.sent_folders)
        names = {lead: lead for lead in self.leads} | {a.email.lower(): a.name for a in self.agents}
        self.trust = StaffTrust(config, names=names, sent_folders=self.sent_folders)

    @classmethod
    def create(cls, config: Config, store: Store, clock: TimeSource) -> Ingestor:
        """An ingestor with its renderer, policies and deadlines built from `config`."""
        renderer = Renderer(config.templates.dir, default_language=config.support.language,
                            branding=Branding.of(config.support))
        deadlines = Deadlines(config, build_policies(config), store, renderer, clock)
        return cls(config, store, renderer, deadlines)

    def ingest(self, message: InboundMessage, source: Source, *, received: datetime,
               now: datetime) -> Outcome:
        """Record `message` with its decision; queue an acknowledgement if one is due.

        Another instance may record the same message (or its Message-ID) at the same
        moment; the schema's unique constraints let only one transaction commit. The
        loser's transaction rolls back whole, ack included, and is decided again: it
        then finds the message recorded, or joins the winner's thread.
        """
        return self._alone(Incoming(source, message, received), now)

    def _alone(self, item: Incoming, now: datetime) -> Outcome:
        """Record `item` in a transaction of its own, deciding again after a lost race."""
        for attempt in range(1, RACE_ATTEMPTS + 1):
            try:
                with self.store.transaction() as tx:
                    outcome = self._record_one(tx, item, now)
                    self._advance(tx, [item.source], now)
                return outcome
            except IntegrityError as exc:
                if attempt == RACE_ATTEMPTS:
                    raise
                log.info("message %s", fields(event="lost_race", source=item.source.describe(),
                                              attempt=attempt, constraint=_constraint(exc)))
        raise AssertionError("unreachable")

    def ingest_many(self, items: Sequence[Incoming], *, now: datetime) -> list[Outcome]:
        """Record several messages in one transaction, in order (a mailbox catching up).

        The same decisions as `ingest` one by one, without a commit and a cursor
        update per message. Raises what one message raises, `IntegrityError` when
        another instance recorded one of them meanwhile: nothing of the batch is
        then committed, and the caller records them one at a time with `ingest`
        and `record_failure`, which decide each again and keep a bad one apart.
        """
        messages = [item.message for item in items if item.message is not None]
        with self.store.transaction() as tx:
            tx.read_known_ids([key for message in messages for key in self._linked_keys(message)])
            tx.reads.start_batch(
                [message.author.addr.lower() for message in messages if message.author],
                [item.received.astimezone(UTC) - FLOOD_WINDOW for item in items])
            outcomes = [self._record_one(tx, item, now) for item in items]
            self._advance(tx, [item.source for item in items], now)
            return outcomes

    def _record_one(self, tx: Tx, item: Incoming, now: datetime) -> Outcome:
        source, received = item.source, item.received.astimezone(UTC)
        if item.message is None:
            return self._failure_row(tx, source, item.error, size=item.size, received=received,
                                     now=now)
        if tx.source_recorded(source.account, source.mailbox, source.uidvalidity, source.uid):
            verdict = Verdict(False, "already_recorded", "this UID was recorded before")
            return Outcome(source, item.message.message_id, verdict, None, None, None, None,
                           None, received, recorded=False)
        return self._decide_and_record(tx, item.message, source, received, now)

    @staticmethod
    def _advance(tx: Tx, sources: Sequence[Source], now: datetime) -> None:
        """Move each mailbox's cursor past the last of `sources` it holds."""
        last: dict[tuple[str, str, int], int] = {}
        for source in sources:
            if source.uid is not None and source.uidvalidity is not None:
                key = (source.account, source.mailbox, source.uidvalidity)
                last[key] = max(last.get(key, 0), source.uid)
        for (account, mailbox, uidvalidity), uid in last.items():
            tx.advance_cursor(account, mailbox, uidvalidity, uid, now)

    def relay(self, message: InboundMessage, relayed: Relayed, *, received: datetime,
              now: datetime) -> Outcome:
        """Record mail an agent submitted through the relay, at the moment it was accepted
        (`received`), and queue it upstream, all in one transaction. An error propagates:
        the relay then answers 451 and the agent's client sends it again."""
        received = received.astimezone(UTC)
        source = Source(RELAY_MAILBOX, label=f"{RELAY_MAILBOX}/{message.message_id or ''}")
        with self.store.transaction() as tx:
            return self._decide_and_record(tx, message, source, received, now, relayed=relayed)

    def record_failure(self, source: Source, error: str, *, size: int, received: datetime,
                       now: datetime) -> Outcome:
        """Record a message that could not be processed at all, so it is never lost."""
        return self._alone(Incoming(source, None, received, size, error), now)

    @staticmethod
    def _failure_row(tx: Tx, source: Source, error: str, *, size: int, received: datetime,
                     now: datetime) -> Outcome:
        verdict = Verdict(False, "internal_error", f"could not be processed: {error}"[:500])
        if not tx.source_recorded(source.account, source.mailbox, source.uidvalidity,
                                  source.uid):
            tx.insert(Message, source=source.describe(), account=source.account,
                      mailbox=source.mailbox, uidvalidity=source.uidvalidity, uid=source.uid,
                      message_id=None, sender="", subject="", size=size, received_at=received,
                      recorded_at=now, thread_id=None, action="ignore", rule=verdict.rule,
                      reason=verdict.detail, defects="")
        return Outcome(source, None, verdict, None, None, None, None, None, received)

    @staticmethod
    def _linked_keys(message: InboundMessage) -> list[str]:
        """The keys a message may be known by: its Message-ID, those it refers to, and its
        Thread-Index key."""
        index_key = threads.thread_index_key(message.header("thread-index"))
        return [k for k in (message.message_id, *threads.linked_ids(message), index_key) if k]

    def _is_staff(self, sender: str, source: Source) -> bool:
        """Mail from an agent or a lead (anywhere), or from the support address in a Sent
        folder: never acknowledged, and a response only when it answers the thread."""
        if sender in self.agent_emails or sender in self.leads:
            return True
        return source.mailbox in self.sent_folders and sender in self.policy.support_addresses

    def _decide_and_record(self, tx: Tx, message: InboundMessage, source: Source,
                           received: datetime, now: datetime, *,
                           relayed: Relayed | None = None) -> Outcome:
        author = message.author
        customer = author.addr.lower() if author else ""
        mid = message.message_id
        index_key = threads.thread_index_key(message.header("thread-index"))
        known = tx.known_ids(self._linked_keys(message))
        staff = relayed is not None or self._is_staff(customer, source)
        # Staff mail in the INBOX counts as theirs only when our mail server vouches for it.
        unverified = self.trust.unverified(message, customer, source.mailbox) \
            if staff and relayed is None else ""
        staff = staff and not unverified
        recent = tx.recent_threads(customer, received - self.history) \
            if customer and not staff else []
        ref = threads.subject_ref(message.subject)
        # Only staff answer our notices: a customer's mail never joins a thread through one.
        links = {key: thread for key, (thread, direction) in known.items()
                 if staff or not is_notice(direction)}
        thread_id, link = threads.find_thread(
            message, known=links,
            ref_owner=tx.thread_customer(ref) if ref else None, customer=customer,
            agents=self.agent_emails | (self.policy.support_addresses if staff else frozenset()),
            recent=recent, windows=self.windows, now=received)
        seen = known.get(mid or "", ("", ""))[1]
        if staff:
            return self._staff_message(tx, message, source, received=received, now=now,
                                       thread_id=thread_id, duplicate=seen != "",
                                       relayed=relayed)
        context = rules.RuleContext(
            policy=self.policy, thread=thread_id, thread_link=link,
            duplicate=seen == "in" or (seen == "agent" and bool(unverified)),
            own_message=seen == "out" or is_notice(seen), unverified_staff=unverified)
        verdict = rules.evaluate(message, context, rules.MESSAGE_RULES)
        if verdict.reply:  # only now count for the caps: most mail never gets here
            since = received - self.config.rules.sender_cap_window
            context = replace(context, sender_acks=sum(t.created_at >= since for t in recent),
                              acks_last_minute=tx.threads_started(received - FLOOD_WINDOW))
            verdict = rules.evaluate(message, context, rules.CAP_RULES)
        agent = due = ack_to = ack_id = choice = ahead = None
        queued = 0
        if verdict.reply:
            target = rules.recipient(message, self.policy)
            assert target is not None, "the rules refuse mail without a recipient"
            opened = self.opener.open(tx, message, source.mailbox, customer, target,
                                      received=received, now=now)
            thread_id, choice, due = opened.thread_id, opened.choice, opened.due
            agent, ack_id, ahead = choice.assignment.agent, opened.ack_id, opened.queue_ahead
            ack_to = target.addr
        elif verdict.rule == "unverified_agent":
            queued = self._unverified(tx, message, customer, thread_id, received=received,
                                      now=now)
        elif verdict.rule == "follow_up" and thread_id is not None:
            self.deadlines.customer_wrote(tx, thread_id, received)
            offset = eta.customer_offset(message.date)
            if offset is not None:  # status updates give the time on their clock as it is now
                tx.update_thread(thread_id, customer_offset=minutes(offset))
        bounced = None if verdict.reply else record_bounce(tx, message, verdict, received=received)
        tx.insert(
            Message, source=source.describe(), account=source.account, mailbox=source.mailbox,
            uidvalidity=source.uidvalidity, uid=source.uid, message_id=mid, sender=customer,
            subject=message.subject, received_at=received, recorded_at=now, size=message.size,
            thread_id=thread_id, action="acknowledge" if verdict.reply else "ignore",
            rule=verdict.rule, reason=verdict.detail, defects="\n".join(message.defects),
            excerpt=message.text[:EXCERPT_CHARS] if thread_id else "",
        )
        if thread_id and not context.duplicate and not unverified:
            for key in (mid, index_key):
                if key and key not in known:
                    tx.insert(KnownId, message_id=key, thread_id=thread_id, direction="in")
        return Outcome(source, mid, verdict, thread_id, agent, due, ack_to, ack_id, received,
                       choice=choice, queued=queued, queue_ahead=ahead,
                       bounced=bounced.kind if bounced else None)

    def _unverified(self, tx: Tx, message: InboundMessage, sender: str, thread_id: str | None,
                    *, received: datetime, now: datetime) -> int:
        """Staff mail nothing vouched for: a line in its thread's history (`threads`
        counts them), and the notice to the address it names (`daemon.unverified`)."""
        if thread_id is not None:
            tx.event(thread_id, received, "unverified_agent",
                     "mail from a staff address was not authenticated; it did not count")
        return self.trust.notify(tx, message, sender, thread_id=thread_id, now=now)

    def _staff_message(self, tx: Tx, message: InboundMessage, source: Source, *,
                       received: datetime, now: datetime, thread_id: str | None,
                       duplicate: bool, relayed: Relayed | None = None) -> Outcome:
        """An agent's mail (`mailbridge.daemon.staff`): a reply stops the thread's clock, commands
        steer it; never an acknowledgement."""
        result = self.staff.record(
            tx, message, source.mailbox, source.describe(), received=received, now=now,
            thread_id=thread_id, duplicate=duplicate, relayed=relayed,
            uidvalidity=source.uidvalidity, uid=source.uid, account=source.account)
        return Outcome(source, message.message_id, result.verdict, thread_id, None, None, None,
                       None, received, queued=result.queued)
