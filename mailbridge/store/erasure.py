"""Erasure: one customer's personal data out of the store, on request (GDPR art. 17).

Public API: `Erased`, `erase(store, address, now, known_threads=(), force=False)`,
`ERASED_CUSTOMER`, `REDACTED`.

The customer's threads are those whose customer is the address (matched without regard to
case). Their thread rows stay, anonymous, so that SLA history stays true: policy, priority,
agent, deadlines and response times; the address becomes `ERASED_CUSTOMER`, the subject
goes, and a thread still open is resolved, so nothing more is sent or escalated for it.
Their messages lose sender, subject, excerpt and Message-ID; their history keeps its times and
kinds, with the address, the customer's names and the subjects cut out of its details (an
agent's free-text note goes whole); their outbox rows lose their bodies and the customer as
recipient, and an unsent one fails with reason "erased"; their known Message-IDs go, so
that later mail from the address starts afresh. Any other row of any table where the
address appears has it, and the customer's names, cut out (`REDACTED`); a Message-ID that
carried it goes. The names are the display names our mail to the address carried.

Work is done in short transactions of at most `batch` rows, found first in a read-only
transaction, so it can run beside the daemon. A row the sender holds (`sending`) is left
for a later call, unless `force`; `Erased.in_flight` counts them and `Erased.threads`
carries the thread ids over to that call, whose anonymous rows no longer name the address.
"""

from __future__ import annotations

import email.parser
import email.policy
import functools
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    LargeBinary,
    String,
    Table,
    Text,
    cast,
    delete,
    false,
    func,
    or_,
    select,
    update,
)
from sqlmodel import SQLModel

from mailbridge.core import sla
from mailbridge.store.codec import dump_clock, load_clock
from mailbridge.store.db import Store
from mailbridge.store.statements import KNOWN_IDS, MESSAGES, OUTBOX, THREADS
from mailbridge.store.tables import ThreadEvent, table_of

ERASED_CUSTOMER = "(erased)"
"""A thread's customer once erased: no address, so no mail can claim the thread again."""
REDACTED = "[erased]"
"""What stands where the address, a name or a subject was cut out of a text."""
EVENTS = table_of(ThreadEvent)
_NAME_HEADERS = ("to", "cc", "from", "reply-to")
_ADDRESS_CHARS = r"\w.!#$%&'*+/=?^`{|}~-"
Row = Mapping[Any, Any]
"""A row as SQLAlchemy maps it: column name to value."""
Changer = Callable[[Connection, Row], "dict[str, Any] | None"]
"""What one row becomes: the changed columns (None or empty: leave it)."""


@dataclass(frozen=True)
class Erased:
    """What one call erased, per kind; `threads` names the customer's threads."""

    threads_anonymised: int = 0
    threads_closed: int = 0
    messages: int = 0
    events: int = 0
    outbox: int = 0
    outbox_failed: int = 0
    known_ids: int = 0
    other: int = 0
    """Rows of other tables (or of no thread of the customer) that named the address."""
    in_flight: int = 0
    """Outbox rows being sent right now, left for the next call."""
    threads: frozenset[str] = field(default=frozenset(), compare=False)

    def __add__(self, other: Erased) -> Erased:
        counts = {f.name: getattr(self, f.name) + getattr(other, f.name)
                  for f in fields(self) if f.name not in ("threads", "in_flight")}
        return Erased(**counts, in_flight=other.in_flight, threads=self.threads | other.threads)

    def counts(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "threads"}


class _Needles:
    """The address (as a whole address, not inside a longer one), the customer's names
    and, for the customer's own rows only, their subjects."""

    def __init__(self, address: str, names: Iterable[str], subjects: Iterable[str]) -> None:
        self.address = address
        bounded = rf"(?<![{_ADDRESS_CHARS}]){re.escape(address)}(?!\.?[\w-])"
        self._always = [re.compile(bounded, re.IGNORECASE), *_literal(names, 2)]
        self._own = self._always + _literal(subjects, 3)

    def scrub(self, text: str, *, own: bool) -> str:
        for pattern in self._own if own else self._always:
            text = pattern.sub(REDACTED, text)
        return text

    def names_address(self, text: str) -> bool:
        return self._always[0].search(text) is not None


def _literal(texts: Iterable[str], shortest: int) -> list[re.Pattern[str]]:
    """Case-insensitive patterns for `texts` as whole words (a name "Al" leaves "Also"),
    longest first, ignoring very short ones."""
    unique = {t.strip() for t in texts if len(t.strip()) >= shortest}
    return [re.compile(rf"{_edge(t[0])}{re.escape(t)}{_edge(t[-1])}", re.IGNORECASE)
            for t in sorted(unique, key=len, reverse=True)]


def _edge(char: str) -> str:
    return r"\b" if char.isalnum() else ""


