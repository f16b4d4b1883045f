"""What the customer was told, in the Sent folder: copies appended over IMAP against Dovecot."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest
from sqlmodel import select

from mailbridge.config import ImapSettings
from mailbridge.config.loader import load_config
from mailbridge.io.sent_folder import CopyError, SentFolder
from mailbridge.store.tables import Message, Thread
from tests.daemon import Daemon, write_config
from tests.mails import customer_mail
from tests.servers import Dovecot, SmtpPeer, wait_for

pytestmark = pytest.mark.slow


def _crlf(raw: bytes) -> bytes:
    return re.sub(rb"\r?\n", b"\r\n", raw)


def _sent_message(daemon: Daemon, message_id: str) -> list[Message]:
    store = daemon.store()
    try:
        return [m for m in store.messages() if m.mailbox == "Sent"
                and m.message_id == message_id]
    finally:
        store.close()


def _thread(daemon: Daemon) -> Thread:
    store = daemon.store()
    try:
        with store.transaction() as tx:
            [thread] = tx.session.exec(select(Thread)).all()
            return thread
    finally:
        store.close()


def _failure_warnings(daemon: Daemon) -> list[str]:
    return [line for line in daemon.log().splitlines()
            if "sent_copy" in line and "missing_folder" in line and "WARNING" in line.upper()]


def test_an_ack_is_copied_to_sent_exactly_and_is_no_agent_reply(
        tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """The ack's exact bytes land in Sent, \\Seen and threaded; the Sent watcher does not take
    the copy for an agent's reply: the thread still awaits the agent."""
    config = write_config(tmp_path / "mb", dovecot, smtp_peer, copy_sent=True)
    with Daemon(config) as daemon:
        original = customer_mail(1, addr="ana@example.org")
        dovecot.append(original)
        [ack] = smtp_peer.wait_for_count(1, timeout=10)
        wait_for(lambda: len(dovecot.uids("Sent")) == 1, timeout=15,
                 message=lambda: f"no copy in Sent; log:\n{daemon.log()}")
        [uid] = dovecot.uids("Sent")
        copy = dovecot.fetch_raw(uid, "Sent")
        assert copy == _crlf(ack.data), "the copy is the message as sent"
        assert b"\\Seen" in dovecot.flags(uid, "Sent")
        parsed = message_from_bytes(copy, policy=default)
        assert parsed["In-Reply-To"] == message_from_bytes(original, policy=default)["Message-ID"]

        wait_for(lambda: _sent_message(daemon, parsed["Message-ID"]), timeout=15,
                 message="the Sent watcher did not see the copy")
        [seen] = _sent_message(daemon, parsed["Message-ID"])
        assert seen.rule == "duplicate" and seen.thread_id is None
        thread = _thread(daemon)
        assert thread.state == "awaiting_agent"
        assert thread.first_response_at is None and thread.first_response_met is None
        assert daemon.metric("mailbridge_sent_copies_total", outcome="appended") == 1
        assert daemon.metric("mailbridge_sent_copies_total", outcome="missing_folder") == 0


def test_a_missing_sent_folder_delays_no_ack_and_its_backlog_follows_in_order(
        tmp_path: Path, smtp_peer: SmtpPeer) -> None:
    """Without a Sent folder acks go out at once, the failure is counted and logged once;
    once the folder exists the copies are appended in the order the acks went out."""
    dovecot = Dovecot(tmp_path / "dovecot", sent_folder=False)
    with dovecot:
        config = write_config(tmp_path / "mb", dovecot, smtp_peer, copy_sent=True,
                              extra_imap="sent_folders = []")
        with Daemon(config) as daemon:
            dovecot.append(customer_mail(1))
            smtp_peer.wait_for_count(1, timeout=10)
            wait_for(lambda: daemon.metric("mailbridge_sent_copies_total",
                                           outcome="missing_folder") >= 1, timeout=15,
                     message=lambda: f"no failure counted; log:\n{daemon.log()}")
            dovecot.append(customer_mail(2))
            acks = smtp_peer.wait_for_count(2, timeout=10)
            wait_for(lambda: daemon.metric("mailbridge_sent_copies_total",
                                           outcome="missing_folder") >= 2, timeout=15,
                     message="the copies were not tried again")
            assert len(_failure_warnings(daemon)) == 1, daemon.log()
            assert "customer1@example.org" not in daemon.log()

            with dovecot.connect() as client:
                client.create_folder("Sent")
            wait_for(lambda: len(dovecot.uids("Sent")) == 2, timeout=30,
                     message=lambda: f"backlog not appended; log:\n{daemon.log()}")
            copies = [dovecot.fetch_raw(uid, "Sent") for uid in dovecot.uids("Sent")]
            assert copies == [_crlf(ack.data) for ack in acks]
            assert daemon.metric("mailbridge_sent_copies_total", outcome="appended") == 2
            assert len(_failure_warnings(daemon)) == 1


def test_copy_sent_off_appends_nothing(tmp_path: Path, dovecot: Dovecot,
                                       smtp_peer: SmtpPeer) -> None:
    """With `copy_sent = false` the ack goes out and the Sent folder stays empty."""
    config = write_config(tmp_path / "mb", dovecot, smtp_peer, copy_sent=False)
    with Daemon(config) as daemon:
        dovecot.append(customer_mail(1))
        smtp_peer.wait_for_count(1, timeout=10)
        store = daemon.store()
        wait_for(lambda: [i.state for i in store.outbox()] == ["sent"], timeout=10,
                 message="ack not recorded as sent")
        store.close()
    assert dovecot.uids("Sent") == []
    assert "sent_copy" not in daemon.log()


def test_the_folder_marked_sent_wins_over_the_configured_name(
        tmp_path: Path, dovecot: Dovecot) -> None:
    """The folder the server marks \\Sent (RFC 6154) is used, not the configured name."""
    folder = SentFolder(_imap_settings(tmp_path, dovecot), fallback="Elsewhere")
    try:
        assert folder.append(b"Subject: one\r\n\r\nHello\r\n", when=WHEN) == "Sent"
    finally:
        folder.close()
    assert len(dovecot.uids("Sent")) == 1


def test_without_a_marked_folder_the_configured_one_is_used_once_it_exists(
        tmp_path: Path) -> None:
    """With no \\Sent folder the configured name is used; while it is missing the append
    fails as "missing_folder", and it is found again on the next try."""
    with Dovecot(tmp_path / "dovecot", sent_folder=False) as dovecot:
        folder = SentFolder(_imap_settings(tmp_path, dovecot), fallback="Outgoing")
        try:
            with pytest.raises(CopyError) as caught:
                folder.append(b"Subject: one\r\n\r\nHello\r\n", when=WHEN)
            assert caught.value.reason == "missing_folder"
            with dovecot.connect() as client:
                client.create_folder("Outgoing")
            assert folder.append(b"Subject: one\r\n\r\nHello\r\n", when=WHEN) == "Outgoing"
        finally:
            folder.close()
        assert len(dovecot.uids("Outgoing")) == 1


WHEN = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def _imap_settings(tmp_path: Path, dovecot: Dovecot) -> ImapSettings:
    imap = load_config(write_config(tmp_path / "mb", dovecot, SmtpPeer())).imap
    assert imap is not None
    return imap
