"""`mailbridge forget` as a command: its argument, a store it must not create or upgrade, and
what it prints when there is nothing to erase."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbridge.cli import main
from mailbridge.store.db import Store
from tests.configs import MAILBOX, MINIMAL


def _config(directory: Path) -> tuple[Path, Path]:
    store = directory / "store.sqlite3"
    path = directory / "mailbridge.toml"
    path.write_text(f'{MINIMAL}{MAILBOX}[store]\nurl = "sqlite:///{store}"\n', encoding="utf-8")
    return path, store


def test_an_address_is_asked_for(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Something that is not an email address is a usage error (64), before any store."""
    config, store = _config(tmp_path)
    assert main(["forget", "--config", str(config), "jane doe"]) == 64
    assert "not an email address" in capsys.readouterr().err and not store.exists()


def test_a_store_is_neither_created_nor_upgraded(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Without a store (the daemon never ran) the command says so, in one line, and makes none."""
    config, store = _config(tmp_path)
    assert main(["forget", "--config", str(config), "jane@example.org"]) != 0
    err = capsys.readouterr().err.strip()
    assert "mailbridge run" in err and len(err.splitlines()) == 1 and not store.exists()


def test_nothing_stored_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A customer the store never saw: exit 0, and the output says nothing was stored."""
    config, store = _config(tmp_path)
    Store.open(f"sqlite:///{store}").close()
    assert main(["forget", "--config", str(config), "Jane@Example.org"]) == 0
    assert capsys.readouterr().out.strip() == "nothing of jane@example.org is stored"
