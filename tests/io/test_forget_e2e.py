"""`mailbridge forget` beside a running daemon (Dovecot in, aiosmtpd out), on SQLite and
PostgreSQL: her data leaves the store the daemon wrote, her unsent ack is never sent, and the
daemon goes on acknowledging others."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.daemon import REPO, Daemon, write_config
from tests.dump import dump_text
from tests.mails import customer_mail
from tests.servers import Dovecot, SmtpPeer, wait_for

pytestmark = pytest.mark.slow

NAME, ADDRESS = "Jane Q. Customer", "jane.doe@example.org"
SUBJECTS = ("Zebra crossing 4711 broken", "Second question about invoices 9981")


@pytest.fixture(params=["sqlite", "postgresql"])
def config(request: pytest.FixtureRequest, tmp_path: Path, dovecot: Dovecot,
           smtp_peer: SmtpPeer) -> Path:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    return write_config(tmp_path / "mb", dovecot, smtp_peer, store_url=url)


def outbox_states(daemon: Daemon) -> list[tuple[str, str, str]]:
    store = daemon.store()
    try:
        return [(item.recipient, item.state, item.last_error) for item in store.outbox()]
    finally:
        store.close()


def recorded(daemon: Daemon) -> list[tuple[str, str]]:
    store = daemon.store()
    try:
        return [(m.rule, m.reason) for m in store.messages()]
    finally:
        store.close()


def test_forget_while_the_daemon_runs(config: Path, dovecot: Dovecot,
                                      smtp_peer: SmtpPeer) -> None:
    """Her acknowledged thread and her thread whose ack waits for the SMTP server are erased
    by the command while the daemon runs; the waiting ack fails "erased" and is never sent;
    a dump of the store names neither her address, nor her name, nor her subjects."""
    with Daemon(config) as daemon:
        dovecot.append(customer_mail(1, name=NAME, addr=ADDRESS, subject=SUBJECTS[0]))
        smtp_peer.wait_for_count(1, timeout=15)
        smtp_peer.stop()
        # Ten minutes later by its arrival time: past the burst window, a thread of its own.
        dovecot.append(customer_mail(2, name=NAME, addr=ADDRESS.upper(), subject=SUBJECTS[1]),
                       msg_time=datetime.now(UTC) + timedelta(minutes=10))
        dovecot.append(customer_mail(3, name="Bo Berg", addr="bo@example.org"))
        wait_for(lambda: len(outbox_states(daemon)) == 3, timeout=15,
                 message=lambda: f"the two new acks were not queued: {recorded(daemon)}")

        done = subprocess.run(
            [sys.executable, "-m", "mailbridge", "forget", "--config", str(config),
             "Jane.Doe@Example.org"],
            check=False, capture_output=True, text=True, timeout=180, cwd=REPO)
        assert done.returncode == 0, done.stderr
        assert "threads anonymised: 2, resolved by the erasure: 2" in done.stdout, done.stdout
        assert 'outbox items: 2, unsent and now failed ("erased"): 1' in done.stdout

        dump = dump_text(daemon.store_url).lower()
        assert not re.search(rf"(?<![\w.+-]){re.escape(ADDRESS)}", dump)
        for needle in (NAME, *SUBJECTS):
            assert needle.lower() not in dump, needle
        assert "bo@example.org" in dump

        smtp_peer.start()
        [_first, second] = smtp_peer.wait_for_count(2, timeout=30)
        assert second.rcpt_tos == ["bo@example.org"]
        states = outbox_states(daemon)
        assert ("", "failed", "erased") in states
        assert daemon.metric("mailbridge_component_up", component="retention") == 1
    assert len(smtp_peer.messages) == 2, "her waiting ack was never sent"
