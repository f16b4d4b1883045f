"""The store's tables as SQLModel classes (the schema itself lives in migrations).

Public API: `UTCDateTime`, `Message`, `Thread`, `ThreadEvent`, `KnownId`, `OutboxItem`,
`Cursor`, `Counter`, `Instance`, `MailboxLease`, `table_of(model)`. Timestamps are aware UTC
datetimes on both SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, LargeBinary, Table, Text, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.types import DateTime, TypeDecorator
from sqlmodel import Field, SQLModel


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, whatever the backend.

    SQLite has no time zones: SQLAlchemy would hand back naive values, which is
    how naive times get in. We store UTC and re-attach it on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware UTC time")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def table_of(model: type[SQLModel]) -> Table:
    """The SQLAlchemy Core table behind a table model, for Core statements."""
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


def _ts(*, nullable: bool = False, index: bool = False) -> Any:
    return Field(sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def _big(*, nullable: bool = False, default: Any = ...) -> Any:
    """A 64-bit integer: IMAP UIDs and UIDVALIDITY are unsigned 32-bit, past INTEGER's range
    on PostgreSQL (the migrations declare BIGINT; the model must bind it as such)."""
    return Field(default=default, sa_column=Column(BigInteger, nullable=nullable))


class Message(SQLModel, table=True):
    """Every inbound message, with what was decided and why."""

    __tablename__ = "messages"
    __table_args__ = (UniqueConstraint("account", "mailbox", "uidvalidity", "uid",
                                       name="uq_message_source"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str
    account: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    """The IMAP account of `mailbox` (`ImapSettings.account`); "" for mail from no account
    (the relay, files)."""
    mailbox: str
    uidvalidity: int | None = _big(nullable=True, default=None)
    uid: int | None = _big(nullable=True, default=None)
    message_id: str | None = Field(default=None, index=True)
    sender: str = ""
    subject: str = Field(default="", sa_column=Column(Text, nullable=False))
    received_at: datetime = _ts()
    recorded_at: datetime = _ts()
    size: int = 0
    thread_id: str | None = Field(default=None, index=True)
    action: str
    rule: str
    reason: str = Field(sa_column=Column(Text, nullable=False))
    defects: str = Field(default="", sa_column=Column(Text, nullable=False))
    excerpt: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    """A customer's message: the start of its first text part (`EXCERPT_CHARS`), quoted
    in hand-over notices; "" for other mail, and once the customer is erased."""


EXCERPT_CHARS = 2000
"""How much of a customer's text `Message.excerpt` keeps."""


class Thread(SQLModel, table=True):
    """A conversation with one customer; its id is the reference in our subjects."""

    __tablename__ = "threads"

    id: str = Field(primary_key=True)
    created_at: datetime = _ts()
    customer: str = Field(index=True)
    subject: str = Field(default="", sa_column=Column(Text, nullable=False))
    agent_name: str
    agent_email: str
    state: str = "awaiting_agent"
    first_response_due: datetime = _ts(index=True)
    subject_key: str = Field(default="", sa_column=Column(Text, nullable=False,
                                                          server_default=""))
    """The normalised subject (`core.threads.normalize_subject`), for matching."""
    policy: str = "default"
    priority: str = "normal"
    clock: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    """The thread's `core.sla.Clock` as JSON (`store.codec`)."""
    next_due_at: datetime | None = _ts(nullable=True, index=True)
    first_response_at: datetime | None = _ts(nullable=True)
    first_response_seconds: float | None = None
    first_response_business_seconds: float | None = None
    first_response_met: bool | None = None
    waiting_since: datetime | None = _ts(nullable=True)
    """While awaiting an agent: arrival of the oldest unanswered customer message."""
    response_due_at: datetime | None = _ts(nullable=True)
    """While awaiting an agent: the pending response deadline, of kind `response_kind`."""
    response_kind: str | None = None
    resolution_due_at: datetime | None = _ts(nullable=True)
    """While awaiting an agent: the resolution deadline, if the policy has one."""
    language: str = Field(default="en", sa_column=Column(Text, nullable=False,
                                                         server_default="en"))
    """The language the customer is written to (a template folder such as "de")."""
    assignment: str = Field(default="", sa_column=Column(Text, nullable=False,
                                                         server_default=""))
    """Why the thread has its agent: the latest assignment or hand-over, in words."""
    resolved_at: datetime | None = _ts(nullable=True)
    """While resolved: when it was (`[store] retention` counts from it); None while open."""
    customer_name: str = Field(default="", sa_column=Column(Text, nullable=False,
                                                            server_default=""))
    """The display name the acknowledgement was addressed to; "" when none, or erased."""
    customer_offset: int | None = None
    """The UTC offset of the customer's Date header in minutes (`core.eta.customer_offset`);
    None when unknown. Status updates give times in it as the acknowledgement did."""


