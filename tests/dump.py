"""A store's whole content as text, to check that something appears nowhere in it.

Public API: `dump_text(url) -> str`. Imports no pytest.

SQLite: the `iterdump()` of the file; PostgreSQL: `pg_dump` of the database. Both write
binary values in hex, where a search for a name would never hit, so every binary value of
every table is appended decoded as well.
"""

from __future__ import annotations

import sqlite3
import subprocess

import psycopg


def _sqlite(url: str) -> str:
    path = url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path)
    try:
        parts = list(conn.iterdump())
        tables = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                parts += [bytes(v).decode("utf-8", "replace") for v in row
                          if isinstance(v, bytes | memoryview)]
    finally:
        conn.close()
    return "\n".join(parts)


def _postgres(url: str) -> str:
    url = url.replace("postgresql+psycopg://", "postgresql://")
    done = subprocess.run(["pg_dump", "--no-owner", f"--dbname={url}"], capture_output=True,
                          check=True, timeout=60)
    parts = [done.stdout.decode("utf-8", "replace")]
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type = 'bytea'").fetchall()
        for table, column in columns:
            for (value,) in conn.execute(f'SELECT "{column}" FROM "{table}"'):
                if value is not None:
                    parts.append(bytes(value).decode("utf-8", "replace"))
    return "\n".join(parts)


def dump_text(url: str) -> str:
    """Everything stored at `url` (sqlite:/// or postgresql://), as one text."""
    return _sqlite(url) if url.startswith("sqlite") else _postgres(url)
