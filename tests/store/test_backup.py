"""`mailbridge backup`: a consistent copy of a SQLite store in WAL mode while other
connections write to it, checked, counted, written atomically; PostgreSQL points to pg_dump.

The daemon end to end (Dovecot in, SMTP out, backups taken meanwhile) is in
tests/io/test_store_daemon.py.
"""

from __future__ import annotations

import shutil
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from mailbridge.cli import main
from mailbridge.store.db import Store
from tests.configs import MINIMAL

NOW = "2026-03-02 09:00:00.000000"


def _case(conn: sqlite3.Connection, n: int) -> None:
    """One customer's case as the daemon writes it: a thread, its message and its ack,
    in the caller's transaction."""
    conn.execute(
        "INSERT INTO threads (id, created_at, customer, subject, agent_name, agent_email, "
        "state, first_response_due) VALUES (?, ?, ?, 'Order arrived broken', 'Dana', "
        "'dana@example.com', 'awaiting_agent', ?)", (f"T{n}", NOW, f"c{n}@example.org", NOW))
    conn.execute(
        "INSERT INTO messages (source, mailbox, uidvalidity, uid, message_id, sender, subject, "
        "received_at, recorded_at, size, thread_id, action, rule, reason, defects) VALUES "
        "('imap', 'INBOX', 1, ?, ?, ?, 'Order arrived broken', ?, ?, 100, ?, 'ack', "
        "'new_thread', '', '')", (n, f"<m{n}@example.org>", f"c{n}@example.org", NOW, NOW,
                                  f"T{n}"))
    conn.execute(
        "INSERT INTO outbox (thread_id, kind, mailbox, message_id, envelope_from, recipient, "
        "body, state, attempts, next_attempt_at, created_at, arrived_at, last_error) VALUES "
        "(?, 'ack', 'INBOX', ?, '', ?, ?, 'pending', 0, ?, ?, ?, '')",
        (f"T{n}", f"<ack{n}@example.com>", f"c{n}@example.org", b"x" * 2000, NOW, NOW, NOW))


def _writer(path: Path) -> sqlite3.Connection:
    """A connection of another process's kind: autocommit off, WAL, no automatic checkpoint
    (so committed pages stay in the -wal file, where a copy of the main file misses them)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _counts(path: Path) -> tuple[int, int, int]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        found = tuple(conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                      for t in ("messages", "threads", "outbox"))
    finally:
        conn.close()
    return found  # type: ignore[return-value]


@pytest.fixture
def store_file(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "mailbridge.sqlite3"
    Store.open(f"sqlite:///{path}").close()
    return path


@pytest.fixture
def config(tmp_path: Path, store_file: Path) -> Path:
    path = tmp_path / "mailbridge.toml"
    path.write_text(MINIMAL + f'\n[store]\nurl = "sqlite:///{store_file}"\n', encoding="utf-8")
    return path


def test_the_copy_holds_what_was_committed_while_a_writer_holds_a_transaction(
        tmp_path: Path, store_file: Path, config: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Committed cases only in the WAL and another connection in the middle of a write:
    the backup neither waits for it nor takes any of it, and holds every committed case
    (which a copy of the main file alone does not); one checked file, mode 0600."""
    writer = _writer(store_file)
    writer.execute("BEGIN IMMEDIATE")
    for n in range(40):
        _case(writer, n)
    writer.execute("COMMIT")
    assert Path(f"{store_file}-wal").stat().st_size > 0, "the committed cases are WAL frames"
    shutil.copyfile(store_file, tmp_path / "file-copy.sqlite3")
    assert _counts(tmp_path / "file-copy.sqlite3") == (0, 0, 0), "a file copy misses them"

    open_tx = _writer(store_file)
    open_tx.execute("BEGIN IMMEDIATE")  # holds SQLite's write lock throughout the backup
    for n in range(40, 50):
        _case(open_tx, n)
    dest = tmp_path / "backups" / "mailbridge.sqlite3"
    dest.parent.mkdir()
    assert main(["backup", "--config", str(config), str(dest)]) == 0
    out = capsys.readouterr().out
    open_tx.execute("COMMIT")

    assert _counts(dest) == (40, 40, 40)
    assert _counts(store_file) == (50, 50, 50)
    assert out.startswith(f"{dest}: ")
    assert "integrity ok; 40 messages, 40 threads, 40 outbox items" in out
    assert "schema version" in out and "KiB" in out
    assert sorted(p.name for p in dest.parent.iterdir()) == ["mailbridge.sqlite3"], \
        "one self-contained file: no -wal, -journal or temporary file beside it"
    conn = sqlite3.connect(dest)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert conn.execute("SELECT body FROM outbox WHERE thread_id = 'T7'").fetchone() == \
        (b"x" * 2000,)
    conn.close()
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600, "it holds customers' mail"
    Store.open(f"sqlite:///{dest}", migrate=False).close()  # a store mailbridge can open
    writer.close()
    open_tx.close()


