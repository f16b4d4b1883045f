"""The store under a real daemon (Dovecot in, aiosmtpd out): `run` makes the default state
folder, and `mailbridge backup` copies the store while the daemon writes to it."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mailbridge.store.db import Store
from mailbridge.store.tables import Message
from tests.daemon import REPO, Daemon, write_config
from tests.mails import customer_mail
from tests.servers import Dovecot, SmtpPeer, wait_for

pytestmark = pytest.mark.slow


def test_run_makes_the_default_state_folder_and_its_store(
        tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """No [store] url and no [daemon] state_dir, $STATE_DIRECTORY not there yet: `run`
    makes it (mode 0700), creates the store in it and acknowledges mail."""
    config = write_config(tmp_path / "mb", dovecot, smtp_peer)
    daemon = Daemon(config)
    # The config as an operator writes it: the store where the state folder is.
    config.write_text("\n".join(line for line in config.read_text().splitlines()
                                if not line.startswith(("url = ", "state_dir = "))))
    state = tmp_path / "var" / "lib" / "mailbridge"
    daemon.env = {"STATE_DIRECTORY": str(state)}
    with daemon:
        dovecot.append(customer_mail(1))
        smtp_peer.wait_for_count(1, timeout=10)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert stat.S_IMODE(state.parent.stat().st_mode) == 0o700
    store = Store.open(f"sqlite:///{state / 'mailbridge.sqlite3'}", migrate=False)
    try:
        assert len(store.messages()) == 1
    finally:
        store.close()


def _messages(daemon: Daemon) -> list[Message]:
    store = daemon.store()
    try:
        return store.messages()
    finally:
        store.close()


def _backup(config: Path, dest: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "mailbridge", "backup", "--config",
                           str(config), str(dest)], capture_output=True, text=True,
                          timeout=60, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _snapshot(path: Path) -> tuple[list[str], set[str], set[str]]:
    """(message ids in order, threads, outbox items' threads) of a copy, after checking it."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        messages = [r[0] for r in conn.execute("SELECT message_id FROM messages ORDER BY id")]
        threads = {r[0] for r in conn.execute("SELECT id FROM threads")}
        outbox = {r[0] for r in conn.execute("SELECT thread_id FROM outbox")}
        recorded = {r[0] for r in conn.execute("SELECT DISTINCT thread_id FROM messages "
                                               "WHERE thread_id IS NOT NULL")}
    finally:
        conn.close()
    assert recorded == threads, "each thread came with its message, in one transaction"
    assert outbox <= threads, "each ack came with its thread"
    return messages, threads, outbox


def test_backup_while_the_daemon_writes_holds_whole_transactions(
        tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """Mail streams in and acks go out while backups are taken: each copy is a store
    mailbridge opens, passes its check, and holds whole transactions only, a prefix of
    what the daemon recorded; the last, taken after the stream, holds all of it."""
    config = write_config(tmp_path / "mb", dovecot, smtp_peer)
    total = 60
    with Daemon(config) as daemon:
        def deliver() -> None:
            for n in range(1, total + 1):
                dovecot.append(customer_mail(n))
                time.sleep(0.05)  # a stream that lasts while the backups are taken

        sender = threading.Thread(target=deliver)
        sender.start()
        copies = []
        try:
            wait_for(lambda: len(smtp_peer.messages) >= 1, timeout=15, message="no ack")
            for i in range(6):
                dest = tmp_path / f"copy-{i}.sqlite3"
                out = _backup(config, dest)
                assert out.startswith(f"{dest}: ") and "integrity ok" in out
                copies.append(dest)
        finally:
            sender.join()
        smtp_peer.wait_for_count(total, timeout=60)
        wait_for(lambda: len(_messages(daemon)) == total, timeout=30,
                 message="not all recorded")
        last = tmp_path / "last.sqlite3"
        out = _backup(config, last)
        assert f"{total} messages, {total} threads, {total} outbox items" in out, out
        final = [m.message_id for m in _messages(daemon)]
    sizes = []
    for copy in [*copies, last]:
        messages, _, _ = _snapshot(copy)
        assert messages == final[:len(messages)], "what was committed, in order"
        sizes.append(len(messages))
        Store.open(f"sqlite:///{copy}", migrate=False).close()
    assert sizes == sorted(sizes) and sizes[-1] == total
    assert len(set(sizes[:-1])) > 1, f"the backups were taken while mail came in: {sizes}"
