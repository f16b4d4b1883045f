"""The tables as SQLAlchemy Core handles, and the per-message path's statements, built once.

Public API: the table handles `MESSAGES`, `THREADS`, `KNOWN_IDS`, `COUNTERS`, `CURSORS`,
`OUTBOX`; `OPEN_STATES` (the thread states that count as open); `RECENT_LIMIT`; the
prebuilt statements `RECORDED_UIDS`, `RECENT_THREADS`, `THREAD_CUSTOMER`,
`LAST_AGENT`, `QUEUE_AHEAD`, `TAKE_TURN`, `COUNTER`, `ADD_TO_COUNTER`,
`CURSOR`, `MOVE_CURSOR`, with their parameters bound by name; `known_ids_query(count)` and
`insert_query(table)`, cached.

Building a statement and its cache key costs several times more than running it on
SQLite, so the statements `Tx` runs for every message are built here, once.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import BindParameter, Insert, Select, Table, and_, bindparam, func, or_, update
from sqlmodel import select

from mailbridge.core.standing import QUEUE_CAP
from mailbridge.store.tables import Counter, Cursor, KnownId, Message, OutboxItem, Thread, table_of

MESSAGES = table_of(Message)
THREADS = table_of(Thread)
KNOWN_IDS = table_of(KnownId)
COUNTERS = table_of(Counter)
CURSORS = table_of(Cursor)
OUTBOX = table_of(OutboxItem)
OPEN_STATES = ("awaiting_agent", "awaiting_customer")

_m, _t, _k, _c = MESSAGES.c, THREADS.c, KNOWN_IDS.c, CURSORS.c
RECORDED_UIDS = select(_m.uid).where(_m.account == bindparam("account"),
                                    _m.mailbox == bindparam("mailbox"),
                                    _m.uidvalidity == bindparam("uidvalidity"),
                                    _m.uid >= bindparam("low"), _m.uid < bindparam("high"))
"""The recorded UIDs of an account's mailbox in [low, high): a range of uq_message_source's
index."""
RECENT_LIMIT = 50
RECENT_THREADS = (select(_t.id, _t.subject_key, _t.created_at, _t.state)
                  .where(_t.customer == bindparam("customer"), _t.created_at >= bindparam("since"))
                  .order_by(_t.created_at.desc()).limit(RECENT_LIMIT))
THREAD_CUSTOMER = select(_t.customer).where(_t.id == bindparam("thread_id"))
LAST_AGENT = (select(_t.agent_email, _t.created_at).where(_t.customer == bindparam("customer"))
              .order_by(_t.created_at.desc()).limit(1))
TAKE_TURN = (update(COUNTERS).where(COUNTERS.c.name == bindparam("counter"))
             .values(value=COUNTERS.c.value + 1).returning(COUNTERS.c.value))
COUNTER = select(COUNTERS.c.value).where(COUNTERS.c.name == bindparam("counter"))
ADD_TO_COUNTER = (update(COUNTERS).where(COUNTERS.c.name == bindparam("counter"))
                  .values(value=COUNTERS.c.value + bindparam("count")))
_due: BindParameter[Any] = bindparam("due")
_since: BindParameter[Any] = bindparam("since")
_AHEAD = select(_t.id).where(
    _t.state == "awaiting_agent", func.lower(_t.agent_email) == bindparam("agent"),
    _t.response_due_at <= _due,  # the index's range; the rest orders equal deadlines
    or_(_t.response_due_at < _due, and_(_t.response_due_at == _due, _t.waiting_since <= _since)),
    _t.id != bindparam("thread_id")).limit(QUEUE_CAP).subquery()
QUEUE_AHEAD = select(func.count()).select_from(_AHEAD)
"""Threads awaiting an agent (lower case) ahead of thread `thread_id`, due at `due` and
waiting since `since`: by deadline, then arrival (ix_threads_agent_queue); up to
`QUEUE_CAP`, so that a long backlog costs an acknowledgement no more than that."""
_box = and_(_c.account == bindparam("owner"), _c.mailbox == bindparam("box"))
CURSOR = select(_c.uidvalidity, _c.last_uid).where(_box)
MOVE_CURSOR = update(CURSORS).where(_box).values(
    uidvalidity=bindparam("validity"), last_uid=bindparam("uid"), updated_at=bindparam("at"))


@functools.lru_cache(maxsize=128)  # a message names at most about 100 (`mail.fields`)
def known_ids_query(count: int) -> Select[Any]:
    """Known ids for `count` keys (key0, key1, ...): a message names a handful."""
    return select(_k.message_id, _k.thread_id, _k.direction).where(
        _k.message_id.in_([bindparam(f"key{i}") for i in range(count)]))


@functools.cache  # one per table
def insert_query(table: Table) -> Insert:
    return table.insert()
