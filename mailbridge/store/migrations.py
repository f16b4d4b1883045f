"""Versioned schema migrations, the same on SQLite and PostgreSQL.

Public API: `MIGRATIONS`, `LATEST`, `migrate(engine, target=LATEST) -> int`,
`current_version(conn)`.

Each migration is frozen history: it defines the tables as they were at that
version with SQLAlchemy Core, never by importing today's models, so an old
database can always be brought forward one step at a time.
"""

from __future__ import annotations

import json
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
    bindparam,
    inspect,
    select,
    text,
    update,
)

from mailbridge.errors import StoreError
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


def _v4_open_thread_columns(conn: Connection) -> None:
    """What the metrics scrape aggregates, as plain columns under one covering index.

    The pending response deadline and its kind, the resolution deadline and the arrival
    of the oldest unanswered customer message were only inside the clock's JSON; a scrape
    with 100,000 open threads must not parse 100,000 JSON texts.
    """
    timestamp = UTCDateTime().compile(dialect=conn.dialect)
    for column, kind in (("waiting_since", timestamp), ("response_due_at", timestamp),
                         ("response_kind", "TEXT"), ("resolution_due_at", timestamp)):
        conn.execute(text(f"ALTER TABLE threads ADD COLUMN {column} {kind}"))
    conn.execute(text(
        "CREATE INDEX ix_threads_open_sla ON threads (state, policy, response_kind, "
        "response_due_at, resolution_due_at, waiting_since)"))
    threads = Table(
        "threads", MetaData(),
        Column("id", String, primary_key=True),
        Column("state", String),
        Column("clock", Text),
        Column("created_at", UTCDateTime()),
        Column("first_response_due", UTCDateTime()),
        Column("waiting_since", UTCDateTime()),
        Column("response_due_at", UTCDateTime()),
        Column("response_kind", Text),
        Column("resolution_due_at", UTCDateTime()),
    )
    c = threads.c
    rows = conn.execute(select(c.id, c.clock, c.created_at, c.first_response_due)
                        .where(c.state == "awaiting_agent")).all()
    for row in rows:
        conn.execute(update(threads).where(c.id == row.id)
                     .values(**_v4_columns(row.clock, row.created_at, row.first_response_due)))


def _v4_columns(clock: str, created_at: datetime,
                first_response_due: datetime) -> dict[str, object]:
    """The new columns of a thread awaiting an agent, from its clock as stored at version 3."""
    if not clock:  # a thread from before version 3: only the first response is known
        return {"waiting_since": created_at, "response_due_at": first_response_due,
                "response_kind": "first_response", "resolution_due_at": None}
    data = json.loads(clock)

    def when(name: str) -> datetime | None:
        value = data.get(name)
        return datetime.fromisoformat(value) if value else None

    kind, due = None, None
    if when("first_response_due") is not None and when("first_response_at") is None:
        kind, due = "first_response", when("first_response_due")
    elif when("next_response_due") is not None:
        kind, due = "next_response", when("next_response_due")
    return {"waiting_since": when("waiting_since"), "response_due_at": due,
            "response_kind": kind, "resolution_due_at": when("resolution_due")}


def _v5_instances(conn: Connection) -> None:
    """Several instances on one store: who runs, who watches which mailbox, who sends what."""
    md = MetaData()
    Table(
        "instances", md,
        Column("id", String, primary_key=True),
        Column("host", String, nullable=False),
        Column("pid", Integer, nullable=False),
        Column("version", String, nullable=False),
        Column("started_at", UTCDateTime(), nullable=False),
        Column("last_seen_at", UTCDateTime(), nullable=False),
        Column("stopped_at", UTCDateTime()),
        Column("stop_reason", Text, nullable=False),
    )
    Table(
        "mailbox_leases", md,
        Column("mailbox", String, primary_key=True),
        Column("holder", String, nullable=False),
        Column("acquired_at", UTCDateTime(), nullable=False),
        Column("expires_at", UTCDateTime(), nullable=False),
        Column("synced_at", UTCDateTime()),
    )
    md.create_all(conn)
    conn.execute(text("ALTER TABLE outbox ADD COLUMN claimed_by VARCHAR"))


def _v6_assignment(conn: Connection) -> None:
    """Named agents: each thread's language and why it has its agent, and agent load.

    The index answers "open threads per agent" (assignment's least-loaded rule) from the
    index alone, and the customer index already finds a customer's latest thread.
    """
    conn.execute(text("ALTER TABLE threads ADD COLUMN language TEXT NOT NULL DEFAULT 'en'"))
    conn.execute(text("ALTER TABLE threads ADD COLUMN assignment TEXT NOT NULL DEFAULT ''"))
    conn.execute(text("CREATE INDEX ix_threads_state_agent ON threads (state, agent_email)"))