class ThreadEvent(SQLModel, table=True):
    """Something that happened to a thread, with its time: the thread's history."""

    __tablename__ = "thread_events"

    id: int | None = Field(default=None, primary_key=True)
    thread_id: str = Field(index=True)
    at: datetime = _ts()
    kind: str
    detail: str = Field(default="", sa_column=Column(Text, nullable=False))


class KnownId(SQLModel, table=True):
    """Every Message-ID we stored, received or sent, and its thread."""

    __tablename__ = "known_ids"

    message_id: str = Field(primary_key=True)
    thread_id: str = Field(index=True)
    direction: str


class OutboxItem(SQLModel, table=True):
    """Mail to send; written in the same transaction as the decision that caused it."""

    __tablename__ = "outbox"
    __table_args__ = (UniqueConstraint("thread_id", "kind", name="uq_outbox_thread_kind"),)

    id: int | None = Field(default=None, primary_key=True)
    thread_id: str
    kind: str
    mailbox: str
    message_id: str
    envelope_from: str
    recipient: str
    body: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    state: str = Field(default="pending", index=True)
    attempts: int = 0
    next_attempt_at: datetime = _ts(index=True)
    created_at: datetime = _ts()
    arrived_at: datetime = _ts()
    sent_at: datetime | None = _ts(nullable=True)
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False))
    claimed_by: str | None = None
    """The instance that took the item to send it (`Instance.id`); kept after it finished."""
    appended_at: datetime | None = _ts(nullable=True)
    """When its copy was appended to the mailbox's Sent folder (`daemon.sent_copies`), or
    settled that none will be (mail the customer does not see, erased, from before copies)."""
    append_next_at: datetime | None = _ts(nullable=True)
    """The earliest time an instance may try to append the copy: an instance's claim on it,
    or the retry after a failure; None: at once."""


class Cursor(SQLModel, table=True):
    """How far a mailbox has been read: UIDVALIDITY and the last UID recorded."""

    __tablename__ = "cursors"

    account: str = Field(primary_key=True)
    """The IMAP account (`ImapSettings.account`): two accounts' INBOX are two cursors."""
    mailbox: str = Field(primary_key=True)
    uidvalidity: int = _big()
    last_uid: int = _big()
    updated_at: datetime = _ts()


class Counter(SQLModel, table=True):
    """Named counters, such as whose turn it is in the round robin."""

    __tablename__ = "counters"

    name: str = Field(primary_key=True)
    value: int = _big(default=0)


class Instance(SQLModel, table=True):
    """A running (or recently stopped) mailbridge process sharing this store."""

    __tablename__ = "instances"

    id: str = Field(primary_key=True)
    """Random per process start: a restarted daemon is a new instance."""
    host: str
    pid: int
    version: str = ""
    started_at: datetime = _ts()
    last_seen_at: datetime = _ts()
    """The heartbeat: renewed every quarter of `[store] lease_timeout`."""
    stopped_at: datetime | None = _ts(nullable=True)
    stop_reason: str = Field(default="", sa_column=Column(Text, nullable=False))
    machine_id: str = Field(default="", sa_column=Column(Text, nullable=False))
    """/etc/machine-id of its machine ("" where unknown); host and pid are only shown."""
    boot_id: str = Field(default="", sa_column=Column(Text, nullable=False))
    """The kernel's boot id when it started: with `machine_id`, tells an earlier boot."""
    problems: str = Field(default="", sa_column=Column(Text, nullable=False))
    """What it reported degraded at its last heartbeat, one line each ("" when nothing)."""


class MailboxLease(SQLModel, table=True):
    """Which instance watches a mailbox of an account, until when; the holder renews it
    while alive."""

    __tablename__ = "mailbox_leases"

    account: str = Field(primary_key=True)
    """`user@host:port` of the IMAP account (never a secret), "" where there is none:
    instances of different accounts sharing a store each watch their own INBOX."""
    mailbox: str = Field(primary_key=True)
    holder: str
    """`Instance.id` of the watcher."""
    acquired_at: datetime = _ts()
    expires_at: datetime = _ts()
    synced_at: datetime | None = _ts(nullable=True)
    """The holder's last successful look at the mailbox (IMAP sync or IDLE check)."""
