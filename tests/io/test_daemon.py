"""The daemon end to end: Dovecot in, aiosmtpd out, as a separate `mailbridge run` process."""

from __future__ import annotations

import re
from collections import Counter
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest

from tests.daemon import Daemon, maildir_deliver, write_config
from tests.mails import customer_mail, reply_to
from tests.servers import Dovecot, SmtpPeer, wait_for

pytestmark = pytest.mark.slow


def recorded(daemon: Daemon) -> int:
    store = daemon.store()
    try:
        return len(store.messages())
    finally:
        store.close()


def acked_recipients(peer: SmtpPeer) -> Counter[str]:
    return Counter(rcpt for m in peer.messages for rcpt in m.rcpt_tos)


@pytest.fixture
def config(tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> Path:
    return write_config(tmp_path / "mb", dovecot, smtp_peer)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store_config(request: pytest.FixtureRequest, tmp_path: Path, dovecot: Dovecot,
                     smtp_peer: SmtpPeer) -> Path:
    """The daemon's config with its store on a SQLite file, then on a PostgreSQL database."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    return write_config(tmp_path / "mb", dovecot, smtp_peer, store_url=url)


def test_new_mail_gets_one_named_threaded_ack_and_a_follow_up_none(
        any_store_config: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """A customer's mail gets exactly one ack, threaded, named and dated; a follow-up none."""
    with Daemon(any_store_config) as daemon:
        original = customer_mail(1, name="Ana Souza", addr="ana@example.org",
                                 subject="Invoice 2291 charged twice")
        dovecot.append(original)
        [ack] = smtp_peer.wait_for_count(1, timeout=10)
        parent = message_from_bytes(original, policy=default)

        assert ack.mail_from == ""  # null envelope sender (RFC 3834 section 4)
        assert ack.rcpt_tos == ["ana@example.org"]
        msg = ack.message
        assert msg["To"].addresses[0].addr_spec == "ana@example.org"
        assert msg["From"].addresses[0].addr_spec == "support@example.com"
        assert msg["From"].addresses[0].display_name in (
            "Dana Whitfield, Example Support", "Sam Okafor, Example Support")
        assert msg["Auto-Submitted"] == "auto-replied"
        assert msg["X-Auto-Response-Suppress"] == "All"
        assert msg["In-Reply-To"] == parent["Message-ID"]
        assert parent["Message-ID"] in msg["References"]
        assert msg["Message-ID"].endswith("@example.com>")
        match = re.fullmatch(r"Re: Invoice 2291 charged twice \[#([A-Z2-9]{6})\]",
                             msg["Subject"])
        assert match, msg["Subject"]
        text = msg.get_body(preferencelist=("plain",)).get_content()
        agent = msg["From"].addresses[0].display_name.split(",")[0]
        assert "Ana" in text and agent in text and match.group(1) in text
        assert re.search(r"\b\d{2}:\d{2}\b", text), "the promised time is shown"

        dovecot.append(reply_to(original))
        wait_for(lambda: recorded(daemon) == 2, timeout=10, message="follow-up not recorded")
        store = daemon.store()
        follow_up = store.messages()[-1]
        outbox = store.outbox()
        store.close()
        assert (follow_up.action, follow_up.rule) == ("ignore", "follow_up")
        assert follow_up.thread_id == match.group(1)
        assert len(outbox) == 1
        assert len(smtp_peer.messages) == 1
        assert daemon.metric("mailbridge_acks_sent_total", mailbox="INBOX") == 1
        assert daemon.metric("mailbridge_messages_received_total", mailbox="INBOX",
                             kind="follow_up") == 1
        metrics = daemon.metrics()
        log = daemon.log()
    assert "@" not in metrics and "Invoice" not in metrics, "no address or subject in metrics"
    assert "ana@example.org" not in log and "Invoice" not in log, "no PII in info logs"


def test_restart_mid_stream_acknowledges_every_message_once(
        config: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """Stopping the daemon mid-stream and starting it again acks every message exactly once."""
    daemon = Daemon(config).start()
    for n in range(1, 31):
        dovecot.append(customer_mail(n))
        if n == 10:
            smtp_peer.wait_for_count(3, timeout=10)
            assert daemon.stop() == 0
    daemon.start()
    smtp_peer.wait_for_count(30, timeout=30)
    killed_at = len(smtp_peer.messages)
    for n in range(31, 41):
        dovecot.append(customer_mail(n))
    daemon.kill()
    daemon.start()
    wait_for(lambda: recorded(daemon) == 40, timeout=30, message="not all recorded")
    store = daemon.store()
    wait_for(lambda: all(i.state in ("sent", "failed") for i in store.outbox()), timeout=30,
             message="outbox not drained")
    outbox = store.outbox()
    store.close()
    daemon.stop()
    counts = acked_recipients(smtp_peer)
    assert killed_at >= 30
    assert max(counts.values()) == 1, "nobody got two acks"
    sent = {i.recipient for i in outbox if i.state == "sent"}
    assert sent == set(counts), "the outbox says sent exactly for what arrived"
    interrupted = [i for i in outbox if i.state == "failed"]
    assert all("interrupted" in i.last_error for i in interrupted)
    assert len(outbox) == 40, "every new thread has its one ack queued"


def test_smtp_outage_delays_acks_but_loses_none(
        config: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """A refusing, then absent, then healthy SMTP peer gets every ack exactly once."""
    smtp_peer.fail_with(451, "4.3.0 try again later", times=3)
    with Daemon(config) as daemon:
        for n in range(1, 4):
            dovecot.append(customer_mail(n))
        wait_for(lambda: smtp_peer.refused_count >= 3, timeout=15,
                 message="the peer never refused")
        smtp_peer.stop()
        for n in range(4, 6):
            dovecot.append(customer_mail(n))
        wait_for(lambda: recorded(daemon) == 5, timeout=10, message="mail not recorded")
        smtp_peer.start()
        smtp_peer.wait_for_count(5, timeout=30)
        assert max(acked_recipients(smtp_peer).values()) == 1
        assert daemon.metric("mailbridge_ack_failures_total", mailbox="INBOX",
                             reason="smtp_temporary") >= 3


def test_permanent_smtp_failure_is_recorded_with_its_reason(
        config: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """A 5xx reply is recorded on the outbox item and not retried."""
    smtp_peer.fail_with(550, "5.1.1 mailbox unavailable", times=1)
    with Daemon(config) as daemon:
        dovecot.append(customer_mail(1))
        wait_for(lambda: smtp_peer.refused_count == 1, timeout=10, message="no refusal")
        store = daemon.store()
        wait_for(lambda: store.outbox()[0].state == "failed", timeout=10, message="not failed")
        [item] = store.outbox()
        store.close()
        assert "550" in item.last_error and "mailbox unavailable" in item.last_error
        dovecot.append(customer_mail(2))
        smtp_peer.wait_for_count(1, timeout=10)
        assert smtp_peer.refused_count == 1, "the failed ack was not retried"
        assert daemon.metric("mailbridge_ack_failures_total", mailbox="INBOX",
                             reason="smtp_permanent") == 1


def test_imap_outage_reconnects_and_picks_up_mail_delivered_meanwhile(
        config: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """After Dovecot stops and starts, mail delivered while it was down is acknowledged."""
    with Daemon(config) as daemon:
        dovecot.append(customer_mail(1))
        smtp_peer.wait_for_count(1, timeout=10)
        dovecot.stop()
        wait_for(lambda: daemon.metric("mailbridge_imap_connected", mailbox="INBOX") == 0,
                 timeout=15, message="daemon did not notice the outage")
        # Delivery while the IMAP server is down, as an MDA writes into the Maildir.
        maildir_deliver(dovecot, customer_mail(2), "1700000000.M1P1.test")
        dovecot.start()
        smtp_peer.wait_for_count(2, timeout=30)
        assert daemon.metric("mailbridge_imap_reconnects_total", mailbox="INBOX") >= 1
        assert daemon.metric("mailbridge_imap_connected", mailbox="INBOX") == 1
        assert sorted(acked_recipients(smtp_peer)) == ["customer1@example.org",
                                                       "customer2@example.org"]


BROKEN = (
    b"From: =?x-unknown?B?////?= <broken@example.org>\r\n"
    b"Subject: \xff\xfe caf\xe9 =?utf-8?B?invalid base64?=\r\n"
    b"Message-ID: <broken-1@example.org>\r\n"
    b"Content-Type: multipart/mixed; boundary=\"nope\"\r\n"
    b"\r\n"
    b"--wrong-boundary\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    b"!!!not base64\x00\x00\r\n"
)


def test_broken_mail_is_recorded_and_the_daemon_keeps_going(
        config: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """Broken MIME and undecodable headers are stored with a reason; later mail still flows."""
    with Daemon(config) as daemon:
        dovecot.append(BROKEN)
        dovecot.append(b"Subject: no sender at all\r\n\r\nhello\r\n")
        dovecot.append(customer_mail(3))
        smtp_peer.wait_for_count(1, timeout=10)
        wait_for(lambda: recorded(daemon) == 3, timeout=10, message=daemon.log)
        store = daemon.store()
        rows = store.messages()
        store.close()
        assert all(row.reason for row in rows)
        assert rows[0].defects, "what was wrong with the broken message is recorded"
        assert rows[1].action == "ignore" and rows[1].rule == "no_sender"
        assert rows[2].action == "acknowledge"
        assert daemon.healthy()


def test_imap_over_tls_is_verified(
        tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """Implicit TLS works with the server's CA, and an unverifiable certificate is refused."""
    trusted = write_config(tmp_path / "trusted", dovecot, smtp_peer, imap_tls="implicit",
                           extra_imap=f'ca_file = "{dovecot.ca_pem_path}"')
    with Daemon(trusted):
        dovecot.append(customer_mail(1))
        smtp_peer.wait_for_count(1, timeout=10)
    untrusted = write_config(tmp_path / "untrusted", dovecot, smtp_peer, imap_tls="implicit")
    with Daemon(untrusted) as daemon:
        wait_for(lambda: "CERTIFICATE_VERIFY_FAILED" in daemon.log(), timeout=10,
                 message=daemon.log)
        assert daemon.healthy(), "a TLS failure is retried, not a crash"
        assert daemon.metric("mailbridge_imap_connected", mailbox="INBOX") == 0


def test_uidvalidity_change_does_not_acknowledge_old_mail_again(
        config: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """When the server renumbers the mailbox, mail already answered gets no second ack."""
    with Daemon(config) as daemon:
        for n in (1, 2):
            dovecot.append(customer_mail(n))
        smtp_peer.wait_for_count(2, timeout=10)
        dovecot.stop()
        # Dovecot keeps UIDVALIDITY in dovecot-uidlist and its index; without both, the
        # mailbox gets a new UIDVALIDITY and every message a new UID.
        for state in [dovecot.mail_dir / "dovecot-uidlist",
                      *dovecot.mail_dir.glob("dovecot.index*")]:
            state.unlink()
        dovecot.start()
        wait_for(lambda: "uidvalidity_changed" in daemon.log(), timeout=30, message=daemon.log)
        dovecot.append(customer_mail(3))
        smtp_peer.wait_for_count(3, timeout=15)
        wait_for(lambda: recorded(daemon) == 5, timeout=10, message=daemon.log)
        store = daemon.store()
        rules = [m.rule for m in store.messages()]
        store.close()
    assert rules.count("duplicate") == 2, rules
    assert sorted(acked_recipients(smtp_peer).values()) == [1, 1, 1]


def test_systemd_readiness_watchdog_and_stopping_are_notified(
        config: Path, tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """Under systemd the daemon says READY=1, pings the watchdog and says STOPPING=1."""
    import socket

    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(10)
        daemon = Daemon(config, env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})
        daemon.start()
        seen = [sock.recv(256).decode() for _ in range(3)]
        assert seen[0] == "READY=1"
        assert seen[1:] == ["WATCHDOG=1", "WATCHDOG=1"]
        assert daemon.stop() == 0
        while (note := sock.recv(256).decode()) == "WATCHDOG=1":
            pass
        assert note == "STOPPING=1"


def test_a_server_without_idle_is_polled(tmp_path: Path, smtp_peer: SmtpPeer) -> None:
    """When the server does not offer IDLE, new mail is found by polling."""
    server = Dovecot(tmp_path / "no-idle",
                     extra_config="imap_capability = IMAP4rev1 LITERAL+ UIDPLUS ENABLE")
    with server:
        config = write_config(tmp_path / "mb", server, smtp_peer, extra_imap='poll_interval = "1s"')
        with Daemon(config) as daemon:
            wait_for(lambda: "idle=False" in daemon.log(), timeout=10, message=daemon.log)
            server.append(customer_mail(1))
            smtp_peer.wait_for_count(1, timeout=10)


DSN = b"""Return-Path: <>
From: Mail Delivery System <MAILER-DAEMON@mx.example.org>
To: support@example.com
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn-1@mx.example.org>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain

This is the mail system at host mx.example.org. Your message could not be delivered.
--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org
Final-Recipient: rfc822; gone@example.org
Action: failed
Status: 5.1.1
--b1--
"""


def test_robots_get_nothing_and_a_reply_to_the_ack_joins_its_thread(
        config: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """An out-of-office reply to our ack, a bounce and list mail get no mail; a reply joins."""
    with Daemon(config) as daemon:
        dovecot.append(customer_mail(1, addr="ana@example.org", subject="Broken login"))
        [ack] = smtp_peer.wait_for_count(1, timeout=10)
        ack_id, subject = str(ack.message["Message-ID"]), str(ack.message["Subject"])
        dovecot.append(customer_mail(2, addr="ana@example.org",
                                     subject=f"Automatic reply: {subject}",
                                     In_Reply_To=ack_id, X_Auto_Response_Suppress="All"))
        dovecot.append(DSN)
        dovecot.append(customer_mail(3, addr="users@lists.example.org", subject="[users] digest",
                                     List_Id="<users.lists.example.org>",
                                     Precedence="list"))
        dovecot.append(customer_mail(4, addr="ana@example.org", subject=subject,
                                     In_Reply_To=ack_id, References=ack_id,
                                     body="Thanks, here is the screenshot."))
        wait_for(lambda: recorded(daemon) == 5, timeout=15, message=daemon.log)
        store = daemon.store()
        rows = store.messages()
        store.close()
    assert [(r.action, r.rule) for r in rows] == [
        ("acknowledge", "new_thread"), ("ignore", "auto_reply"), ("ignore", "auto_submitted"),
        ("ignore", "list"), ("ignore", "follow_up")]
    assert rows[4].thread_id == rows[0].thread_id
    assert len(smtp_peer.messages) == 1