def _v7_instance_identity(conn: Connection) -> None:
    """Instances: the machine id and boot id they ran on. Host and PID repeat across
    containers and reboots; these tell an instance from before this machine's reboot."""
    conn.execute(text("ALTER TABLE instances ADD COLUMN machine_id TEXT NOT NULL DEFAULT ''"))
    conn.execute(text("ALTER TABLE instances ADD COLUMN boot_id TEXT NOT NULL DEFAULT ''"))


def _v8_resolved_at(conn: Connection) -> None:
    """threads.resolved_at: when a resolved thread was resolved, so that retention finds the
    threads resolved before a cutoff with an index rather than by reading every history.

    A thread resolved already gets the time of its latest "resolved" event; one without
    (from before version 3) the time of this migration, so it is kept a whole retention.
    """
    timestamp = UTCDateTime().compile(dialect=conn.dialect)
    conn.execute(text(f"ALTER TABLE threads ADD COLUMN resolved_at {timestamp}"))
    conn.execute(text("CREATE INDEX ix_threads_resolved ON threads (state, resolved_at)"))
    conn.execute(text(
        "UPDATE threads SET resolved_at = (SELECT MAX(e.at) FROM thread_events e "
        "WHERE e.thread_id = threads.id AND e.kind = 'resolved') WHERE state = 'resolved'"))
    conn.execute(text("UPDATE threads SET resolved_at = :now "
                      "WHERE state = 'resolved' AND resolved_at IS NULL")
                 .bindparams(bindparam("now", type_=UTCDateTime())), {"now": datetime.now(UTC)})


def _v9_sent_copies(conn: Connection) -> None:
    """outbox.appended_at and append_next_at: the copy of sent mail in the mailbox's Sent
    folder (`daemon.sent_copies`), and when an instance may next try to append it.

    Mail that was settled before this version is not copied afterwards: it gets the time it
    was created as its appended_at. The index finds the sent items not yet copied.
    """
    timestamp = UTCDateTime().compile(dialect=conn.dialect)
    conn.execute(text(f"ALTER TABLE outbox ADD COLUMN appended_at {timestamp}"))
    conn.execute(text(f"ALTER TABLE outbox ADD COLUMN append_next_at {timestamp}"))
    conn.execute(text("UPDATE outbox SET appended_at = created_at "
                      "WHERE state NOT IN ('pending', 'sending')"))
    conn.execute(text("CREATE INDEX ix_outbox_copies ON outbox (state, appended_at, sent_at)"))


def _v10_message_excerpt(conn: Connection) -> None:
    """messages.excerpt: the start of a customer's text (its first text part, bounded), so
    that an agent handed a thread sees what the customer wrote. Older messages have none."""
    conn.execute(text("ALTER TABLE messages ADD COLUMN excerpt TEXT NOT NULL DEFAULT ''"))


def _v11_queue(conn: Connection) -> None:
    """threads.customer_name and customer_offset: the name the acknowledgement greeted and
    the UTC offset (minutes) of the customer's Date header, so that a status update greets
    and gives times as the acknowledgement did; and an index for an agent's queue: the
    threads awaiting one agent, by their response deadline (`Tx.queue_ahead`)."""
    conn.execute(text("ALTER TABLE threads ADD COLUMN customer_name TEXT NOT NULL DEFAULT ''"))
    conn.execute(text("ALTER TABLE threads ADD COLUMN customer_offset INTEGER"))
    conn.execute(text("CREATE INDEX ix_threads_agent_queue ON threads "
                      "(state, lower(agent_email), response_due_at)"))


def _v12_instance_problems(conn: Connection) -> None:
    """instances.problems: what a running instance reports degraded (one line each, "" when
    nothing is), renewed with its heartbeat, for `mailbridge status`."""
    conn.execute(text("ALTER TABLE instances ADD COLUMN problems TEXT NOT NULL DEFAULT ''"))


def _v13_lease_account(conn: Connection) -> None:
    """mailbox_leases keyed by the account as well as the mailbox, so that instances of
    different accounts sharing one store do not compete for one "INBOX". Rows from before
    name no account (""): nobody renews them under that key, so they expire within the
    lease timeout and go when their holder stops or is reaped."""
    conn.execute(text("ALTER TABLE mailbox_leases RENAME TO mailbox_leases_v12"))
    md = MetaData()
    Table(
        "mailbox_leases", md,
        Column("account", String, primary_key=True),
        Column("mailbox", String, primary_key=True),
        Column("holder", String, nullable=False),
        Column("acquired_at", UTCDateTime(), nullable=False),
        Column("expires_at", UTCDateTime(), nullable=False),
        Column("synced_at", UTCDateTime()),
    )
    md.create_all(conn)
    conn.execute(text(
        "INSERT INTO mailbox_leases (account, mailbox, holder, acquired_at, expires_at, "
        "synced_at) SELECT '', mailbox, holder, acquired_at, expires_at, synced_at "
        "FROM mailbox_leases_v12"))
    conn.execute(text("DROP TABLE mailbox_leases_v12"))


