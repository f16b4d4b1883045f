"""The store: one SQL database (SQLite by default, PostgreSQL for several instances).

Public API: `Store` (open, transaction, outbox and cursor operations), `Tx` (the
operations one inbound message needs inside its single transaction), `OutboxRow`.

Decisions and the mail they cause are written in one transaction (`Tx`); the
sender then delivers from the outbox. Every method is synchronous: the service
calls them from worker threads, never on the event loop.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Insert,
    Select,
    Table,
    bindparam,
    create_engine,
    event,
    func,
    or_,
    update,
)
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, SQLModel, col, select

from mailbridge.core.threads import RecentThread
from mailbridge.errors import StoreUnavailableError
from mailbridge.store.direct import Direct
from mailbridge.store.migrations import migrate
from mailbridge.store.tables import (
    Counter,
    Cursor,
    KnownId,
    Message,
    OutboxItem,
    Thread,
    ThreadEvent,
    table_of,
)
from mailbridge.store.writelock import FairLock

MESSAGES = table_of(Message)
THREADS = table_of(Thread)
KNOWN_IDS = table_of(KnownId)
COUNTERS = table_of(Counter)
CURSORS = table_of(Cursor)
OUTBOX = table_of(OutboxItem)
OPEN_STATES = ("awaiting_agent", "awaiting_customer")

# The statements of the per-message path, built once: building a statement and its cache
# key costs several times more than running it on SQLite.
_m, _t, _k, _c, _o = MESSAGES.c, THREADS.c, KNOWN_IDS.c, CURSORS.c, OUTBOX.c
_SOURCE_RECORDED = select(_m.id).where(_m.mailbox == bindparam("mailbox"),
                                       _m.uidvalidity == bindparam("uidvalidity"),
                                       _m.uid == bindparam("uid"))
RECENT_LIMIT = 50
_RECENT_THREADS = (select(_t.id, _t.subject_key, _t.created_at, _t.state)
                   .where(_t.customer == bindparam("customer"), _t.created_at >= bindparam("since"))
                   .order_by(_t.created_at.desc()).limit(RECENT_LIMIT))
_THREAD_CUSTOMER = select(_t.customer).where(_t.id == bindparam("thread_id"))
_THREADS_STARTED = select(func.count()).select_from(THREADS).where(
    _t.created_at >= bindparam("since"))
_LAST_AGENT = (select(_t.agent_email, _t.created_at).where(_t.customer == bindparam("customer"))
               .order_by(_t.created_at.desc()).limit(1))
_TAKE_TURN = (update(COUNTERS).where(COUNTERS.c.name == bindparam("counter"))
              .values(value=COUNTERS.c.value + 1).returning(COUNTERS.c.value))
_CURSOR = select(_c.uidvalidity, _c.last_uid).where(_c.mailbox == bindparam("box"))
_MOVE_CURSOR = update(CURSORS).where(_c.mailbox == bindparam("box")).values(
    uidvalidity=bindparam("validity"), last_uid=bindparam("uid"), updated_at=bindparam("at"))
_NEXT_OUTBOX = (OUTBOX.select().where(_o.state == "pending", _o.next_attempt_at <= bindparam("now"))
                .order_by(_o.next_attempt_at, _o.id).limit(bindparam("limit"))
                .with_for_update(skip_locked=True))
_CLAIM = update(OUTBOX).where(_o.id == bindparam("item")).values(
    state="sending", attempts=bindparam("tries"), claimed_by=bindparam("claimer"))
_SENT = update(OUTBOX).where(_o.id == bindparam("item")).values(
    state="sent", last_error=bindparam("error"), sent_at=bindparam("at"))


@functools.lru_cache(maxsize=128)  # a message names at most about 100 (`mail.fields`)
def _known_ids(count: int) -> Select[Any]:
    """Known ids for `count` keys (key0, key1, ...): a message names a handful."""
    return select(_k.message_id, _k.thread_id, _k.direction).where(
        _k.message_id.in_([bindparam(f"key{i}") for i in range(count)]))


@functools.cache  # one per table
def _insert(table: Table) -> Insert:
    return table.insert()


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
    """"sent", "pending" (retry at `retry_at`) or "failed"."""
    at: datetime
    error: str = ""
    retry_at: datetime | None = None


def _finish(tx: Tx, finished: Finished) -> None:
    if finished.state == "sent" and finished.retry_at is None:  # nearly always
        tx.session.connection().execute(_SENT, {"item": finished.item_id,
                                                "error": finished.error, "at": finished.at})
        return
    values: dict[str, Any] = {"state": finished.state, "last_error": finished.error}
    if finished.state == "sent":
        values["sent_at"] = finished.at
    if finished.retry_at is not None:
        values["next_attempt_at"] = finished.retry_at
    tx.session.connection().execute(
        update(OUTBOX).where(OUTBOX.c.id == finished.item_id).values(**values))


def _reason(exc: DBAPIError) -> str:
    """The driver's first line, without the statement and its parameters (they hold PII)."""
    text = str(exc.orig) if exc.orig is not None else type(exc).__name__
    return (text.strip().splitlines() or [type(exc).__name__])[0][:200]


