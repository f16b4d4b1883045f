"""Sent folders found by role on a real Dovecot: "Sent Items" marked \\Sent, a missing one."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlmodel import select

from mailbridge.config import load_config
from mailbridge.daemon.service import Service
from mailbridge.store.tables import Thread
from tests.daemon import run_service, write_config
from tests.io.test_sla_e2e import agent_reply
from tests.mails import customer_mail
from tests.servers import Dovecot, SmtpPeer, until

pytestmark = pytest.mark.slow


class SentItemsDovecot(Dovecot):
    """Dovecot whose Sent folder is "Sent Items", marked \\Sent; none is named "Sent"."""

    def _config(self) -> str:
        text = super()._config()
        assert "  mailbox Sent {" in text
        return text.replace("  mailbox Sent {", '  mailbox "Sent Items" {', 1)


def test_an_agent_reply_in_a_special_use_sent_items_stops_the_clock(
        tmp_path: Path, smtp_peer: SmtpPeer) -> None:
    """With the default "auto", the folder marked \\Sent is watched and its reply counts."""
    with SentItemsDovecot(tmp_path / "dovecot") as server:
        path = write_config(tmp_path / "mb", server, smtp_peer)

        async def scenario(service: Service) -> None:
            assert service.config.imap is not None
            assert service.config.imap.sent_folders == ("Sent Items",)
            original = customer_mail(1, addr="ana@example.org", subject="Charged twice")
            server.append(original)
            await until(lambda: len(smtp_peer.messages) == 1, 15, "no ack")
            server.append(agent_reply(original), folder="Sent Items")
            store = service.store
            assert store is not None
            await until(lambda: len(store.messages()) == 2, 15, "the reply was not recorded")
            reply = store.messages()[-1]
            assert (reply.mailbox, reply.rule) == ("Sent Items", "agent_reply")
            with store.transaction() as tx:
                [thread] = tx.session.exec(select(Thread)).all()
            assert thread.state == "awaiting_customer"

        run_service(Service(load_config(path)), scenario)
    assert len(smtp_peer.messages) == 1, "an agent's reply is never acknowledged"


def test_a_missing_configured_folder_is_reported_once_and_inbox_mail_is_acked(
        tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer,
        caplog: pytest.LogCaptureFixture) -> None:
    """A configured folder the server lacks: one warning naming the server's folders, no
    watcher retrying it, and INBOX mail acknowledged over several watcher cycles."""
    path = write_config(tmp_path / "mb", dovecot, smtp_peer,
                        extra_imap='sent_folders = ["Sent", "Nope"]\nidle_refresh = "1s"')
    caplog.set_level(logging.INFO)

    async def scenario(service: Service) -> None:
        for n in range(1, 4):  # each mail is a watcher cycle; idle_refresh adds more
            dovecot.append(customer_mail(n, addr=f"c{n}@example.org", subject=f"Case {n}"))
            await until(lambda n=n: len(smtp_peer.messages) == n, 15, f"no ack {n}")
        assert sorted(w.mailbox for w in service.watchers) == ["INBOX", "Sent"]

    run_service(Service(load_config(path)), scenario)
    missing = [r.getMessage() for r in caplog.records if "Nope" in r.getMessage()]
    assert len(missing) == 1, missing
    assert "event=sent_folder_missing" in missing[0] and "INBOX" in missing[0]
    assert "Sent" in missing[0]