def _v14_source_account(conn: Connection) -> None:
    """messages.account and cursors.account: a recorded message's source and a mailbox's
    cursor name the IMAP account as well as the folder, so that two accounts' INBOX with
    one UIDVALIDITY are not taken for one (`uq_message_source` and the cursors' key).
    Rows from before name no account (""): the first watcher of an account to open that
    folder at that UIDVALIDITY adopts them (`Store.adopt_unnamed`), so an upgraded desk
    neither acknowledges again nor loses its place."""
    if conn.dialect.name == "postgresql":
        for table in ("messages", "cursors"):
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN account TEXT NOT NULL "
                              "DEFAULT ''"))
        conn.execute(text("ALTER TABLE messages DROP CONSTRAINT uq_message_source"))
        conn.execute(text("ALTER TABLE messages ADD CONSTRAINT uq_message_source "
                          "UNIQUE (account, mailbox, uidvalidity, uid)"))
        conn.execute(text("ALTER TABLE cursors DROP CONSTRAINT cursors_pkey"))
        conn.execute(text("ALTER TABLE cursors ADD PRIMARY KEY (account, mailbox)"))
        return
    # SQLite changes no key in place: each table is made anew, as it was plus the account
    # (in the cursors' key), and its rows copied.
    for name in ("messages", "cursors"):
        old = Table(name, MetaData(), autoload_with=conn)
        conn.execute(text(f"ALTER TABLE {name} RENAME TO {name}_v13"))
        Table(name, MetaData(),
              Column("account", Text, nullable=False, server_default="",
                     primary_key=name == "cursors"),
              *(Column(c.name, c.type, nullable=c.nullable, primary_key=c.primary_key,
                       server_default=c.server_default) for c in old.columns),
              *([UniqueConstraint("account", "mailbox", "uidvalidity", "uid",
                                  name="uq_message_source")] if name == "messages" else []),
              ).create(conn)
        kept = ", ".join(c.name for c in old.columns)
        conn.execute(text(f"INSERT INTO {name} ({kept}) SELECT {kept} FROM {name}_v13"))
        conn.execute(text(f"DROP TABLE {name}_v13"))  # and its indexes, made again:
    for column in ("message_id", "thread_id"):
        conn.execute(text(f"CREATE INDEX ix_messages_{column} ON messages ({column})"))


MIGRATIONS: tuple[tuple[int, str, Migration], ...] = (
    (1, "messages, threads, known ids, outbox, cursors, counters", _v1_initial),
    (2, "threads.subject_key and indexes for subject, burst and cap matching",
     _v2_thread_matching),
    (3, "SLA: policy, priority, clock and next due time on threads; thread events", _v3_sla),
    (4, "threads: waiting since, response and resolution deadlines, for the metrics scrape",
     _v4_open_thread_columns),
    (5, "instances, mailbox leases, and which instance claimed each outbox item",
     _v5_instances),
    (6, "threads: language and assignment reason; open threads per agent index",
     _v6_assignment),
    (7, "instances: machine id and boot id", _v7_instance_identity),
    (8, "threads: when each was resolved, for retention", _v8_resolved_at),
    (9, "outbox: copies of sent mail in the Sent folder", _v9_sent_copies),
    (10, "messages: an excerpt of the customer's text, quoted in hand-over notices",
     _v10_message_excerpt),
    (11, "threads: the customer's name and UTC offset; an index for each agent's queue",
     _v11_queue),
    (12, "instances: the degraded parts each reports with its heartbeat",
     _v12_instance_problems),
    (13, "mailbox leases: keyed by the IMAP account as well as the mailbox", _v13_lease_account),
    (14, "messages and cursors: keyed by the IMAP account as well as the mailbox",
     _v14_source_account),
)

LATEST = MIGRATIONS[-1][0]
"""The schema version this code works on."""

_VERSION_TABLE = "schema_version"


def current_version(conn: Connection) -> int:
    """The highest migration applied to this database; 0 for an empty one."""
    if not inspect(conn).has_table(_VERSION_TABLE):
        return 0
    found = conn.execute(text(f"SELECT MAX(version) FROM {_VERSION_TABLE}")).scalar()
    return int(found or 0)


def migrate(engine: Engine, *, target: int = LATEST) -> int:
    """Apply every pending migration up to `target` (an earlier one: to build an old store),
    each in its own transaction; return the version.

    Raises `StoreError` for a database at a version newer than `LATEST`: the code that
    made it must not be undone by older code (`Store.open` says so with the url first).
    """
    with engine.connect() as conn:
        found = current_version(conn)
    if found > LATEST:
        raise StoreError(f"the store is at schema version {found}, this mailbridge knows "
                         f"up to {LATEST}: upgrade mailbridge")
    with engine.begin() as conn:
        conn.execute(text(
            f"CREATE TABLE IF NOT EXISTS {_VERSION_TABLE} "
            "(version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
        ))
    version = 0
    for number, description, step in MIGRATIONS[:target]:
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
