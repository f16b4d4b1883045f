"""`store.direct`: statements run straight on SQLite's cursor fail as SQLAlchemy's do."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from mailbridge.store.db import Store
from mailbridge.store.direct import Direct
from mailbridge.store.tables import KnownId, ThreadEvent
from tests.outbox import T0


def test_a_refused_insert_is_sqlalchemys_integrity_error_without_the_values(
        tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path}/store.sqlite3")
    try:
        with store.transaction() as tx:
            tx.insert(KnownId, message_id="<secret@customer.example>", thread_id="ABCDEF",
                      direction="in")
        with pytest.raises(IntegrityError) as refused, store.transaction() as tx:
            tx.insert(KnownId, message_id="<secret@customer.example>", thread_id="GHIJKL",
                      direction="in")
        assert "UNIQUE constraint failed: known_ids.message_id" in str(refused.value)
        assert "secret@customer.example" not in str(refused.value)
        with store.transaction() as tx:
            assert tx.known_ids(["<secret@customer.example>"]) == {
                "<secret@customer.example>": ("ABCDEF", "in")}
    finally:
        store.close()


def test_only_positional_dialects_and_value_defaults_are_prepared() -> None:
    with pytest.raises(ValueError, match="positional"):
        Direct(postgresql.psycopg.dialect())
    counted = Table("counted", MetaData(), Column("id", Integer, primary_key=True),
                    Column("n", Integer, default=lambda: 1))
    with pytest.raises(ValueError, match="column n has a default that is not a value"):
        Direct(sqlite.dialect()).prepare(counted.insert(), ["id"])
    with pytest.raises(ValueError, match="no such column: nn"):  # a typo fails, not ignored
        Direct(sqlite.dialect()).prepare(counted.insert(), ["id", "n", "nn"])


def test_a_transactions_rows_are_written_per_table_in_order(store: Store) -> None:
    """Rows held back by a transaction go out as one multi-row INSERT per table, on both
    backends: each table's rows keep their order (and their ids'), an UPDATE between them
    still runs after the rows before it, and a refused row still refuses the whole write."""
    with store.transaction() as tx:
        tx.round_robin_turn()  # the counter's first row: an INSERT held back, then an UPDATE
        for n in range(5):
            tx.insert(KnownId, message_id=f"<{n}@customer.example>", thread_id=f"T{n}",
                      direction="in")
            tx.event(f"T{n}", T0 + timedelta(minutes=n), "opened", f"number {n}")
    with store.transaction() as tx:
        assert tx.round_robin_turn() == 1
        assert tx.known_ids([f"<{n}@customer.example>" for n in range(5)]) == {
            f"<{n}@customer.example>": (f"T{n}", "in") for n in range(5)}
        events = tx.session.exec(select(ThreadEvent).order_by(col(ThreadEvent.id))).all()
    assert [(e.thread_id, e.detail) for e in events] == [(f"T{n}", f"number {n}")
                                                        for n in range(5)]
    with pytest.raises(IntegrityError), store.transaction() as tx:
        tx.insert(KnownId, message_id="<new@customer.example>", thread_id="T9", direction="in")
        tx.insert(KnownId, message_id="<2@customer.example>", thread_id="T9", direction="in")
    with store.transaction() as tx:
        assert tx.known_ids(["<new@customer.example>"]) == {}
