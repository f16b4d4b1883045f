"""Which sent mail still needs its copy in the Sent folder, claimed by one instance at a time.

Public API: `CopyItem`, `claim_copies(store, now, since, lease, limit, account)`,
`record_copies(store, appended, retry, retry_at)`, `next_copy_time(store, since, account)`,
`customer_facing()`.

What the customer is told is copied: acknowledgements ("ack"), status updates
("update-N") and relayed replies (mailbox "relay"; one copy per message, from the row of
its first recipient). Staff notices and command errors are not. An item is due once it is
sent, has no `appended_at`, was sent after `since` (older mail is not copied late) and its
`append_next_at` has passed (None: at once). Claiming sets `append_next_at` a lease ahead,
committed before the append, so that another instance skips it (`FOR UPDATE SKIP LOCKED`
while the claim is written); a crashed instance's claim expires with the lease.

Instances of several IMAP accounts may share the store: the copy goes to the Sent folder of
the account whose mailbox the customer wrote to, the account of the message that started
the thread (`messages.account`). An instance claims its account's items and those of
threads that name none (started before messages named their account, or by the relay).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, exists, func, or_, select, update

from mailbridge.store.db import Store
from mailbridge.store.statements import MESSAGES, OUTBOX

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


def _waiting(since: datetime, account: str) -> Any:
    m = MESSAGES.c
    another = exists().where(m.thread_id == _o.thread_id, m.rule == "new_thread",
                             m.account != "", m.account != account)
    return and_(_o.state == "sent", _o.appended_at.is_(None), _o.sent_at >= since,
                customer_facing(), ~another)


def claim_copies(store: Store, now: datetime, *, since: datetime, lease: timedelta,
                 limit: int, account: str) -> list[CopyItem]:
    """Up to `limit` due items of `account` in the order they were sent, claimed until
    `now + lease`."""
    query = (select(_o.id, _o.thread_id, _o.kind, _o.body, _o.sent_at)
             .where(_waiting(since, account),
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


def next_copy_time(store: Store, *, since: datetime, account: str) -> datetime | None:
    """When the next waiting copy of `account` may be tried (a past time: now); None when
    none waits."""
    with store.reading() as conn:
        found: datetime | None = conn.execute(
            select(func.min(func.coalesce(_o.append_next_at, _o.sent_at)))
            .where(_waiting(since, account))).scalar()
        return found