def _text_columns(table: Table, *, keys: bool = False) -> list[Column[Any]]:
    """The text columns of `table`; its primary key too if `keys` (it is found, not changed:
    a known id is deleted)."""
    return [c for c in table.columns
            if isinstance(c.type, String | Text) and (keys or not c.primary_key)]


def _binary_columns(table: Table) -> list[Column[Any]]:
    return [c for c in table.columns if isinstance(c.type, LargeBinary)]


def _mentions(table: Table, address: str, dialect: str) -> ColumnElement[bool]:
    """SQL that holds for rows where some text or binary column contains the address; a
    superset (case, longer addresses), which `_Needles` narrows down in Python."""
    tests: list[ColumnElement[bool]] = [c.icontains(address, autoescape=True)
                                        for c in _text_columns(table, keys=True)]
    for column in _binary_columns(table):
        as_text = func.encode(column, "escape") if dialect == "postgresql" \
            else cast(column, Text)
        tests.append(as_text.icontains(address, autoescape=True))
    return or_(false(), *tests)


def _pk(table: Table) -> Column[Any]:
    [key] = table.primary_key.columns
    return key


@dataclass
class _Run:
    """One call's state: the needles, the customer's threads, the time, the counts."""

    needles: _Needles
    threads: frozenset[str]
    now: datetime
    force: bool
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n

    def scrubbed(self, table: Table, row: Row, *, own: bool) -> dict[str, Any]:
        """Every text column with the needles cut out, every binary one naming the address
        emptied: the changed columns only."""
        changes: dict[str, Any] = {}
        for column in _text_columns(table):
            value = row[column.name]
            if isinstance(value, str):
                new = self.needles.scrub(value, own=own)
                if new != value:
                    changes[column.name] = new
        for column in _binary_columns(table):
            value = row[column.name]
            if value and self.needles.names_address(bytes(value).decode("utf-8", "replace")):
                changes[column.name] = b""
        return changes

    # -- what the customer's rows become --------------------------------------------------

    def other(self, table: Table, _conn: Connection, row: Row) -> dict[str, Any]:
        return self.scrubbed(table, row, own=False)

    def thread(self, conn: Connection, row: Row) -> dict[str, Any]:
        own = row["id"] in self.threads
        changes = self.scrubbed(THREADS, row, own=own)
        if not own:
            return changes
        if row["customer"] != ERASED_CUSTOMER:
            conn.execute(EVENTS.insert().values(thread_id=row["id"], at=self.now, kind="erased",
                                                detail="personal data erased on request"))
        changes.update(customer=ERASED_CUSTOMER, subject="", subject_key="", customer_name="",
                       customer_offset=None)
        if row["state"] != sla.RESOLVED:
            changes.update(state=sla.RESOLVED, resolved_at=self.now, next_due_at=None,
                           waiting_since=None, response_due_at=None, response_kind=None,
                           resolution_due_at=None)
            if row["clock"]:
                clock = load_clock(row["clock"])
                changes["clock"] = dump_clock(replace(
                    clock, state=sla.RESOLVED, waiting_since=None, next_response_due=None,
                    resolution_due=None, escalations_due=()))
            self.count("threads_closed")
        return changes

    def message(self, _conn: Connection, row: Row) -> dict[str, Any]:
        by_customer = str(row["sender"]).lower() == self.needles.address
        own = by_customer or row["thread_id"] in self.threads
        changes = self.scrubbed(MESSAGES, row, own=own)
        if own:
            changes.update(subject="", excerpt="")  # the customer's own words: all go
        if by_customer:
            changes.update(sender="")
        if row["message_id"] is not None and (by_customer or "message_id" in changes):
            changes["message_id"] = None
        return changes

    def event(self, _conn: Connection, row: Row) -> dict[str, Any]:
        own = row["thread_id"] in self.threads
        if own and row["kind"] == "note" and row["detail"]:
            return {"detail": ""}  # an agent's words about the customer: all of them go
        return self.scrubbed(EVENTS, row, own=own)

    def outbox(self, _conn: Connection, row: Row) -> dict[str, Any] | None:
        changes = self.scrubbed(OUTBOX, row, own=row["thread_id"] in self.threads)
        if not changes and row["thread_id"] not in self.threads:
            return None  # found by a longer address that contains hers
        if row["state"] == "sending" and not self.force:
            self.count("in_flight")
            return None
        if "message_id" in changes:
            changes["message_id"] = ""
        if row["body"]:
            changes["body"] = b""
        if self.needles.names_address(str(row["recipient"])):
            changes["recipient"] = ""
        if row["state"] == "pending":
            changes.update(state="failed", last_error="erased")
            self.count("outbox_failed")
        return changes


