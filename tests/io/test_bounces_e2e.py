"""A bounce of our acknowledgement end to end (Dovecot by LMTP, the SMTP peer, `mailbridge
run`): recorded on the thread and counted, never acknowledged."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon import Daemon, write_config
from tests.io.test_sla_e2e import threads_json
from tests.mails import customer_mail
from tests.servers import Dovecot, SmtpPeer, wait_for

pytestmark = pytest.mark.slow


def dsn(returned: bytes, recipient: str, *, whole: bool) -> bytes:
    """A delivery status notification as Postfix writes one (RFC 3464): the notice, the
    delivery status (Action: failed) and the returned message: whole as message/rfc822, or
    its header alone as text/rfc822-headers."""
    return b"\r\n".join([
        b"From: Mail Delivery System <MAILER-DAEMON@mx.example.org>",
        b"To: support@example.com",
        b"Subject: Undelivered Mail Returned to Sender",
        b"Date: Mon, 23 Nov 2026 09:00:05 +0000",
        b"Message-ID: <20261123090005.4F2A1@mx.example.org>",
        b"Auto-Submitted: auto-replied",
        b"MIME-Version: 1.0",
        b'Content-Type: multipart/report; report-type=delivery-status;',
        b'\tboundary="4F2A1.1700729105/mx.example.org"',
        b"",
        b"--4F2A1.1700729105/mx.example.org",
        b"Content-Description: Notification",
        b"Content-Type: text/plain; charset=us-ascii",
        b"",
        b"This is the mail system at host mx.example.org.",
        b"",
        b"I'm sorry to have to inform you that your message could not",
        b"be delivered to one or more recipients.",
        b"",
        b"<" + recipient.encode() + b">: host mx.example.org said: 550 5.1.1 User unknown",
        b"",
        b"--4F2A1.1700729105/mx.example.org",
        b"Content-Description: Delivery report",
        b"Content-Type: message/delivery-status",
        b"",
        b"Reporting-MTA: dns; mx.example.org",
        b"Arrival-Date: Mon, 23 Nov 2026 09:00:04 +0000",
        b"",
        b"Final-Recipient: rfc822; " + recipient.encode(),
        b"Action: failed",
        b"Status: 5.1.1",
        b"Diagnostic-Code: smtp; 550 5.1.1 <" + recipient.encode() + b">: User unknown",
        b"",
        b"--4F2A1.1700729105/mx.example.org",
        b"Content-Description: Undelivered Message" + (b"" if whole else b" Headers"),
        b"Content-Type: " + (b"message/rfc822" if whole else b"text/rfc822-headers"),
        b"",
        returned.rstrip(b"\r\n"),
        b"",
        b"--4F2A1.1700729105/mx.example.org--",
        b"",
    ])


@pytest.mark.parametrize("whole", [False, True], ids=["rfc822-headers", "rfc822"])
def test_a_bounce_of_our_ack_is_recorded_on_its_thread_and_counted(
        tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer, whole: bool) -> None:
    """Customer mail, its ack, then the ack's DSN delivered to the support mailbox by LMTP:
    an ack_bounced event on the thread, shown by `threads`, the metric at 1, and nothing
    sent to MAILER-DAEMON."""
    config = write_config(tmp_path / "mb", dovecot, smtp_peer,
                          extra_smtp='envelope_sender = "support@example.com"')
    with Daemon(config) as daemon:
        assert daemon.metric("mailbridge_ack_bounces_total", mailbox="INBOX",
                             kind="bounce") == 0
        dovecot.deliver(customer_mail(1, addr="ana@example.org", subject="Charged twice"),
                        sender="ana@example.org")
        [ack] = smtp_peer.wait_for_count(1, timeout=15)
        assert ack.rcpt_tos == ["ana@example.org"]
        assert ack.mail_from == "support@example.com"
        data = ack.data.replace(b"\r\n", b"\n")
        returned = data if whole else data.split(b"\n\n", 1)[0]
        dovecot.deliver(dsn(returned.replace(b"\n", b"\r\n"), "ana@example.org", whole=whole),
                        sender="")

        wait_for(lambda: daemon.metric("mailbridge_ack_bounces_total", mailbox="INBOX",
                                       kind="bounce") == 1, timeout=15, message=daemon.log)
        [thread] = threads_json(config)
        [note] = thread["bounced"]
        ack_id = str(ack.message["Message-ID"])
        assert note.startswith(f"a delivery failure came back about our mail {ack_id}")
        assert "the customer's address may be broken" in note
        text = subprocess.run([sys.executable, "-m", "mailbridge", "threads", "--config",
                               str(config)], capture_output=True, text=True, check=True).stdout
        assert f"(our mail bounced: {note})" in text
        store = daemon.store()
        try:
            assert [m.rule for m in store.messages()] == ["new_thread", "auto_submitted"]
        finally:
            store.close()
        assert daemon.metric("mailbridge_acks_suppressed_total", mailbox="INBOX",
                             reason="auto_submitted") == 1
        assert "ana@example.org" not in daemon.metrics()
    assert len(smtp_peer.messages) == 1, "the bounce got no acknowledgement"
