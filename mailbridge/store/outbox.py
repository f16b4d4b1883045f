"""The outbox's delivery cycle inside a transaction: claim due items, record the outcomes.

Public API: `OutboxRow`, `Finished`, `claim_due`, `record` (outcomes), `fail_interrupted`.

Each function runs on the connection of a transaction the caller holds: the sender calls
`Store.claim_outbox_batch`, `finish_outbox_batch` and `recover_interrupted`, which open
one and come here. The statements of the sender's steady loop are built once, as the
per-message ones are in `statements`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, or_, update

from mailbridge.store.statements import OUTBOX

_o = OUTBOX.c
_NEXT_OUTBOX = (OUTBOX.select().where(_o.state == "pending", _o.next_attempt_at <= bindparam("now"))
                .order_by(_o.next_attempt_at, _o.id).limit(bindparam("limit"))
                .with_for_update(skip_locked=True))
_CLAIM = update(OUTBOX).where(_o.id == bindparam("item")).values(
    state="sending", attempts=bindparam("tries"), claimed_by=bindparam("claimer"))
_SENT = update(OUTBOX).where(_o.id == bindparam("item")).values(
    state="sent", last_error=bindparam("error"), sent_at=bindparam("at"))


@dataclass(frozen=True)
class OutboxRow:
    """A detached copy of an outbox item, safe to use outside a session."""

    id: int
    thread_id: str
    kind: str
    mailbox: str
    message_id: str
    envelope_from: str
    recipient: str
    body: bytes
    attempts: int
    arrived_at: datetime


@dataclass(frozen=True)
class Finished:
    """The outcome of one delivery attempt, to be recorded on its outbox item."""

    item_id: int
    state: str
    """"sent", "pending" (retry at `retry_at`), "failed", or "unknown" (the server may have
    accepted it: never sent again)."""
    at: datetime
    error: str = ""
    retry_at: datetime | None = None


def record(conn: Connection, finished: Sequence[Finished]) -> None:
    """Record delivery attempts' outcomes on their items. The sent ones (nearly all) go in
    one executemany: on PostgreSQL one round trip for a whole batch, not one per item."""
    sent = [{"item": f.item_id, "error": f.error, "at": f.at}
            for f in finished if f.state == "sent" and f.retry_at is None]
    if sent:
        conn.execute(_SENT, sent)
    for outcome in finished:
        if outcome.state == "sent" and outcome.retry_at is None:
            continue
        values: dict[str, Any] = {"state": outcome.state, "last_error": outcome.error}
        if outcome.state == "sent":
            values["sent_at"] = outcome.at
        if outcome.retry_at is not None:
            values["next_attempt_at"] = outcome.retry_at
        conn.execute(update(OUTBOX).where(OUTBOX.c.id == outcome.item_id).values(**values))


def claim_due(conn: Connection, now: datetime, claimer: str | None,
              limit: int) -> list[OutboxRow]:
    """Up to `limit` items due at `now`, oldest first, marked `sending` by `claimer`;
    rows other transactions hold locked are skipped (`FOR UPDATE SKIP LOCKED`)."""
    rows = conn.execute(_NEXT_OUTBOX, {"now": now, "limit": limit}).all()
    if rows:
        conn.execute(_CLAIM, [{"item": row.id, "tries": int(row.attempts) + 1,
                               "claimer": claimer} for row in rows])
    return [OutboxRow(row.id, row.thread_id, row.kind, row.mailbox, row.message_id,
                      row.envelope_from, row.recipient, row.body, int(row.attempts) + 1,
                      row.arrived_at) for row in rows]


def fail_interrupted(conn: Connection, claimers: Sequence[str] | None, why: str) -> int:
    """Mark the items left `sending` by `claimers` (and by none; None: by anyone) failed,
    never to be retried; return how many."""
    query = update(OUTBOX).where(_o.state == "sending")
    if claimers is not None:
        query = query.where(or_(_o.claimed_by.in_(list(claimers)), _o.claimed_by.is_(None)))
    detail = f" ({why})" if why else ""
    result = conn.execute(query.values(
        state="failed",
        last_error=f"interrupted while sending{detail}; not retried, so the "
                   "customer cannot receive it twice"))
    return int(result.rowcount or 0)
