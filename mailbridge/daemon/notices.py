"""Staff notices as a channel: every mail we send to staff about a thread is queued here.

Public API: `NOTICE` (the known-ids direction of a notice), `StaffNotice`, `queue_notice(tx,
notice, *, envelope_from, now)` and `is_notice(direction)`.

Nudges, escalations, hand-over notices, digests and the mail that tells an agent a command
was wrong all go out with `Reply-To:` the support address (set by their renderers:
`Renderer.render_notice`, `mail.agent_mail.command_error_mail`) and a Message-ID of ours that
is recorded in the known ids as a `NOTICE` of its thread. A reply to a notice (In-Reply-To
or References naming it) is then recognised by ingest (`mailbridge.daemon.staff`): an
internal note on the thread whose command lines run, never an answer to the customer.
Customer mail is never linked to a thread through a notice's id.

Queueing a notice and recording its id happen in the caller's transaction, with the decision
that caused it, so a notice that goes out can always be answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mailbridge.store.tables import KnownId, OutboxItem
from mailbridge.store.tx import Tx

NOTICE = "notice"
"""The direction of a notice's Message-ID in the known ids (beside "in", "out", "agent")."""


@dataclass(frozen=True)
class StaffNotice:
    """One rendered notice to queue: who gets it and the bytes, as a renderer made them
    (Reply-To the support address, Message-ID `message_id`)."""

    thread_id: str
    """The thread it is about; "" for a notice about no single thread (its id is then not
    recorded: a reply to it has no thread to act on)."""
    kind: str
    """The outbox kind, unique per thread ("nudge-0", "escalation-first_response-…")."""
    mailbox: str
    """The outbox mailbox it is counted under ("scheduler", "commands", ...)."""
    recipient: str
    message_id: str
    body: bytes


def is_notice(direction: str) -> bool:
    """Whether a known id of this direction is one of our notices."""
    return direction == NOTICE


def queue_notice(tx: Tx, notice: StaffNotice, *, envelope_from: str, now: datetime) -> None:
    """Queue `notice` in the outbox and record its Message-ID as a notice of its thread."""
    tx.insert(OutboxItem, thread_id=notice.thread_id, kind=notice.kind, mailbox=notice.mailbox,
              message_id=notice.message_id, envelope_from=envelope_from,
              recipient=notice.recipient, body=notice.body, state="pending", attempts=0,
              next_attempt_at=now, created_at=now, arrived_at=now, sent_at=None,
              last_error="")
    if notice.thread_id:
        tx.insert(KnownId, message_id=notice.message_id, thread_id=notice.thread_id,
                  direction=NOTICE)