def test_backups_taken_while_cases_are_committed_are_each_a_consistent_snapshot(
        tmp_path: Path, store_file: Path, config: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A writer commits a case (thread, message, ack) per transaction while backups are
    taken: every copy is whole, passes its check and has equal counts (no torn case),
    each at least as many as were committed before it began."""
    stop = threading.Event()
    committed = [0]

    def write() -> None:
        conn = _writer(store_file)
        n = 1000
        while not stop.is_set():
            conn.execute("BEGIN IMMEDIATE")
            _case(conn, n)
            conn.execute("COMMIT")
            n += 1
            committed[0] += 1
        conn.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        seen = []
        for i in range(8):
            before = committed[0]
            dest = tmp_path / f"copy-{i}.sqlite3"
            assert main(["backup", "--config", str(config), str(dest)]) == 0
            messages, threads, outbox = _counts(dest)
            assert messages == threads == outbox >= before
            seen.append(messages)
    finally:
        stop.set()
        thread.join()
    capsys.readouterr()
    assert seen == sorted(seen) and seen[-1] > seen[0], f"the writer went on: {seen}"


def test_an_existing_dest_is_kept_unless_forced(tmp_path: Path, config: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    dest = tmp_path / "copy.sqlite3"
    dest.write_bytes(b"yesterday's backup")
    assert main(["backup", "--config", str(config), str(dest)]) == 73
    assert capsys.readouterr().err.strip() == \
        f"mailbridge backup: {dest} exists already: give --force to replace it"
    assert dest.read_bytes() == b"yesterday's backup"
    assert main(["backup", "--config", str(config), "--force", str(dest)]) == 0
    assert _counts(dest) == (0, 0, 0)
    assert sorted(p.name for p in tmp_path.iterdir() if "copy" in p.name) == ["copy.sqlite3"]
    capsys.readouterr()

    assert main(["backup", "--config", str(config), str(tmp_path / "nowhere" / "x.db")]) == 73
    err = capsys.readouterr().err
    assert err.startswith("mailbridge: cannot create ") and "Traceback" not in err
    assert main(["backup", "--config", str(config), "--force", str(tmp_path)]) == 73
    assert "is a folder" in capsys.readouterr().err


def test_postgresql_is_backed_up_with_pg_dump(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """On PostgreSQL: exit 64 and the pg_dump command for its database, no password."""
    config = tmp_path / "mailbridge.toml"
    config.write_text(MINIMAL + '\n[store]\nurl = "postgresql+psycopg://mb:s3cret@db.example.'
                      'org:5433/support_desk"\n', encoding="utf-8")
    assert main(["backup", "--config", str(config), "/srv/backups/desk.dump"]) == 64
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert "s3cret" not in err
    assert "postgresql+psycopg://mb:***@db.example.org:5433/support_desk" in err
    assert ("pg_dump --format=custom --file=/srv/backups/desk.dump "
            "postgresql://mb@db.example.org:5433/support_desk") in err
    assert len(err.strip().splitlines()) == 1
