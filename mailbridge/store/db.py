"""The store: one SQL database (SQLite by default, PostgreSQL for several instances).

Public API: `Store` (open, transaction, outbox and cursor operations), `Tx` (the
operations one inbound message needs inside its single transaction), `OutboxRow`.

Decisions and the mail they cause are written in one transaction (`Tx`); the
sender then delivers from the outbox. Every method is synchronous: the service
calls them from worker threads, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, update
from sqlalchemy.pool import StaticPool
from sqlmodel import Session, col, select

from mailbridge.store.migrations import migrate
from mailbridge.store.tables import Counter, Cursor, KnownId, Message, OutboxItem, Thread


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
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Tx:
    """The store operations available inside one transaction."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def source_recorded(self, mailbox: str, uidvalidity: int | None, uid: int | None) -> bool:
        if uid is None:
            return False
        query = select(Message.id).where(
            Message.mailbox == mailbox, Message.uidvalidity == uidvalidity, Message.uid == uid
        )
        return self.session.exec(query).first() is not None

    def message_id_recorded(self, message_id: str) -> bool:
        query = select(Message.id).where(Message.message_id == message_id)
        return self.session.exec(query).first() is not None

    def thread_for_ids(self, message_ids: Sequence[str]) -> str | None:
        """The thread of the first of `message_ids` we know, in the order given."""
        if not message_ids:
            return None
        rows = self.session.exec(
            select(KnownId).where(col(KnownId.message_id).in_(list(message_ids)))
        ).all()
        by_id = {row.message_id: row.thread_id for row in rows}
        return next((by_id[mid] for mid in message_ids if mid in by_id), None)

    def thread(self, thread_id: str) -> Thread | None:
        return self.session.get(Thread, thread_id)

    def take_turn(self, name: str) -> int:
        """Return the counter's value and increment it, atomically."""
        counter = self.session.get(Counter, name, with_for_update=True)
        if counter is None:
            counter = Counter(name=name, value=0)
            self.session.add(counter)
        value = counter.value
        counter.value = value + 1
        return value

    def add(self, row: Message | Thread | KnownId | OutboxItem) -> None:
        self.session.add(row)

    def know_id(self, message_id: str, thread_id: str, direction: str) -> None:
        if self.session.get(KnownId, message_id) is None:
            self.session.add(KnownId(message_id=message_id, thread_id=thread_id,
                                     direction=direction))

    def advance_cursor(self, mailbox: str, uidvalidity: int, uid: int, now: datetime) -> None:
        cursor = self.session.get(Cursor, mailbox)
        if cursor is None:
            self.session.add(Cursor(mailbox=mailbox, uidvalidity=uidvalidity, last_uid=uid,
                                    updated_at=now))
        elif cursor.uidvalidity != uidvalidity or uid > cursor.last_uid:
            cursor.uidvalidity, cursor.last_uid, cursor.updated_at = uidvalidity, uid, now


class Store:
    """The database behind mailbridge; `Store.open(url)` migrates it first."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> Store:
        engine = engine_for(url)
        migrate(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            yield Tx(session)

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

    def claim_outbox(self, now: datetime) -> OutboxRow | None:
        """Take the next due item and mark it `sending`, committed before any send.

        If the process dies while an item is `sending`, `recover_interrupted` marks
        it failed rather than sending it again: a customer must never get two acks.
        """
        with self.transaction() as tx:
            query = (
                select(OutboxItem)
                .where(OutboxItem.state == "pending", OutboxItem.next_attempt_at <= now)
                .order_by(col(OutboxItem.next_attempt_at), col(OutboxItem.id))
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            item = tx.session.exec(query).first()
            if item is None:
                return None
            item.state = "sending"
            item.attempts += 1
            assert item.id is not None
            return OutboxRow(item.id, item.thread_id, item.kind, item.mailbox, item.message_id,
                             item.envelope_from, item.recipient, item.body, item.attempts,
                             item.arrived_at)

    def next_outbox_time(self) -> datetime | None:
        with self.transaction() as tx:
            query = select(func.min(OutboxItem.next_attempt_at)).where(
                OutboxItem.state == "pending")
            return tx.session.exec(query).first()

    def finish_outbox(self, item_id: int, *, state: str, at: datetime, error: str = "",
                      retry_at: datetime | None = None) -> None:
        """Record the outcome of one delivery attempt: sent, pending (retry) or failed."""
        values: dict[str, Any] = {"state": state, "last_error": error}
        if state == "sent":
            values["sent_at"] = at
        if retry_at is not None:
            values["next_attempt_at"] = retry_at
        with self.transaction() as tx:
            tx.session.exec(update(OutboxItem).where(col(OutboxItem.id) == item_id)
                            .values(**values))

    def recover_interrupted(self, now: datetime) -> int:
        """Mark items left `sending` by a crash as failed; return how many."""
        with self.transaction() as tx:
            result = tx.session.exec(
                update(OutboxItem).where(col(OutboxItem.state) == "sending").values(
                    state="failed",
                    last_error="interrupted while sending; not retried, so the customer "
                               "cannot receive it twice",
                )
            )
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
