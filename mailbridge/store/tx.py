"""The store operations one inbound message needs, inside its single transaction.

Public API: `Tx` (reads of known ids, threads (an agent's open ones too), cursors, counters
and outbox kinds; inserts and updates; `after_commit`; `finish`, which `Store.transaction`
calls before the commit).

A message is recorded, its thread found or started and its decisions written to the
outbox in one `Tx`, which `Store.transaction` opens; the scheduler and the staff
queries use it too. Most reads run the prebuilt statements of `statements`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy
from sqlalchemy import Connection, func, or_, update
from sqlmodel import Session, SQLModel, col, select

from mailbridge.core.threads import RecentThread
from mailbridge.store.batch_reads import BatchReads
from mailbridge.store.direct import Direct, Prepared
from mailbridge.store.statements import (
    ADD_TO_COUNTER,
    COUNTER,
    COUNTERS,
    CURSOR,
    KNOWN_IDS,
    MESSAGES,
    MOVE_CURSOR,
    OPEN_STATES,
    OUTBOX,
    RECORDED_UIDS,
    TAKE_TURN,
    THREAD_CUSTOMER,
    THREADS,
    insert_query,
    known_ids_query,
)
from mailbridge.store.tables import Cursor, Thread, ThreadEvent, table_of

KNOWN_IDS_AT_ONCE = 100
"""Keys `Tx.read_known_ids` asks for in one statement (a handful per message)."""
RECORDED_WINDOW = 64
"""UIDs `Tx.source_recorded` reads at once: more than a batch of a mailbox catching up."""
ROUND_ROBIN = "round_robin"
"""The counter behind `Tx.round_robin_turn`."""

CUSTOMER_RULES = ("new_thread", "follow_up")
"""The rules of a customer's message in its thread."""


class CustomerSource(NamedTuple):
    """Where a customer's message sits in the mailbox, and when it arrived."""

    thread_id: str
    received_at: datetime
    mailbox: str
    uidvalidity: int
    uid: int
    account: str