def engine_for(url: str) -> Engine:
    """An engine for a sqlite:// or postgresql:// URL, tuned for this workload."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    memory = url in ("sqlite://", "sqlite:///:memory:")
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        poolclass=StaticPool if memory else None,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event start transactions, so that writers take
        # the lock up front (BEGIN IMMEDIATE) instead of failing to upgrade later.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A reader (the metrics scrape) takes a WAL snapshot and never the write lock.
        read_only = conn.get_execution_options().get("mailbridge_read_only", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


class Tx:
    """The store operations available inside one transaction.

    The per-message path uses SQLAlchemy Core statements on the session's
    connection: the same tables and types as the models, without the ORM's
    per-object bookkeeping, which cost more than the queries themselves. On SQLite
    the hottest of them go one step further, straight to the connection's DBAPI
    cursor (`store.direct`); on PostgreSQL, where a round trip costs more than
    SQLAlchemy does, they go through `Connection.execute`.
    """

    def __init__(self, session: Session, direct: Direct | None = None) -> None:
        self.session = session
        self.direct = direct
        """SQLite: the hot statements skip SQLAlchemy's execute machinery (`store.direct`)."""
        self._cursor: Any = None
        self.committed: list[Callable[[], None]] = []
        self._open_counts: dict[str, int] | None = None
        self._responses: dict[tuple[str, datetime], list[float]] = {}

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once this transaction has committed (never if it rolls back)."""
        self.committed.append(callback)

    @property
    def _conn(self) -> Connection:
        return self.session.connection()

    def _first(self, query: Any) -> Any:
        return self._conn.execute(query).first()

    def _rows(self, query: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """A prebuilt statement's rows as plain tuples; on SQLite straight from the cursor."""
        if self.direct is None:
            return [tuple(row) for row in self._conn.execute(query, params)]
        return self.direct.rows(self._dbapi_cursor(), self.direct.prepare(query), params)

    def _first_plain(self, query: Any, params: dict[str, Any]) -> tuple[Any, ...] | None:
        rows = self._rows(query, params)
        return rows[0] if rows else None

    def _dbapi_cursor(self) -> Any:
        """The DBAPI cursor of this transaction's connection (begun first)."""
        if self._cursor is None:
            self._cursor = self._conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        return self._cursor

    def source_recorded(self, mailbox: str, uidvalidity: int | None, uid: int | None) -> bool:
        if uid is None:
            return False
        if uidvalidity is None:
            m = MESSAGES.c
            return self._first(select(m.id).where(
                m.mailbox == mailbox, m.uidvalidity.is_(None), m.uid == uid)) is not None
        return self._first_plain(_SOURCE_RECORDED, {
            "mailbox": mailbox, "uidvalidity": uidvalidity, "uid": uid}) is not None

    def known_ids(self, keys: Sequence[str]) -> dict[str, tuple[str, str]]:
        """For each of `keys` we stored (Message-IDs, Thread-Index keys): (thread, direction)."""
        if not keys:
            return {}
        unique = list(dict.fromkeys(keys))
        rows = self._rows(_known_ids(len(unique)), {f"key{i}": k for i, k in enumerate(unique)})
        return {message_id: (thread_id, direction) for message_id, thread_id, direction in rows}

    def recent_threads(self, customer: str, since: datetime) -> list[RecentThread]:
        """The customer's threads started since `since`, newest first (`RECENT_LIMIT`)."""
        rows = self._rows(_RECENT_THREADS, {"customer": customer, "since": since})
        return [RecentThread(ref, key, created_at, state == "resolved")
                for ref, key, created_at, state in rows]

    def thread_customer(self, thread_id: str) -> str | None:
        """The customer address of a thread, or None when there is no such thread."""
        row = self._first_plain(_THREAD_CUSTOMER, {"thread_id": thread_id})
        return None if row is None else str(row[0])

    def threads_started(self, since: datetime) -> int:
        """How many threads were started (acknowledged) since `since`."""
        row = self._first_plain(_THREADS_STARTED, {"since": since})
        assert row is not None
        return int(row[0])

    def thread(self, thread_id: str) -> Thread | None:
        """The thread, locked until this transaction ends: its clock is read, changed and
        written back, and the scheduler (or another instance) must not write in between."""
        # populate_existing: a batch may have changed the row since this session loaded it.
        return self.session.get(Thread, thread_id, with_for_update=True, populate_existing=True)

    def update_thread(self, thread_id: str, **values: Any) -> None:
        self._conn.execute(update(THREADS).where(THREADS.c.id == thread_id).values(**values))
        if "state" in values or "agent_email" in values:
            self._open_counts = None  # counted again when next asked

    def event(self, thread_id: str, at: datetime, kind: str, detail: str = "") -> None:
        """Add a line to the thread's history."""
        self.insert(ThreadEvent, thread_id=thread_id, at=at, kind=kind, detail=detail)

    def due_threads(self, now: datetime, limit: int = 50) -> list[Thread]:
        """Threads with something due at `now`, most overdue first, claimed for this
        transaction (other instances skip them)."""
        query = (select(Thread).where(col(Thread.next_due_at) <= now)
                 .order_by(col(Thread.next_due_at)).limit(limit)
                 .with_for_update(skip_locked=True))
        return list(self.session.exec(query).all())

    def recent_first_responses(self, policy: str, since: datetime,
                               limit: int = 500) -> list[float]:
        """Business seconds to first response of this policy's threads answered since `since`
        (to the hour: a transaction recording many messages reads them once)."""
        key = (policy, since.replace(minute=0, second=0, microsecond=0))
        found = self._responses.get(key)
        if found is None:
            t = THREADS.c
            rows = self._conn.execute(
                select(t.first_response_business_seconds)
                .where(t.policy == policy, t.first_response_at >= key[1],
                       t.first_response_business_seconds.is_not(None))
                .order_by(t.first_response_at.desc()).limit(limit))
            found = self._responses[key] = [float(row[0]) for row in rows]
        return found

    def ack_recipient(self, thread_id: str) -> str | None:
        """Where the thread's acknowledgement went: later customer mail goes there too."""
        o = OUTBOX.c
        row = self._first(select(o.recipient).where(o.thread_id == thread_id, o.kind == "ack"))
        return None if row is None else str(row.recipient)

    def latest_customer_message(self, thread_id: str) -> tuple[str | None, tuple[str, ...]]:
        """(Message-ID of the customer's latest message in the thread, ids to reference)."""
        m = MESSAGES.c
        rows = self._conn.execute(
            select(m.message_id).where(m.thread_id == thread_id, m.message_id.is_not(None),
                                       m.rule.in_(["new_thread", "follow_up"]))
            .order_by(m.received_at.desc(), m.id.desc()).limit(20)).all()
        ids = tuple(str(r[0]) for r in reversed(rows))
        return (ids[-1] if ids else None), ids

    def last_agent(self, customer: str) -> tuple[str, datetime] | None:
        """(agent address, start) of the customer's latest thread; None for a new customer."""
        row = self._first_plain(_LAST_AGENT, {"customer": customer})
        return None if row is None else (str(row[0]), row[1])

    def open_counts(self) -> dict[str, int]:
        """Open threads (awaiting an agent or the customer) per agent address, lower case.

        Counted once per transaction; threads this transaction opens with `insert` are
        added, so a batch of new threads is spread as if each had been committed alone.
        """
        if self._open_counts is None:
            t = THREADS.c
            rows = self._conn.execute(
                select(t.agent_email, func.count())
                .where(t.state.in_(OPEN_STATES))
                .group_by(t.agent_email))
            counts: dict[str, int] = {}
            for email, count in rows:
                counts[str(email).lower()] = counts.get(str(email).lower(), 0) + int(count)
            self._open_counts = counts
        return dict(self._open_counts)

    def recheck_agents(self, available: Sequence[str], now: datetime) -> int:
        """Make the waiting threads of every agent not in `available` (lower-case addresses)
        due at `now`, so the scheduler looks at handing them over; return how many."""
        t = THREADS.c
        query = (update(THREADS)
                 .where(t.state == "awaiting_agent",
                        func.lower(t.agent_email).not_in(list(available)),
                        or_(t.next_due_at.is_(None), t.next_due_at > now))
                 .values(next_due_at=now))
        return int(self._conn.execute(query).rowcount or 0)

    def take_turn(self, name: str) -> int:
        """Return the counter's value and increment it, atomically."""
        row = self._first_plain(_TAKE_TURN, {"counter": name})
        if row is None:
            self._conn.execute(COUNTERS.insert(), {"name": name, "value": 1})
            return 0
        return int(row[0]) - 1

    def insert(self, model: type[SQLModel], **values: Any) -> None:
        """Insert one row of `model`'s table; constraint violations raise IntegrityError."""
        table = table_of(model)
        statement = _insert(table)
        if self.direct is None:
            self._conn.execute(statement, values)
        else:
            self.direct.run(self._dbapi_cursor(), self.direct.prepare(statement, tuple(values)),
                            values)
        if table is THREADS and self._open_counts is not None \
                and values.get("state") in OPEN_STATES:
            agent = str(values.get("agent_email", "")).lower()
            self._open_counts[agent] = self._open_counts.get(agent, 0) + 1

    def add(self, row: SQLModel) -> None:
        self.session.add(row)

    def advance_cursor(self, mailbox: str, uidvalidity: int, uid: int, now: datetime) -> None:
        row = self._first_plain(_CURSOR, {"box": mailbox})
        if row is None:
            self.insert(Cursor, mailbox=mailbox, uidvalidity=uidvalidity, last_uid=uid,
                        updated_at=now)
        elif row[0] != uidvalidity or uid > row[1]:
            self._conn.execute(_MOVE_CURSOR, {"box": mailbox, "validity": uidvalidity,
                                              "uid": uid, "at": now})


