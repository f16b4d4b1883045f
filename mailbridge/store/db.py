"""The store: one SQL database (SQLite by default, PostgreSQL for several instances).

Public API: `Store` (open, transaction, reading, cursor, outbox and read operations).

Decisions and the mail they cause are written in one transaction (`Tx`, in `tx`); the
sender then delivers from the outbox (`outbox`). Every method is synchronous: the service
calls them from worker threads, never on the event loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Connection, Engine, and_, func, update
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    InternalError,
    OperationalError,
)
from sqlmodel import Session, col, select

from mailbridge.errors import StoreError, StoreUnavailableError
from mailbridge.store import access, migrations
from mailbridge.store.direct import Direct
from mailbridge.store.engine import READ_ONLY, engine_for
from mailbridge.store.migrations import current_version
from mailbridge.store.outbox import Finished, OutboxRow, claim_due, fail_interrupted, record
from mailbridge.store.statements import CURSORS, MESSAGES, THREADS
from mailbridge.store.tables import Cursor, Message, OutboxItem
from mailbridge.store.tx import Tx
from mailbridge.store.writelock import FairLock

ENDED_IDLE = "25P03"
"""PostgreSQL's idle_in_transaction_session_timeout ended the transaction (and its
connection): this process was stopped or starved in the middle of it (`engine_for`)."""


class Store:
    """The database behind mailbridge: `Store.open(url)` creates or upgrades it (`run`),
    `Store.open(url, migrate=False)` takes it as it is (`threads`, `status`, `backup`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.shared = engine.dialect.name != "sqlite"
        """Whether other instances may work on this store too (PostgreSQL, not SQLite)."""
        # SQLite has one writer at a time and its busy handler waits by sleeping in steps
        # of up to 100 ms; threads of this process queue on a fair lock instead and go on,
        # in turn, the moment the writer before them commits. Other processes still meet
        # busy_timeout.
        self._write_lock = None if self.shared else FairLock()
        self._direct = Direct(engine.dialect)

    @classmethod
    def open(cls, url: str, *, migrate: bool = True,
             idle_in_transaction: float | None = None) -> Store:
        """The store at `url`, whose schema version is the one this code knows.

        `migrate`: create the database (and a SQLite file's folder, mode 0700) or bring it
        up to date; without it the store must exist and be up to date already. Either way
        a store newer than the code is refused. A url that cannot be used raises
        `StoreError`: one line naming `[store] url` and the reason, never a driver's error;
        a PostgreSQL server that does not answer yet, `StoreUnavailableError`.
        `idle_in_transaction`: see `engine_for` (the daemon: half its lease timeout).
        """
        access.make_directory(url)
        path = access.sqlite_file(url)
        if not migrate and path is not None and not path.exists():
            raise StoreError(access.describe(url, access.NO_STORE))
        reason = access.check_location(url, write=migrate)
        if reason is not None:
            raise StoreError(access.describe(url, reason))
        try:
            store = cls(engine_for(url, idle_in_transaction=idle_in_transaction))
        except (ArgumentError, ValueError) as exc:
            raise access.unusable(url, exc) from exc
        try:
            with store.reading() as conn:
                found = current_version(conn)
            access.require_schema(url, found, upgrading=migrate)
            if migrate:
                migrations.migrate(store.engine)
        except DBAPIError as exc:
            store.close()
            if access.transient(url, exc):
                raise StoreUnavailableError(str(access.unusable(url, exc))) from exc
            raise access.unusable(url, exc) from exc
        except ArgumentError as exc:
            store.close()
            raise access.unusable(url, exc) from exc
        except BaseException:
            store.close()
            raise
        return store

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
                tx.finish()
        except (OperationalError, InterfaceError, InternalError) as exc:
            if isinstance(exc, InternalError) and getattr(exc.orig, "sqlstate", "") != ENDED_IDLE:
                raise
            raise StoreUnavailableError(
                f"the database is unavailable: {access.driver_reason(exc)}") from exc
        for callback in tx.committed:
            callback()

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read-only transaction on its own connection; on SQLite it blocks no writer."""
        with self.engine.connect() as conn:
            conn.execution_options(**{READ_ONLY: True})
            with conn.begin():
                yield conn

    # -- cursors -------------------------------------------------------------

    def cursor(self, account: str, mailbox: str) -> tuple[int, int] | None:
        """(UIDVALIDITY, last UID recorded) for an account's mailbox, or None before its
        first sync."""
        with self.transaction() as tx:
            found = tx.session.get(Cursor, (account, mailbox))
            return (found.uidvalidity, found.last_uid) if found else None

    def reset_cursor(self, account: str, mailbox: str, uidvalidity: int, last_uid: int,
                     now: datetime) -> None:
        """Set where a mailbox starts: its first sync, or a new UIDVALIDITY (RFC 3501 2.3.1.1)."""
        with self.transaction() as tx:
            found = tx.session.get(Cursor, (account, mailbox))
            if found is None:
                tx.session.add(Cursor(account=account, mailbox=mailbox, uidvalidity=uidvalidity,
                                      last_uid=last_uid, updated_at=now))
            else:
                found.uidvalidity, found.last_uid, found.updated_at = uidvalidity, last_uid, now

    def adopt_unnamed(self, account: str, mailbox: str, uidvalidity: int) -> int:
        """Make what was recorded of `mailbox` at `uidvalidity` before sources named their
        account (schema version 14: account "") the account's: its messages, and its cursor
        unless the account has one there. Returns how many messages; 0 once adopted.

        Called as a watcher opens the folder, before it reads its cursor: an upgraded
        single-account desk goes on where it was. The folder's UIDVALIDITY tells accounts
        apart where they differ; where several accounts shared a store before and one
        UIDVALIDITY, the first to look takes the rows (they could not be told apart)."""
        m, c, taken = MESSAGES.c, CURSORS.c, MESSAGES.alias("taken").c
        own = select(taken.uid).where(taken.account == account, taken.mailbox == mailbox,
                                      taken.uidvalidity == uidvalidity, taken.uid.is_not(None))
        with self.transaction() as tx:
            conn = tx.session.connection()
            if tx.session.get(Cursor, (account, mailbox)) is None:
                conn.execute(update(CURSORS).where(c.account == "", c.mailbox == mailbox,
                                                   c.uidvalidity == uidvalidity)
                             .values(account=account))
            unnamed = and_(m.account == "", m.mailbox == mailbox, m.uidvalidity == uidvalidity)
            if conn.execute(own.limit(1)).first() is not None:
                # A UID recorded under both (by an older mailbridge on the store meanwhile)
                # stays unnamed: the unique source takes one. A hashed NOT IN is one pass;
                # NOT EXISTS ran once per row on PostgreSQL.
                unnamed = and_(unnamed, m.uid.not_in(own))
            return int(conn.execute(update(MESSAGES).where(unnamed)
                                    .values(account=account)).rowcount or 0)

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
            conn = tx.session.connection()
            record(conn, finished)
            return claim_due(conn, now, claimer, limit)

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
            record(tx.session.connection(), finished)

    def recover_interrupted(self, now: datetime, *, claimers: Sequence[str] | None = None,
                            why: str = "") -> int:
        """Mark items left `sending` by a crash as failed; return how many.

        `claimers`: only the items of these instances (presumed dead) and of none; None:
        every item `sending`, which is right only when no other instance runs.
        """
        with self.transaction() as tx:
            return fail_interrupted(tx.session.connection(), claimers, why)

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
