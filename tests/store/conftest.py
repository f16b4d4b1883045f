"""The store contract runs once per backend: `store_url` is SQLite, then PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailbridge.store.db import Store


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store's URL: a SQLite file in tmp_path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.sqlite3"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store.open(store_url)
    yield opened
    opened.close()


@pytest.fixture
def postgresql_only(store_url: str) -> None:
    """Skip on SQLite: leases under contention and SKIP LOCKED need a server."""
    if not store_url.startswith("postgresql"):
        pytest.skip("needs several connections at once: PostgreSQL only")
