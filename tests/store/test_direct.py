"""`store.direct`: statements run straight on SQLite's cursor fail as SQLAlchemy's do."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from mailbridge.store.db import Store
from mailbridge.store.direct import Direct
from mailbridge.store.tables import KnownId


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
