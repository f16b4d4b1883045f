"""Staff mail in the INBOX end to end (Dovecot by LMTP, the SMTP peer, `mailbridge run`): a
forged #close changes nothing and tells the agent once; our server's dkim=pass counts."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pytest

from tests.daemon import Daemon, write_config
from tests.io.test_sla_e2e import threads_json
from tests.mails import OUR_MX, TRUSTED_RULES, VOUCHED, customer_mail, mta_headers
from tests.servers import Dovecot, SmtpPeer, wait_for

pytestmark = pytest.mark.slow


FOREIGN_PASS = "mx.evil.example; dkim=pass header.d=example.com"
"""A verdict the forger wrote into the mail: an authserv-id we do not believe."""


def dana_reply(original: bytes, body: str, *, headers: tuple[str, ...] = ()) -> bytes:
    """A reply to `original` that says it is from Dana, as its sender wrote it."""
    parent = message_from_bytes(original, policy=default)
    msg = EmailMessage()
    for value in headers:
        msg["Authentication-Results"] = value
    msg["From"] = "Dana Whitfield <dana@example.com>"
    msg["To"] = "support@example.com"
    msg["Subject"] = "Re: " + str(parent["Subject"])
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg["In-Reply-To"] = str(parent["Message-ID"])
    msg["References"] = str(parent["Message-ID"])
    msg.set_content(body)
    return msg.as_bytes()


def test_forged_agent_mail_is_recorded_and_authenticated_mail_counts(
        tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """Two forged #close mails delivered by LMTP (our server's spf=fail, then no verdict of
    ours): thread open, first response unmet, one notice to the agent; then a reply our server
    vouched for stops the clock."""
    config = write_config(tmp_path / "mb", dovecot, smtp_peer,
                          extra_rules=TRUSTED_RULES.removeprefix("[rules]\n"))
    with Daemon(config) as daemon:
        original = customer_mail(1, addr="ana@example.org", subject="Charged twice")
        dovecot.append(original)
        smtp_peer.wait_for_count(1, timeout=10)
        [waiting] = threads_json(config)
        spf_fail = ("spf=fail (domain of attacker@evil.example does not designate "
                    "203.0.113.9 as permitted sender) smtp.mailfrom=attacker@evil.example; "
                    "dkim=none (message not signed)")
        for body, ours in (("#close\nDone.", spf_fail), ("#close\nDone, really.", None)):
            forged = dana_reply(original, body, headers=(FOREIGN_PASS,))
            dovecot.deliver(mta_headers(forged, results=ours), sender="attacker@evil.example")

        def recorded(rule: str, count: int) -> bool:
            store = daemon.store()
            try:
                return sum(m.rule == rule for m in store.messages()) >= count
            finally:
                store.close()

        wait_for(lambda: recorded("unverified_agent", 2), timeout=15, message=daemon.log)
        smtp_peer.wait_for_count(2, timeout=10)
        [notice] = [m for m in smtp_peer.messages if "dana@example.com" in m.rcpt_tos]
        assert str(notice.message["Subject"]).startswith("Not counted: ")
        [still] = threads_json(config)
        assert (still["thread"], still["state"]) == (waiting["thread"], "awaiting_agent")
        assert still["next_deadline_kind"] == "first_response"
        assert still["unverified_agent_mails"] == 2
        store = daemon.store()
        try:
            assert len(store.outbox()) == 2, "one ack, one notice: the second mail is quiet"
            with store.transaction() as tx:
                thread = tx.thread(str(waiting["thread"]))
                assert thread is not None and thread.first_response_met is None
        finally:
            store.close()
        vouched = mta_headers(dana_reply(original, "I have refunded the second charge."),
                              results=VOUCHED.removeprefix(f"{OUR_MX}; "))
        dovecot.deliver(vouched, sender="dana@example.com")
        wait_for(lambda: threads_json(config)[0]["state"] == "awaiting_customer", timeout=15,
                 message=daemon.log)
        assert recorded("agent_reply", 1)
    assert [m for m in smtp_peer.messages if "ana@example.org" in m.rcpt_tos] == \
        smtp_peer.messages[:1], "only the acknowledgement reached the customer"
