"""The engine for a store URL, with the connection settings this workload wants.

Public API: `engine_for`, `READ_ONLY`.

On SQLite every connection runs in WAL mode with `synchronous=NORMAL` and a 30 s busy
timeout, and transactions begin in SQLAlchemy's "begin" event: a writer takes the lock
up front (`BEGIN IMMEDIATE`), a reader marked with the `READ_ONLY` execution option
(the metrics scrape, through `Store.reading`) a WAL snapshot only. PostgreSQL gets a
pool that pings a connection before handing it out, and positional parameters.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.pool import StaticPool

READ_ONLY = "mailbridge_read_only"
"""The execution option that makes a SQLite transaction begin as a reader."""


def engine_for(url: str, *, connect_timeout: int | None = None,
               idle_in_transaction: float | None = None) -> Engine:
    """An engine for a sqlite:// or postgresql:// URL, tuned for this workload.

    `connect_timeout`: seconds a PostgreSQL connection attempt may take (default: the
    url's own `connect_timeout`, else libpq's, which waits for the operating system).
    `idle_in_transaction`: seconds after which the PostgreSQL server ends a transaction of
    ours that sends nothing (`idle_in_transaction_session_timeout`): a process stopped in
    the middle of one then holds its row locks no longer than that."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith("sqlite"):
        args: dict[str, Any] = {} if connect_timeout is None \
            else {"connect_timeout": connect_timeout}
        if idle_in_transaction is not None:
            given = make_url(url).query.get("options", "")
            given = " ".join(given) if isinstance(given, tuple) else given
            setting = f"-c idle_in_transaction_session_timeout={int(idle_in_transaction * 1000)}"
            args["options"] = f"{given} {setting}".strip()  # after the url's own options
        # Positional parameters (%s), as SQLite's are (?): `store.direct` runs the hot
        # statements straight on psycopg's cursor, which takes either style.
        return create_engine(url, pool_pre_ping=True, connect_args=args, paramstyle="format")
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
        read_only = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine
