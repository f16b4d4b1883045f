"""A running single-account desk upgraded to messages and cursors that name their account
goes on where it was: nothing it recorded is acknowledged again, nothing new is missed."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from tests.daemon import Daemon, write_config
from tests.mails import customer_mail
from tests.servers import Dovecot, SmtpPeer

pytestmark = pytest.mark.slow


def test_an_upgraded_desk_acknowledges_only_the_mail_that_came_meanwhile(
        tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """The store's messages and cursors name no account, as migration 14 leaves a store
    from before: the restarted daemon adopts them, acknowledges the mail that came while it
    was down and not the mail it had recorded, and from then on they name its account."""
    config = write_config(tmp_path / "mb", dovecot, smtp_peer)
    account = f"support@example.com@127.0.0.1:{dovecot.port}"
    daemon = Daemon(config)
    with daemon:
        dovecot.deliver(customer_mail(1, addr="ana@example.org"), sender="ana@example.org")
        smtp_peer.wait_for_count(1, timeout=30)
    store = daemon.store()
    try:
        with store.transaction() as tx:  # the rows as version 13 had them, migrated
            for table in ("messages", "cursors"):
                tx.session.execute(text(f"UPDATE {table} SET account = ''"))
    finally:
        store.close()

    dovecot.deliver(customer_mail(2, addr="ben@example.org"), sender="ben@example.org")
    with daemon:
        smtp_peer.wait_for_count(2, timeout=30)
    assert sorted(r for ack in smtp_peer.messages for r in ack.rcpt_tos) == [
        "ana@example.org", "ben@example.org"]
    store = daemon.store()
    try:
        assert sorted((m.account, m.uid) for m in store.messages()) == [
            (account, 1), (account, 2)]
        assert store.cursor(account, "INBOX") == (dovecot.uidvalidity(), 2)
        assert store.cursor("", "INBOX") is None
    finally:
        store.close()
    assert "event=adopted" in daemon.log()