def _names(conn: Connection, address: str, threads: Collection[str]) -> set[str]:
    """The display names our mail to `address` gave it (To, Cc, ... of the bodies)."""
    o = OUTBOX.c
    query = select(o.body).where(or_(func.lower(o.recipient) == address,
                                     o.thread_id.in_(list(threads))))
    parser = email.parser.BytesParser(policy=email.policy.default)
    names: set[str] = set()
    for (body,) in conn.execute(query):
        try:
            head = parser.parsebytes(bytes(body or b""), headersonly=True)
            for header in _NAME_HEADERS:
                for value in head.get_all(header, []):
                    names.update(a.display_name for a in getattr(value, "addresses", ())
                                 if a.addr_spec.lower() == address and a.display_name)
        except (ValueError, TypeError, IndexError, AttributeError):
            continue  # a body we cannot read is emptied anyway
    return names


def _plan(conn: Connection, address: str, known: Collection[str]) -> tuple[
        frozenset[str], _Needles, dict[str, list[Any]]]:
    """The customer's threads, the needles, and the keys of the rows to change per table."""
    t, m, o = THREADS.c, MESSAGES.c, OUTBOX.c
    threads = frozenset(known) | frozenset(conn.execute(
        select(t.id).where(func.lower(t.customer) == address)).scalars())
    ids = list(threads)
    subjects = set(conn.execute(select(t.subject).where(t.id.in_(ids))).scalars())
    subjects |= set(conn.execute(select(m.subject).where(
        or_(m.thread_id.in_(ids), func.lower(m.sender) == address))).scalars())
    names = _names(conn, address, threads) | {name for name in conn.execute(
        select(t.customer_name).where(t.id.in_(ids))).scalars() if name}
    needles = _Needles(address, names, subjects)
    dialect = conn.dialect.name
    own: dict[str, ColumnElement[bool]] = {
        "threads": t.id.in_(ids),
        "messages": or_(m.thread_id.in_(ids), func.lower(m.sender) == address),
        "thread_events": EVENTS.c.thread_id.in_(ids),
        "outbox": or_(o.thread_id.in_(ids), func.lower(o.recipient) == address)}
    k = KNOWN_IDS.c
    found = conn.execute(select(k.message_id, k.thread_id).where(
        or_(k.thread_id.in_(ids), k.message_id.icontains(address, autoescape=True))))
    keys: dict[str, list[Any]] = {KNOWN_IDS.name: [
        key for key, thread in found if thread in threads or needles.names_address(key)]}
    for table in SQLModel.metadata.sorted_tables:
        if len(table.primary_key.columns) != 1 or table.name in keys:
            continue
        where = or_(own.get(table.name, false()), _mentions(table, address, dialect))
        keys[table.name] = list(conn.execute(select(_pk(table)).where(where)).scalars())
    return threads, needles, keys


def _chunks(keys: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(keys), size):
        yield keys[start:start + size]


@dataclass(frozen=True)
class _Writer:
    """Writes in transactions of at most `batch` rows, counting into `run`."""

    store: Store
    batch: int
    run: _Run

    def delete(self, table: Table, keys: list[Any], kind: str) -> None:
        pk = _pk(table)
        for chunk in _chunks(keys, self.batch):
            with self.store.transaction() as tx:
                result = tx.session.connection().execute(delete(table).where(pk.in_(chunk)))
                self.run.count(kind, int(result.rowcount or 0))

    def change(self, table: Table, keys: list[Any], kind: str, change: Changer) -> None:
        """Apply `change` to the rows of `table` with these keys."""
        pk = _pk(table)
        for chunk in _chunks(keys, self.batch):
            with self.store.transaction() as tx:
                conn = tx.session.connection()
                rows = conn.execute(select(table).where(pk.in_(chunk)).with_for_update())
                for row in rows.mappings().all():
                    changes = {name: value for name, value in (change(conn, row) or {}).items()
                               if row[name] != value}
                    if changes:
                        conn.execute(update(table).where(pk == row[pk.name]).values(**changes))
                        self.run.count(kind)


def erase(store: Store, address: str, now: datetime, *, known_threads: Iterable[str] = (),
          force: bool = False, batch: int = 200) -> Erased:
    """Erase the personal data of the customer at `address` (see the module docstring)."""
    address = address.strip().lower()
    with store.reading() as conn:
        threads, needles, keys = _plan(conn, address, frozenset(known_threads))
    run = _Run(needles, threads, now, force)
    writer = _Writer(store, batch, run)
    # Known ids first, then the threads: from then on no mail joins the customer's threads.
    writer.delete(KNOWN_IDS, keys.pop(KNOWN_IDS.name, []), "known_ids")
    changers: dict[str, tuple[str, Changer]] = {
        "threads": ("threads_anonymised", run.thread), "messages": ("messages", run.message),
        "thread_events": ("events", run.event), "outbox": ("outbox", run.outbox)}
    for name in [*changers, *sorted(set(keys) - set(changers))]:
        table = SQLModel.metadata.tables[name]
        kind, change = changers.get(name, ("other", functools.partial(run.other, table)))
        writer.change(table, keys.pop(name, []), kind, change)
    return Erased(**run.counts, threads=threads)