class Tx:
    """The store operations available inside one transaction.

    The per-message path uses SQLAlchemy Core statements on the session's
    connection: the same tables and types as the models, without the ORM's
    per-object bookkeeping, which cost more than the queries themselves. The hottest
    of them go one step further, straight to the connection's DBAPI cursor
    (`store.direct`). Rows inserted with `insert` are held back until something else
    runs (or the commit) and then written together: a message's six or so inserts cost
    PostgreSQL one round trip instead of one each.
    """

    def __init__(self, session: Session, direct: Direct | None = None) -> None:
        self._session = session
        self.direct = direct
        """The hot statements skip SQLAlchemy's execute machinery (`store.direct`)."""
        self._cursor: Any = None
        self._writes: list[tuple[Prepared, tuple[Any, ...]]] = []
        """Rows `insert` has yet to write: they go in one batch before anything else is
        run (`flush`), on PostgreSQL in one round trip."""
        self._recorded: dict[tuple[str, str, int], tuple[int, set[int]]] = {}
        """`source_recorded`'s window per (account, mailbox, UIDVALIDITY): its first UID, the
        UIDs in it recorded."""
        self._known: dict[str, tuple[str, str]] = {}
        self._known_read: set[str] = set()
        """Keys `read_known_ids` read (and known ids this transaction stored): `known_ids`
        answers for them from `_known` without asking the database."""
        self._turn: int | None = None
        self._turns_taken = 0
        self.committed: list[Callable[[], None]] = []
        self._open_counts: dict[str, int] | None = None
        self._responses: dict[tuple[str, datetime], list[float]] = {}
        self.reads = BatchReads(self._rows)
        """The thread reads of a batch of new messages, asked once (`store.batch_reads`)."""

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once this transaction has committed (never if it rolls back)."""
        self.committed.append(callback)

    @property
    def session(self) -> Session:
        """The transaction's session, with the rows `insert` holds back written first. What
        it changes is not seen by `reads`, which asks the database again from then on."""
        self.flush()
        self.reads.forget()
        return self._session

    @property
    def _conn(self) -> Connection:
        self.flush()
        return self._session.connection()

    def flush(self) -> None:
        """Write the rows `insert` holds back. A constraint violation among them raises
        IntegrityError here."""
        if self._writes:
            assert self.direct is not None
            writes, self._writes = self._writes, []
            self.direct.run_all(self._dbapi_cursor(), writes)

    def finish(self) -> None:
        """Write what this transaction holds back: `Store.transaction` calls it before the
        commit."""
        if self._turns_taken:
            self._write(ADD_TO_COUNTER, {"counter": ROUND_ROBIN, "count": self._turns_taken})
            self._turns_taken = 0
        self.flush()

    def _write(self, statement: Any, values: dict[str, Any]) -> None:
        """Run `statement` (an INSERT or UPDATE whose result nobody reads) at the next
        `flush`, with the other held-back rows."""
        if self.direct is None:
            self._conn.execute(statement, values)
            return
        prepared = self.direct.prepare(statement, tuple(values) if statement.is_insert else ())
        self._writes.append((prepared, prepared.parameters(values)))

    def _first(self, query: Any) -> Any:
        return self._conn.execute(query).first()

    def _rows(self, query: Any, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """A prebuilt statement's rows as plain tuples; on SQLite straight from the cursor."""
        if self.direct is None:
            return [tuple(row) for row in self._conn.execute(query, params)]
        self.flush()
        return self.direct.rows(self._dbapi_cursor(), self.direct.prepare(query), params)

    def _first_plain(self, query: Any, params: dict[str, Any]) -> tuple[Any, ...] | None:
        rows = self._rows(query, params)
        return rows[0] if rows else None

    def _dbapi_cursor(self) -> Any:
        """The DBAPI cursor of this transaction's connection (begun first)."""
        if self._cursor is None:
            connection = self._session.connection().connection
            self._cursor = connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        return self._cursor

    def source_recorded(self, account: str, mailbox: str, uidvalidity: int | None,
                        uid: int | None) -> bool:
        """Whether the message at this UID of the account's mailbox was recorded. The UIDs of a
        window of `RECORDED_WINDOW` from the one asked are read at once and kept for the
        transaction (with those it records): a batch of a mailbox catching up asks once."""
        if uid is None:
            return False
        if uidvalidity is None:
            m = MESSAGES.c
            return self._first(select(m.id).where(m.account == account, m.mailbox == mailbox,
                                                  m.uidvalidity.is_(None), m.uid == uid)) \
                is not None
        window = self._recorded.get((account, mailbox, uidvalidity))
        if window is not None and window[0] <= uid < window[0] + RECORDED_WINDOW:
            return uid in window[1]
        found = {int(row[0]) for row in self._rows(RECORDED_UIDS, {
            "account": account, "mailbox": mailbox, "uidvalidity": uidvalidity, "low": uid,
            "high": uid + RECORDED_WINDOW})}
        self._recorded[(account, mailbox, uidvalidity)] = (uid, found)
        return uid in found

    def known_ids(self, keys: Sequence[str]) -> dict[str, tuple[str, str]]:
        """For each of `keys` we stored (Message-IDs, Thread-Index keys): (thread, direction)."""
        if not keys:
            return {}
        if self._known_read.issuperset(keys):
            return {key: self._known[key] for key in keys if key in self._known}
        return self._read_known(list(dict.fromkeys(keys)))

    def read_known_ids(self, keys: Sequence[str]) -> None:
        """Read `keys` at once and keep what they say for the transaction, with the known ids
        it stores: the messages of a batch then ask `known_ids` without a round trip each.
        An id another instance stores meanwhile is refused by the primary key, as between a
        message's own read and its insert before."""
        unique = [key for key in dict.fromkeys(keys) if key not in self._known_read]
        for start in range(0, len(unique), KNOWN_IDS_AT_ONCE):
            chunk = unique[start:start + KNOWN_IDS_AT_ONCE]
            self._known.update(self._read_known(chunk))
            self._known_read.update(chunk)

    def _read_known(self, unique: list[str]) -> dict[str, tuple[str, str]]:
        rows = self._rows(known_ids_query(len(unique)),
                          {f"key{i}": k for i, k in enumerate(unique)})
        return {message_id: (thread_id, direction) for message_id, thread_id, direction in rows}

    def recent_threads(self, customer: str, since: datetime) -> list[RecentThread]:
        """The customer's threads started since `since`, newest first (`RECENT_LIMIT`)."""
        return self.reads.recent_threads(customer, since)

    def thread_customer(self, thread_id: str) -> str | None:
        """The customer address of a thread, or None when there is no such thread."""
        row = self._first_plain(THREAD_CUSTOMER, {"thread_id": thread_id})
        return None if row is None else str(row[0])

    def threads_started(self, since: datetime) -> int:
        """How many threads were started (acknowledged) since `since`."""
        return self.reads.threads_started(since)

    def thread(self, thread_id: str) -> Thread | None:
        """The thread, locked until this transaction ends: its clock is read, changed and
        written back, and the scheduler (or another instance) must not write in between."""
        # populate_existing: a batch may have changed the row since this session loaded it.
        return self.session.get(Thread, thread_id, with_for_update=True, populate_existing=True)

    def update_thread(self, thread_id: str, **values: Any) -> None:
        self._conn.execute(update(THREADS).where(THREADS.c.id == thread_id).values(**values))
        self.reads.forget()
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

    def outbox_has(self, thread_id: str, kind: str) -> bool:
        """Whether mail of `kind` about `thread_id` was ever queued (the outbox's unique key)."""
        o = OUTBOX.c
        return self._first(select(o.id).where(o.thread_id == thread_id,
                                              o.kind == kind)) is not None

    def agent_open_threads(self, agent_email: str, limit: int = 200) -> list[Thread]:
        """The open threads (awaiting an agent or the customer) of `agent_email`, by their
        pending response deadline, those with none last; at most `limit`."""
        query = (select(Thread)
                 .where(col(Thread.state).in_(OPEN_STATES),
                        func.lower(col(Thread.agent_email)) == agent_email.lower())
                 .order_by(col(Thread.response_due_at).is_(None),
                           col(Thread.response_due_at), col(Thread.id))
                 .limit(limit))
        return list(self.session.exec(query).all())

    def last_queued(self, mailbox: str, recipient: str) -> datetime | None:
        """When mail to `recipient` was last queued under outbox mailbox `mailbox`, if ever."""
        o = OUTBOX.c
        row = self._first(select(func.max(o.created_at))
                          .where(o.mailbox == mailbox, o.recipient == recipient))
        return None if row is None else row[0]

    def customer_excerpt(self, thread_id: str) -> str:
        """The excerpt of the customer's latest message in the thread; "" when none."""
        m = MESSAGES.c
        row = self._first(select(m.excerpt).where(m.thread_id == thread_id,
                                                  m.rule.in_(CUSTOMER_RULES))
                          .order_by(m.received_at.desc(), m.id.desc()).limit(1))
        return "" if row is None else str(row.excerpt)

    def latest_customer_message(self, thread_id: str) -> tuple[str | None, tuple[str, ...]]:
        """(Message-ID of the customer's latest message in the thread, ids to reference)."""
        m = MESSAGES.c
        rows = self._conn.execute(
            select(m.message_id).where(m.thread_id == thread_id, m.message_id.is_not(None),
                                       m.rule.in_(CUSTOMER_RULES))
            .order_by(m.received_at.desc(), m.id.desc()).limit(20)).all()
        ids = tuple(str(r[0]) for r in reversed(rows))
        return (ids[-1] if ids else None), ids

    def customer_sources(self, thread_ids: Sequence[str]) -> list[CustomerSource]:
        """The customers' messages of these threads that came from a mailbox (IMAP)."""
        if not thread_ids:
            return []
        m = MESSAGES.c
        rows = self._conn.execute(
            sqlalchemy.select(m.thread_id, m.received_at, m.mailbox, m.uidvalidity, m.uid,
                              m.account)
            .where(m.thread_id.in_(list(thread_ids)), m.rule.in_(CUSTOMER_RULES),
                   m.uid.is_not(None), m.uidvalidity.is_not(None)))
        return [CustomerSource(*row) for row in rows]

    def has_event(self, thread_id: str, kinds: Sequence[str], *, since: datetime) -> bool:
        """Whether the thread's history has an event of one of `kinds` at or after `since`."""
        e = table_of(ThreadEvent).c
        return self._first(select(e.id).where(e.thread_id == thread_id, e.kind.in_(kinds),
                                              e.at >= since).limit(1)) is not None

    def last_agent(self, customer: str) -> tuple[str, datetime] | None:
        """(agent address, start) of the customer's latest thread; None for a new customer."""
        return self.reads.last_agent(customer)

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
        self.reads.forget()
        return int(self._conn.execute(query).rowcount or 0)

    def queue_ahead(self, agent_email: str, *, due: datetime, since: datetime,
                    thread_id: str) -> int:
        """How many threads awaiting `agent_email` come before thread `thread_id`, due at
        `due` and waiting since `since`: an earlier response deadline, or the same one and
        an earlier arrival. Threads that arrived at the very same moment with the same
        deadline count as ahead of each other: a place is never promised too early.

        At most `core.standing.QUEUE_CAP`: one indexed count (`QUEUE_AHEAD`) that stops
        there. It counts the threads committed before it (READ COMMITTED): two instances
        recording threads for one agent at the same moment do not wait for each other and
        do not count each other's thread until it is written, which costs at most a place
        promised one too early in that moment.
        """
        return self.reads.queue_ahead(agent_email.lower(), due=due, since=since,
                                      thread_id=thread_id)

    def round_robin_turn(self) -> int:
        """The next turn of the round-robin counter, which breaks ties between equally
        loaded agents (`core.agents.assign`).

        The counter is read once per transaction, without a lock, and counted up by the
        turns taken at the commit. Instances recording at the same moment may draw the
        same turn, so a tie goes the same way in both; with `take_turn` each would wait
        behind the counter row's lock until the other's commit, one batch at a time.
        """
        if self._turn is None:
            row = self._first_plain(COUNTER, {"counter": ROUND_ROBIN})
            if row is None:  # the very first turn
                self._write(insert_query(COUNTERS), {"name": ROUND_ROBIN, "value": 0})
            self._turn = 0 if row is None else int(row[0])
        self._turns_taken += 1
        self._turn += 1
        return self._turn - 1

    def take_turn(self, name: str) -> int:
        """Return the counter's value and increment it, atomically: the row stays locked
        until the commit, so every caller gets a number of its own."""
        row = self._first_plain(TAKE_TURN, {"counter": name})
        if row is None:
            self._conn.execute(COUNTERS.insert(), {"name": name, "value": 1})
            return 0
        return int(row[0]) - 1

    def insert(self, model: type[SQLModel], **values: Any) -> None:
        """Insert one row of `model`'s table, written before the next statement of this
        transaction runs or at its commit (`flush`): constraint violations raise
        IntegrityError then."""
        table = table_of(model)
        self._write(insert_query(table), values)
        if table is MESSAGES and values.get("uid") is not None:
            window = self._recorded.get((values.get("account", ""), values["mailbox"],
                                         values["uidvalidity"]))
            if window is not None:
                window[1].add(values["uid"])
        if table is KNOWN_IDS:
            self._known[values["message_id"]] = (values["thread_id"], values["direction"])
            self._known_read.add(values["message_id"])
        if table is THREADS:
            self.reads.thread_opened(values)
            if self._open_counts is not None and values.get("state") in OPEN_STATES:
                agent = str(values.get("agent_email", "")).lower()
                self._open_counts[agent] = self._open_counts.get(agent, 0) + 1

    def add(self, row: SQLModel) -> None:
        self.session.add(row)

    def advance_cursor(self, account: str, mailbox: str, uidvalidity: int, uid: int,
                       now: datetime) -> None:
        row = self._first_plain(CURSOR, key := {"owner": account, "box": mailbox})
        if row is None:
            self.insert(Cursor, account=account, mailbox=mailbox, uidvalidity=uidvalidity,
                        last_uid=uid, updated_at=now)
        elif row[0] != uidvalidity or uid > row[1]:
            self._conn.execute(MOVE_CURSOR, {**key, "validity": uidvalidity, "uid": uid, "at": now})

