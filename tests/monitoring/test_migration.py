"""Migration 4: the open-thread columns the scrape aggregates, filled in for old threads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import MetaData, Table, select, text

from mailbridge.core import sla
from mailbridge.daemon.deadlines import clock_columns
from mailbridge.store.codec import dump_clock
from mailbridge.store.db import Store
from mailbridge.store.engine import engine_for
from mailbridge.store.migrations import MIGRATIONS, migrate
from mailbridge.store.statements import THREADS

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _at_version_3(url: str) -> None:
    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                          "description TEXT NOT NULL, applied_at TEXT NOT NULL)"))
        for number, description, step in MIGRATIONS[:3]:
            step(conn)
            conn.execute(text("INSERT INTO schema_version VALUES (:v, :d, 'then')"),
                         {"v": number, "d": description})
    engine.dispose()


def test_version_4_fills_the_columns_from_each_clock(tmp_path: Path) -> None:
    """Threads from before version 4 get the columns their clock implies, as new ones do."""
    url = f"sqlite:///{tmp_path}/old.sqlite3"
    _at_version_3(url)
    waiting = sla.Clock(state=sla.AWAITING_AGENT, waiting_since=T0,
                        first_response_due=T0 + timedelta(hours=4),
                        resolution_due=T0 + timedelta(days=2))
    next_wait = sla.Clock(state=sla.AWAITING_AGENT, waiting_since=T0 + timedelta(hours=5),
                          first_response_due=T0 + timedelta(hours=4),
                          first_response_at=T0 + timedelta(hours=1),
                          next_response_due=T0 + timedelta(hours=13))
    answered = sla.Clock(state=sla.AWAITING_CUSTOMER, waiting_since=None,
                         first_response_due=T0 + timedelta(hours=4),
                         first_response_at=T0 + timedelta(hours=1))
    engine = engine_for(url)
    old = Table("threads", MetaData(), autoload_with=engine)  # the table as version 3 left it
    assert "response_due_at" not in old.c
    naive = T0.replace(tzinfo=None)  # what SQLite stores for UTC
    with engine.begin() as conn:
        for thread_id, state, clock in (("A", "awaiting_agent", dump_clock(waiting)),
                                        ("B", "awaiting_agent", dump_clock(next_wait)),
                                        ("C", "awaiting_customer", dump_clock(answered)),
                                        ("D", "awaiting_agent", "")):
            conn.execute(old.insert(), {
                "id": thread_id, "created_at": naive, "customer": f"{thread_id}@example.org",
                "subject": "", "agent_name": "Dana", "agent_email": "dana@example.com",
                "state": state, "first_response_due": naive + timedelta(hours=4),
                "subject_key": "", "policy": "default", "priority": "normal", "clock": clock})
    engine.dispose()
    assert migrate(engine_for(url)) == MIGRATIONS[-1][0]
    store = Store.open(url)
    t = THREADS.c
    with store.reading() as conn:
        rows = {row.id: row for row in conn.execute(
            select(t.id, t.waiting_since, t.response_due_at, t.response_kind,
                   t.resolution_due_at))}
    store.close()

    def got(thread_id: str) -> dict[str, object]:
        row = rows[thread_id]
        return {"waiting_since": row.waiting_since, "response_due_at": row.response_due_at,
                "response_kind": row.response_kind, "resolution_due_at": row.resolution_due_at}

    assert got("A") == clock_columns(waiting)
    assert got("B") == clock_columns(next_wait)
    assert got("B")["response_kind"] == "next_response"
    assert got("C") == clock_columns(answered) == dict.fromkeys(got("C"))
    assert got("D") == {"waiting_since": T0, "response_due_at": T0 + timedelta(hours=4),
                        "response_kind": "first_response", "resolution_due_at": None}
