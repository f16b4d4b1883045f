"""Versioned schema migrations, the same on SQLite and PostgreSQL.

Public API: `MIGRATIONS`, `migrate(engine) -> int`, `current_version(conn)`.

Each migration is frozen history: it defines the tables as they were at that
version with SQLAlchemy Core, never by importing today's models, so an old
database can always be brought forward one step at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    inspect,
    text,
)

from mailbridge.store.tables import UTCDateTime

Migration = Callable[[Connection], None]


def _v1_initial(conn: Connection) -> None:
    md = MetaData()
    Table(
        "messages", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("source", String, nullable=False),
        Column("mailbox", String, nullable=False),
        Column("uidvalidity", BigInteger),
        Column("uid", BigInteger),
        Column("message_id", String, index=True),
        Column("sender", String, nullable=False),
        Column("subject", Text, nullable=False),
        Column("received_at", UTCDateTime(), nullable=False),
        Column("recorded_at", UTCDateTime(), nullable=False),
        Column("size", Integer, nullable=False),
        Column("thread_id", String, index=True),
        Column("action", String, nullable=False),
        Column("rule", String, nullable=False),
        Column("reason", Text, nullable=False),
        Column("defects", Text, nullable=False),
        UniqueConstraint("mailbox", "uidvalidity", "uid", name="uq_message_source"),
    )
    Table(
        "threads", md,
        Column("id", String, primary_key=True),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("customer", String, nullable=False, index=True),
        Column("subject", Text, nullable=False),
        Column("agent_name", String, nullable=False),
        Column("agent_email", String, nullable=False),
        Column("state", String, nullable=False),
        Column("first_response_due", UTCDateTime(), nullable=False, index=True),
    )
    Table(
        "known_ids", md,
        Column("message_id", String, primary_key=True),
        Column("thread_id", String, nullable=False, index=True),
        Column("direction", String, nullable=False),
    )
    outbox = Table(
        "outbox", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("thread_id", String, nullable=False),
        Column("kind", String, nullable=False),
        Column("mailbox", String, nullable=False),
        Column("message_id", String, nullable=False),
        Column("envelope_from", String, nullable=False),
        Column("recipient", String, nullable=False),
        Column("body", LargeBinary, nullable=False),
        Column("state", String, nullable=False, index=True),
        Column("attempts", Integer, nullable=False),
        Column("next_attempt_at", UTCDateTime(), nullable=False, index=True),
        Column("created_at", UTCDateTime(), nullable=False),
        Column("arrived_at", UTCDateTime(), nullable=False),
        Column("sent_at", UTCDateTime()),
        Column("last_error", Text, nullable=False),
        UniqueConstraint("thread_id", "kind", name="uq_outbox_thread_kind"),
    )
    Index("ix_outbox_due", outbox.c.state, outbox.c.next_attempt_at)
    Table(
        "cursors", md,
        Column("mailbox", String, primary_key=True),
        Column("uidvalidity", BigInteger, nullable=False),
        Column("last_uid", BigInteger, nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
    )
    Table(
        "counters", md,
        Column("name", String, primary_key=True),
        Column("value", BigInteger, nullable=False),
    )
    md.create_all(conn)


def _v2_thread_matching(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE threads ADD COLUMN subject_key TEXT NOT NULL DEFAULT ''"))
    conn.execute(text(
        "CREATE INDEX ix_threads_customer_subject ON threads (customer, subject_key)"))
    conn.execute(text("CREATE INDEX ix_threads_customer_created ON threads (customer, created_at)"))
    conn.execute(text("CREATE INDEX ix_threads_created ON threads (created_at)"))


def _v3_sla(conn: Connection) -> None:
    timestamp = UTCDateTime().compile(dialect=conn.dialect)
    for column, kind in (("policy", "TEXT NOT NULL DEFAULT 'default'"),
                         ("priority", "TEXT NOT NULL DEFAULT 'normal'"),
                         ("clock", "TEXT NOT NULL DEFAULT ''"),
                         ("next_due_at", timestamp),
                         ("first_response_at", timestamp),
                         ("first_response_seconds", "FLOAT"),
                         ("first_response_business_seconds", "FLOAT"),
                         ("first_response_met", "BOOLEAN")):
        conn.execute(text(f"ALTER TABLE threads ADD COLUMN {column} {kind}"))
    conn.execute(text("CREATE INDEX ix_threads_next_due ON threads (next_due_at)"))
    conn.execute(text("CREATE INDEX ix_threads_policy_response ON threads "
                      "(policy, first_response_at)"))
    md = MetaData()
    Table(
        "thread_events", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("thread_id", String, nullable=False, index=True),
        Column("at", UTCDateTime(), nullable=False),
        Column("kind", String, nullable=False),
        Column("detail", Text, nullable=False),
    )
    md.create_all(conn)


MIGRATIONS: tuple[tuple[int, str, Migration], ...] = (
    (1, "messages, threads, known ids, outbox, cursors, counters", _v1_initial),
    (2, "threads.subject_key and indexes for subject, burst and cap matching",
     _v2_thread_matching),
    (3, "SLA: policy, priority, clock and next due time on threads; thread events", _v3_sla),
)

_VERSION_TABLE = "schema_version"


def current_version(conn: Connection) -> int:
    """The highest migration applied to this database; 0 for an empty one."""
    if not inspect(conn).has_table(_VERSION_TABLE):
        return 0
    found = conn.execute(text(f"SELECT MAX(version) FROM {_VERSION_TABLE}")).scalar()
    return int(found or 0)


def migrate(engine: Engine) -> int:
    """Apply every pending migration, each in its own transaction; return the version."""
    with engine.begin() as conn:
        conn.execute(text(
            f"CREATE TABLE IF NOT EXISTS {_VERSION_TABLE} "
            "(version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
        ))
    version = 0
    for number, description, step in MIGRATIONS:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                # Two instances starting at once must not both migrate.
                conn.execute(text("SELECT pg_advisory_xact_lock(727262)"))
            if current_version(conn) >= number:
                version = number
                continue
            step(conn)
            conn.execute(
                text(f"INSERT INTO {_VERSION_TABLE} VALUES (:v, :d, :t)"),
                {"v": number, "d": description, "t": datetime.now(UTC).isoformat()},
            )
            version = number
    return version
