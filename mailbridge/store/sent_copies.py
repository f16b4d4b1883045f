"""Which sent mail still needs its copy in the Sent folder, claimed by one instance at a time.

Public API: `CopyItem`, `claim_copies(store, now, since, lease, limit)`,
`record_copies(store, appended, retry, retry_at)`, `next_copy_time(store, since)`,
`customer_facing()`.

What the customer is told is copied: acknowledgements ("ack"), status updates
("update-N") and relayed replies (mailbox "relay"; one copy per message, from the row of
its first recipient). Staff notices and command errors are not. An item is due once it is
sent, has no `appended_at`, was sent after `since` (older mail is not copied late) and its
`append_next_at` has passed (None: at once). Claiming sets `append_next_at` a lease ahead,
committed before the append, so that another instance skips it (`FOR UPDATE SKIP LOCKED`
while the claim is written); a crashed instance's claim expires with the lease.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from mailbridge.store.db import Store
from mailbridge.store.statements import OUTBOX

_o = OUTBOX.c


@dataclass(frozen=True)
class CopyItem:
    """A sent item whose copy is to be appended: its exact bytes and when they went out."""

    id: int
    thread_id: str
    kind: str
    body: bytes
    sent_at: datetime


def customer_facing() -> Any:
    """The outbox rows whose mail a customer receives, one per message."""
    return or_(_o.kind == "ack", _o.kind.like("update-%"),
               and_(_o.mailbox == "relay", _o.kind.like("relay-%-0")))


def _waiting(since: datetime) -> Any:
    return and_(_o.state == "sent", _o.appended_at.is_(None), _o.sent_at >= since,
                customer_facing())


def claim_copies(store: Store, now: datetime, *, since: datetime, lease: timedelta,
                 limit: int) -> list[CopyItem]:
    """Up to `limit` due items in the order they were sent, claimed until `now + lease`."""
    query = (select(_o.id, _o.thread_id, _o.kind, _o.body, _o.sent_at)
             .where(_waiting(since),
                    or_(_o.append_next_at.is_(None), _o.append_next_at <= now))
             .order_by(_o.sent_at, _o.id).limit(limit).with_for_update(skip_locked=True))
    with store.transaction() as tx:
        conn = tx.session.connection()
        rows = conn.execute(query).all()
        if rows:
            conn.execute(update(OUTBOX).where(_o.id.in_([row.id for row in rows]))
                         .values(append_next_at=now + lease))
    return [CopyItem(row.id, row.thread_id, row.kind, bytes(row.body), row.sent_at)
            for row in rows]


def record_copies(store: Store, appended: Sequence[tuple[int, datetime]], *,
                  retry: Sequence[int] = (), retry_at: datetime | None = None) -> None:
    """Record the copies appended (item id, when) and when the others are tried again."""
    if not appended and not retry:
        return
    with store.transaction() as tx:
        conn = tx.session.connection()
        for item_id, at in appended:
            conn.execute(update(OUTBOX).where(_o.id == item_id)
                         .values(appended_at=at, append_next_at=None))
        if retry:
            conn.execute(update(OUTBOX).where(_o.id.in_(list(retry)))
                         .values(append_next_at=retry_at))


def next_copy_time(store: Store, *, since: datetime) -> datetime | None:
    """When the next waiting copy may be tried (a past time: now); None when none waits."""
    with store.reading() as conn:
        found: datetime | None = conn.execute(
            select(func.min(func.coalesce(_o.append_next_at, _o.sent_at)))
            .where(_waiting(since))).scalar()
        return found