class Store:
    """The database behind mailbridge; `Store.open(url)` migrates it first."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.shared = engine.dialect.name != "sqlite"
        """Whether other instances may work on this store too (PostgreSQL, not SQLite)."""
        # SQLite has one writer at a time and its busy handler waits by sleeping in steps
        # of up to 100 ms; threads of this process queue on a fair lock instead and go on,
        # in turn, the moment the writer before them commits. Other processes still meet
        # busy_timeout.
        self._write_lock = None if self.shared else FairLock()
        self._direct = None if self.shared else Direct(engine.dialect)

    @classmethod
    def open(cls, url: str) -> Store:
        engine = engine_for(url)
        migrate(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One transaction; a lost or refused connection raises `StoreUnavailableError`
        (nothing of it was committed, or it was and a retry will see it), constraint
        violations raise sqlalchemy's `IntegrityError` for the caller to re-check."""
        # No autoflush: a transaction reads first and writes at the end, in one flush.
        try:
            with self._write_lock or contextlib.nullcontext(), \
                    Session(self.engine, expire_on_commit=False, autoflush=False) as session, \
                    session.begin():
                tx = Tx(session, self._direct)
                yield tx
        except (OperationalError, InterfaceError) as exc:
            raise StoreUnavailableError(f"the database is unavailable: {_reason(exc)}") \
                from exc
        for callback in tx.committed:
            callback()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read-only transaction on its own connection; on SQLite it blocks no writer."""
        with self.engine.connect() as conn:
            conn.execution_options(mailbridge_read_only=True)
            with conn.begin():
                yield conn

    # -- cursors -------------------------------------------------------------

    def cursor(self, mailbox: str) -> tuple[int, int] | None:
        """(UIDVALIDITY, last UID recorded) for a mailbox, or None before its first sync."""
        with self.transaction() as tx:
            found = tx.session.get(Cursor, mailbox)
            return (found.uidvalidity, found.last_uid) if found else None

    def reset_cursor(self, mailbox: str, uidvalidity: int, last_uid: int, now: datetime) -> None:
        """Set where a mailbox starts: its first sync, or a new UIDVALIDITY (RFC 3501 2.3.1.1)."""
        with self.transaction() as tx:
            found = tx.session.get(Cursor, mailbox)
            if found is None:
                tx.session.add(Cursor(mailbox=mailbox, uidvalidity=uidvalidity,
                                      last_uid=last_uid, updated_at=now))
            else:
                found.uidvalidity, found.last_uid, found.updated_at = uidvalidity, last_uid, now

    # -- outbox --------------------------------------------------------------

    def claim_outbox(self, now: datetime, *, finished: Finished | None = None,
                     claimer: str | None = None) -> OutboxRow | None:
        """`claim_outbox_batch` for one item: the next due one, or None."""
        rows = self.claim_outbox_batch(now, finished=[finished] if finished else [],
                                       claimer=claimer, limit=1)
        return rows[0] if rows else None

    def claim_outbox_batch(self, now: datetime, *, finished: Sequence[Finished] = (),
                           claimer: str | None = None, limit: int) -> list[OutboxRow]:
        """Take up to `limit` due items, oldest first, and mark them `sending` by `claimer`,
        committed before any send; other instances skip locked rows (`FOR UPDATE SKIP
        LOCKED`).

        `finished` records the outcomes of the previous items in the same transaction,
        which saves commits. If the process dies while an item is `sending`,
        `recover_interrupted` marks it failed rather than sending it again: a customer
        must never get two acks. So a crash fails at most `limit` items.
        """
        with self.transaction() as tx:
            for outcome in finished:
                _finish(tx, outcome)
            conn = tx.session.connection()
            rows = conn.execute(_NEXT_OUTBOX, {"now": now, "limit": limit}).all()
            if rows:
                conn.execute(_CLAIM, [{"item": row.id, "tries": int(row.attempts) + 1,
                                       "claimer": claimer} for row in rows])
            return [OutboxRow(row.id, row.thread_id, row.kind, row.mailbox, row.message_id,
                              row.envelope_from, row.recipient, row.body, int(row.attempts) + 1,
                              row.arrived_at) for row in rows]

    def next_due_time(self) -> datetime | None:
        """The earliest time any thread has something due (an indexed MIN, read-only)."""
        with self.reading() as conn:
            # MIN keeps the column's type, so the value comes back as an aware UTC time.
            found: datetime | None = conn.execute(
                select(func.min(THREADS.c.next_due_at))).scalar()
            return found

    def next_outbox_time(self) -> datetime | None:
        with self.transaction() as tx:
            query = select(func.min(OutboxItem.next_attempt_at)).where(
                OutboxItem.state == "pending")
            return tx.session.exec(query).first()

    def finish_outbox(self, finished: Finished) -> None:
        """Record the outcome of one delivery attempt: sent, pending (retry) or failed."""
        self.finish_outbox_batch([finished])

    def finish_outbox_batch(self, finished: Sequence[Finished]) -> None:
        """Record the outcomes of several delivery attempts in one transaction."""
        with self.transaction() as tx:
            for outcome in finished:
                _finish(tx, outcome)

    def recover_interrupted(self, now: datetime, *, claimers: Sequence[str] | None = None,
                            why: str = "") -> int:
        """Mark items left `sending` by a crash as failed; return how many.

        `claimers`: only the items of these instances (presumed dead) and of none; None:
        every item `sending`, which is right only when no other instance runs.
        """
        o = OUTBOX.c
        query = update(OUTBOX).where(o.state == "sending")
        if claimers is not None:
            query = query.where(or_(o.claimed_by.in_(list(claimers)), o.claimed_by.is_(None)))
        detail = f" ({why})" if why else ""
        with self.transaction() as tx:
            result = tx.session.connection().execute(query.values(
                state="failed",
                last_error=f"interrupted while sending{detail}; not retried, so the "
                           "customer cannot receive it twice"))
            return int(result.rowcount or 0)

    # -- reading -------------------------------------------------------------

    def messages(self) -> list[Message]:
        with self.transaction() as tx:
            return list(tx.session.exec(select(Message).order_by(col(Message.id))).all())

    def outbox(self) -> list[OutboxItem]:
        with self.transaction() as tx:
            return list(tx.session.exec(select(OutboxItem).order_by(col(OutboxItem.id))).all())

    def outbox_depth(self) -> int:
        with self.transaction() as tx:
            query = select(func.count()).select_from(OutboxItem).where(
                col(OutboxItem.state).in_(["pending", "sending"]))
            return int(tx.session.exec(query).one())
