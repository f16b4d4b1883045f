"""Recording inbound mail for the service: the watchers' batches, the relay's submissions and
single raw messages; each outcome counted and logged, the sender and scheduler woken.

Public API: `Recorder` (`deliver`, `ingest_raw`, `relay_submit`), `message_hash(message_id)`,
`MESSAGES_PER_TRANSACTION`.

Every call runs in a watcher or worker thread. The `Ingestor` is taken from `ingestor()` once
per batch or message, so a reloaded configuration (`mailbridge.daemon.reload`) decides from
the next one on, never half of one. A message is never lost to a bug: when deciding it
raises, it is recorded with its arrival time and the error, and the rest of its batch goes on.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Literal

from mailbridge.clock import Clock
from mailbridge.daemon.ingest import Incoming, Ingestor, Outcome, Source
from mailbridge.daemon.staff import FORWARDED_RULES, RELAY_MAILBOX, prepare_relayed
from mailbridge.errors import RefusedError, TransientError
from mailbridge.io.imap_watcher import Fetched
from mailbridge.io.relay import Submission, Submitted
from mailbridge.logs import fields
from mailbridge.mail.headers import format_address
from mailbridge.mail.parse import parse_message
from mailbridge.metrics.families import Metrics

log = logging.getLogger(__name__)

MESSAGES_PER_TRANSACTION = 50
"""A mailbox catching up records this many messages per transaction: fewer commits, while
the sender still gets the (SQLite) write lock between them."""


_KEPT: dict[str, Literal["applied", "noted", "duplicate"]] = {
    "agent_command": "applied", "notice_reply": "noted", "duplicate": "duplicate"}
"""What the relay tells the client of recorded mail that is not sent on, by its rule."""


def message_hash(message_id: str | None) -> str | None:
    """A short, stable id for logs: Message-IDs can carry addresses."""
    if not message_id:
        return None
    return hashlib.sha256(message_id.encode("utf-8", "replace")).hexdigest()[:12]


class Recorder:
    """Records what arrives with the current `Ingestor` and tells the rest of the service."""

    def __init__(self, ingestor: Callable[[], Ingestor], clock: Clock, metrics: Metrics, *,
                 wake_sender: Callable[[], None], wake_scheduler: Callable[[], None],
                 on_outcome: Callable[[Outcome], None] | None = None) -> None:
        self.ingestor = ingestor
        self.clock = clock
        self.metrics = metrics
        self.wake_sender = wake_sender
        self.wake_scheduler = wake_scheduler
        self.on_outcome = on_outcome

    def deliver(self, mailbox: str, batch: Sequence[Fetched], *, account: str) -> None:
        """A watcher's fetched batch from `account`'s `mailbox`, in transactions of
        `MESSAGES_PER_TRANSACTION`; when one fails (a bug in one message, a race with another
        instance), one at a time."""
        items = [Incoming(Source(mailbox=mailbox, uidvalidity=item.uidvalidity, uid=item.uid,
                                 account=account),
                          item.message, item.internaldate or self.clock.now(), item.size,
                          item.error) for item in batch]
        for start in range(0, len(items), MESSAGES_PER_TRANSACTION):
            chunk = items[start:start + MESSAGES_PER_TRANSACTION]
            outcomes = self._record_batch(mailbox, chunk) if len(chunk) > 1 else None
            if outcomes is None:
                outcomes = [self._record(item) for item in chunk]
            self._wake_for(outcomes)  # once per chunk: each wake-up costs the loop a query

    def ingest_raw(self, raw: bytes, source: Source) -> Outcome:
        """Record one complete message (the demo's and local tools' ingest path)."""
        outcome = self._record(Incoming(source, parse_message(raw), self.clock.now(), len(raw)))
        self._wake_for([outcome])
        return outcome

    def relay_submit(self, submission: Submission) -> Submitted:
        """Record and queue one relayed message (`mailbridge.io.relay`)."""
        ingestor = self.ingestor()
        support = ingestor.config.support
        prepared = prepare_relayed(
            submission.data, agent=submission.agent, envelope_from=submission.envelope_from,
            recipients=submission.recipients, support_addresses=frozenset(support.addresses),
            domain=support.domain, now=submission.accepted_at,
            reply_to=format_address(support.name, support.address)
            if ingestor.config.relay.reply_to == "support" else None)
        if prepared is None:
            return Submitted("from_refused", (
                f"From: write from {submission.agent.email} or {support.address}",))
        message, relayed = prepared
        try:
            outcome = ingestor.relay(message, relayed, received=submission.accepted_at,
                                     now=self.clock.now())
        except RefusedError as exc:  # rolled back: nothing recorded, nothing queued
            self.metrics.message(RELAY_MAILBOX, "agent_command_error")
            return Submitted("refused", exc.problems)
        self.wake_sender()
        if outcome.thread is not None:
            self.wake_scheduler()
        self.metrics.message(RELAY_MAILBOX, outcome.verdict.rule)
        log.info("message %s", fields(
            event="relayed", source=RELAY_MAILBOX, msgid=message_hash(outcome.message_id),
            rule=outcome.verdict.rule, thread=outcome.thread, queued=outcome.queued,
            peer=submission.peer))
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        rule = outcome.verdict.rule
        if rule in FORWARDED_RULES:
            return Submitted("queued")
        return Submitted(_KEPT.get(rule, "kept"))

    def _record_batch(self, mailbox: str, items: Sequence[Incoming]) -> list[Outcome] | None:
        """`items` in one transaction; None when that failed and each must go alone."""
        try:
            outcomes = self.ingestor().ingest_many(items, now=self.clock.now())
        except TransientError:  # the store is down: the watcher fetches them again later
            raise
        except Exception as exc:  # each is decided again, alone
            log.info("message %s", fields(event="batch_retried", mailbox=mailbox,
                                          messages=len(items), error=type(exc).__name__))
            return None
        for outcome in outcomes:
            self._recorded(outcome)
        return outcomes

    def _record(self, item: Incoming) -> Outcome:
        """One message in a transaction of its own; one that trips a bug is recorded with
        the error, at its arrival time."""
        ingestor = self.ingestor()
        record_failure = functools.partial(ingestor.record_failure, item.source, size=item.size,
                                           received=item.received)
        try:
            if item.message is None:
                outcome = record_failure(item.error, now=self.clock.now())
            else:
                outcome = ingestor.ingest(item.message, item.source, received=item.received,
                                          now=self.clock.now())
        except TransientError:  # the store is down: the watcher fetches it again later
            raise
        except Exception as exc:  # never lose a message to a bug: record why instead
            log.exception("message %s", fields(event="error", source=item.source.describe()))
            outcome = record_failure(f"{type(exc).__name__}: {exc}", now=self.clock.now())
        self._recorded(outcome)
        return outcome

    def _wake_for(self, outcomes: Sequence[Outcome]) -> None:
        if any(o.ack_message_id is not None or o.queued for o in outcomes):
            self.wake_sender()
        if any(o.thread is not None for o in outcomes):
            self.wake_scheduler()  # a thread's next due time may have moved

    def _recorded(self, outcome: Outcome) -> None:
        """What follows a committed outcome: the metric, the log line (the caller wakes the
        sender and the scheduler, once for all it recorded)."""
        source = outcome.source
        if outcome.recorded:
            self.metrics.message(source.mailbox, outcome.verdict.rule)
            if outcome.bounced is not None:
                self.metrics.ack_bounces.labels(source.mailbox, outcome.bounced).inc()
            log.info("message %s", fields(
                event="recorded", source=source.describe(), msgid=message_hash(outcome.message_id),
                action="acknowledge" if outcome.verdict.reply else "ignore",
                rule=outcome.verdict.rule, thread=outcome.thread))
        if self.on_outcome is not None:
            self.on_outcome(outcome)
