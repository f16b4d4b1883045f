"""Every earlier schema version, with data in it, migrates to the latest: its rows survive
and the columns added since get sensible values, on SQLite and on PostgreSQL.

For each version v before the latest, the store is built by running the migrations up to v
only; rows are written with exactly the columns version v had (the tables as the database
reports them, not today's models); then `Store.open` migrates. A migration added later is
covered by these tests at once: its new columns must keep the old rows readable, and the
columns named in `NEW_COLUMN_VALUES` must hold what is listed there.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Column, Connection, DateTime, MetaData, Table, inspect, select, text
from sqlalchemy.exc import SAWarning

from mailbridge.core import sla
from mailbridge.daemon.deadlines import clock_columns
from mailbridge.store import peers
from mailbridge.store.codec import dump_clock
from mailbridge.store.db import Store
from mailbridge.store.engine import engine_for
from mailbridge.store.migrations import LATEST, MIGRATIONS, current_version, migrate
from mailbridge.store.summaries import summaries
from mailbridge.store.tables import UTCDateTime

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
H = timedelta(hours=1)

WAITING = sla.Clock(state=sla.AWAITING_AGENT, waiting_since=T0, first_response_due=T0 + 4 * H,
                    resolution_due=T0 + 48 * H)
ANSWERED = sla.Clock(state=sla.AWAITING_CUSTOMER, waiting_since=None,
                     first_response_due=T0 + 4 * H, first_response_at=T0 + H)
RESOLVED = sla.Clock(state=sla.RESOLVED, waiting_since=None, first_response_due=T0 + 4 * H,
                     first_response_at=T0 + 2 * H)


def _thread(thread_id: str, state: str, clock: sla.Clock, **extra: Any) -> dict[str, Any]:
    return {"id": thread_id, "created_at": T0, "customer": f"{thread_id.lower()}@example.org",
            "subject": f"Order {thread_id} arrived broken", "agent_name": "Dana Whitfield",
            "agent_email": "dana@example.com", "state": state,
            "first_response_due": T0 + 4 * H,
            "subject_key": f"order {thread_id.lower()} arrived broken",  # v2
            "policy": "vip", "priority": "high", "clock": dump_clock(clock),  # v3
            "next_due_at": T0 + 4 * H if state == sla.AWAITING_AGENT else None,
            "first_response_at": clock.first_response_at,
            "first_response_seconds": 3600.0 if clock.first_response_at else None,
            "first_response_business_seconds": 1800.0 if clock.first_response_at else None,
            "first_response_met": True if clock.first_response_at else None,
            **clock_columns(clock),  # v4
            "language": "de", "assignment": "round robin: Dana was next",  # v6
            "resolved_at": T0 + 3 * H if state == sla.RESOLVED else None,  # v8
            **extra}


ROWS: dict[str, list[dict[str, Any]]] = {
    # Every column any version had; each store gets those its version has.
    "messages": [
        {"source": "imap", "mailbox": "INBOX", "uidvalidity": 3_000_000_000,
         "uid": 4_000_000_000, "message_id": "<m1@example.org>", "sender": "a@example.org",
         "subject": "Order A arrived broken", "received_at": T0, "recorded_at": T0,
         "size": 2048, "thread_id": "A", "action": "ack", "rule": "new_thread",
         "reason": "a new thread", "defects": ""},
        {"source": "imap", "mailbox": "INBOX", "uidvalidity": 3_000_000_000,
         "uid": 4_000_000_001, "message_id": "<m2@example.org>",
         "sender": "mailer-daemon@example.net", "subject": "Undelivered",
         "received_at": T0 + H, "recorded_at": T0 + H, "size": 512, "thread_id": None,
         "action": "ignore", "rule": "robot_sender", "reason": "a robot", "defects": "x"},
    ],
    "threads": [_thread("A", sla.AWAITING_AGENT, WAITING),
                _thread("B", sla.AWAITING_CUSTOMER, ANSWERED),
                _thread("C", sla.RESOLVED, RESOLVED)],
    "known_ids": [{"message_id": "<m1@example.org>", "thread_id": "A", "direction": "in"},
                  {"message_id": "<ack1@example.com>", "thread_id": "A", "direction": "out"}],
    "outbox": [
        {"thread_id": "A", "kind": "ack", "mailbox": "INBOX", "message_id": "<ack1@example.com>",
         "envelope_from": "", "recipient": "a@example.org", "body": b"Subject: Re: A\r\n\r\nHi",
         "state": "pending", "attempts": 1, "next_attempt_at": T0, "created_at": T0,
         "arrived_at": T0, "sent_at": None, "last_error": "451 try again",
         "claimed_by": None,  # v5
         "appended_at": None, "append_next_at": None},  # v9
        {"thread_id": "B", "kind": "ack", "mailbox": "INBOX", "message_id": "<ack2@example.com>",
         "envelope_from": "", "recipient": "b@example.org", "body": b"Subject: Re: B\r\n\r\nHi",
         "state": "sent", "attempts": 1, "next_attempt_at": T0, "created_at": T0,
         "arrived_at": T0, "sent_at": T0 + timedelta(seconds=1), "last_error": "",
         "claimed_by": "i-old", "appended_at": T0, "append_next_at": None},
    ],
    "cursors": [{"mailbox": "INBOX", "uidvalidity": 3_000_000_000, "last_uid": 4_000_000_001,
                 "updated_at": T0 + H}],
    "counters": [{"name": "round_robin", "value": 41}],
    "thread_events": [{"thread_id": "A", "at": T0, "kind": "created", "detail": "vip high"},
                      {"thread_id": "C", "at": T0 + 3 * H, "kind": "resolved", "detail": ""}],
    "instances": [{"id": "i-old", "host": "desk1", "pid": 4242, "version": "0.5",
                   "started_at": T0, "last_seen_at": T0 + H, "stopped_at": T0 + H,
                   "stop_reason": "stopped", "machine_id": "m" * 32, "boot_id": "b" * 32}],
    "mailbox_leases": [{"mailbox": "INBOX", "holder": "i-old", "acquired_at": T0,
                        "expires_at": T0 + H, "synced_at": T0 + H,
                        "account": "support@example.com@imap.example.com:993"}],  # v13
}

KEYS = {"messages": ("message_id",), "threads": ("id",), "known_ids": ("message_id",),
        "outbox": ("thread_id", "kind"), "cursors": ("mailbox",), "counters": ("name",),
        "thread_events": ("thread_id", "kind"), "instances": ("id",),
        "mailbox_leases": ("mailbox",)}
"""What finds an inserted row again (autoincrement ids are left to the database)."""


def _v4(thread_id: str, had_clock: bool) -> dict[str, object]:
    """What migration 4 gives a thread, from its clock or, before version 3, its deadline."""
    if thread_id != "A":
        return dict.fromkeys(("waiting_since", "response_due_at", "response_kind",
                              "resolution_due_at"))
    if had_clock:
        return clock_columns(WAITING)
    return {"waiting_since": T0, "response_due_at": T0 + 4 * H,
            "response_kind": "first_response", "resolution_due_at": None}


Expect = Callable[[dict[str, Any], bool], object]
NEW_COLUMN_VALUES: dict[tuple[str, str], Expect] = {
    # (table, column): the value an old row gets, from the row as read and whether the
    # store already had a clock (version 3) before migrating.
    ("threads", "subject_key"): lambda row, _: "",
    ("threads", "policy"): lambda row, _: "default",
    ("threads", "priority"): lambda row, _: "normal",
    ("threads", "clock"): lambda row, _: "",
    ("threads", "next_due_at"): lambda row, _: None,
    ("threads", "first_response_at"): lambda row, _: None,
    ("threads", "first_response_seconds"): lambda row, _: None,
    ("threads", "first_response_met"): lambda row, _: None,
    ("threads", "waiting_since"): lambda row, clock: _v4(row["id"], clock)["waiting_since"],
    ("threads", "response_due_at"): lambda row, clock: _v4(row["id"], clock)["response_due_at"],
    ("threads", "response_kind"): lambda row, clock: _v4(row["id"], clock)["response_kind"],
    ("threads", "resolution_due_at"):
        lambda row, clock: _v4(row["id"], clock)["resolution_due_at"],
    ("threads", "language"): lambda row, _: "en",
    ("threads", "assignment"): lambda row, _: "",
    # Resolved before the column existed: the time of its "resolved" event, else some time.
    ("threads", "resolved_at"): lambda row, clock: (
        (T0 + 3 * H if clock else row["resolved_at"]) if row["state"] == sla.RESOLVED
        else None),
    ("messages", "excerpt"): lambda row, _: "",
    ("threads", "customer_name"): lambda row, _: "",
    ("threads", "customer_offset"): lambda row, _: None,
    ("outbox", "claimed_by"): lambda row, _: None,
    # Settled before copies to the Sent folder existed: never copied late.
    ("outbox", "appended_at"): lambda row, _: (
        None if row["state"] in ("pending", "sending") else row["created_at"]),
    ("outbox", "append_next_at"): lambda row, _: None,
    ("instances", "machine_id"): lambda row, _: "",
    ("instances", "boot_id"): lambda row, _: "",
    ("instances", "problems"): lambda row, _: "",
    ("mailbox_leases", "account"): lambda row, _: "",
    # Named by the first watcher of its account to look (`Store.adopt_unnamed`).
    ("messages", "account"): lambda row, _: "",
    ("cursors", "account"): lambda row, _: "",
}


def _table(conn: Connection, name: str) -> Table:
    """The table as the database has it now, its times read and written as aware UTC."""
    with warnings.catch_warnings():  # expression indexes (lower(agent_email)) are not reflected
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", SAWarning)
        found = Table(name, MetaData(), autoload_with=conn)
    return Table(name, MetaData(), *(
        Column(c.name, UTCDateTime() if isinstance(c.type, DateTime) else c.type,
               primary_key=c.primary_key) for c in found.columns))


def _build_at(url: str, version: int) -> dict[str, list[dict[str, Any]]]:
    """A store at `version` (migrations 1..version only) holding `ROWS`, cut to the tables
    and columns that version had; returns what was written."""
    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                          "description TEXT NOT NULL, applied_at TEXT NOT NULL)"))
        for number, description, step in MIGRATIONS[:version]:
            step(conn)
            conn.execute(text("INSERT INTO schema_version VALUES (:v, :d, 'then')"),
                         {"v": number, "d": description})
    written: dict[str, list[dict[str, Any]]] = {}
    with engine.begin() as conn:
        assert current_version(conn) == version
        present = set(inspect(conn).get_table_names())
        for name, rows in ROWS.items():
            if name not in present:
                continue
            table = _table(conn, name)
            written[name] = [{k: v for k, v in row.items() if k in table.c} for row in rows]
            conn.execute(table.insert(), written[name])
    engine.dispose()
    return written


def _read(url: str) -> dict[str, list[dict[str, Any]]]:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return {name: [dict(row._mapping) for row in conn.execute(select(_table(conn, name)))]
                    for name in ROWS if inspect(conn).has_table(name)}
    finally:
        engine.dispose()


def _find(rows: list[dict[str, Any]], table: str, like: dict[str, Any]) -> dict[str, Any]:
    [found] = [r for r in rows if all(r[k] == like[k] for k in KEYS[table])]
    return found


@pytest.mark.parametrize("version", range(1, LATEST))
def test_a_store_at_each_earlier_version_migrates_with_its_rows(store_url: str,
                                                               version: int) -> None:
    """Rows written at version v read back the same after migrating to the latest, the
    columns added since hold their listed values, and mailbridge works on the result."""
    written = _build_at(store_url, version)
    had_clock = version >= 3

    with pytest.raises(Exception, match=f"schema version {version}, this mailbridge needs"):
        Store.open(store_url, migrate=False).close()  # `threads` would not migrate it
    store = Store.open(store_url)  # `run` does
    try:
        after = _read(store_url)
        assert set(after) == set(ROWS), "every table of today's schema exists"
        for table, rows in written.items():
            assert len(after[table]) == len(rows), table
            for row in rows:
                found = _find(after[table], table, row)
                assert {k: found[k] for k in row} == row, f"{table} row {row} changed"
                for column in set(found) - set(row):
                    expect = NEW_COLUMN_VALUES.get((table, column))
                    if expect is not None:
                        assert found[column] == expect(found, had_clock), (table, column)
        for table in set(ROWS) - set(written):
            assert after[table] == [], f"{table}: new at a later version, empty"
        if "resolved_at" in after["threads"][0]:
            assert _find(after["threads"], "threads", {"id": "C"})["resolved_at"] is not None

        # mailbridge reads and writes the old rows as its own.
        by_thread = {s.thread: s for s in summaries(store)}
        assert {k: s.state for k, s in by_thread.items()} == {
            "A": "awaiting_agent", "B": "awaiting_customer", "C": "resolved"}
        assert [m.subject for m in store.messages()] == ["Order A arrived broken",
                                                        "Undelivered"]
        claimed = store.claim_outbox(T0 + H, claimer="i-new")
        assert claimed is not None and claimed.recipient == "a@example.org"
        assert store.cursor("", "INBOX") == (3_000_000_000, 4_000_000_001)
        assert [i.id for i in peers.instances(store)] == (["i-old"] if version >= 5 else [])
        with store.reading() as conn:
            assert current_version(conn) == LATEST
    finally:
        store.close()
    engine = engine_for(store_url)
    assert migrate(engine) == LATEST, "a second migration changes nothing"
    engine.dispose()
    Store.open(store_url, migrate=False).close()


def test_an_upgraded_desk_goes_on_where_it_was(store_url: str) -> None:
    """A store at version 13 (messages and cursor naming the folder alone) migrates, and its
    account adopts them as its watcher opens the folder: the UIDs it recorded stay recorded
    (no second acknowledgement) and its cursor stays where it was."""
    _build_at(store_url, 13)
    account = "support@example.com@imap.example.com:993"
    store = Store.open(store_url)
    try:
        assert store.adopt_unnamed(account, "INBOX", 3_000_000_000) == 2
        assert store.cursor(account, "INBOX") == (3_000_000_000, 4_000_000_001)
        with store.transaction() as tx:
            assert [uid for uid in range(4_000_000_000, 4_000_000_003) if tx.source_recorded(
                account, "INBOX", 3_000_000_000, uid)] == [4_000_000_000, 4_000_000_001]
    finally:
        store.close()
