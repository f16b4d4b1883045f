"""Tests of the real-server fixtures themselves: what a test author relies on from Dovecot and
the SMTP peer, checked with plain imapclient and smtplib clients.
"""

from __future__ import annotations

import email.policy
import smtplib
import ssl
from email.message import EmailMessage

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from tests.mails import mta_headers
from tests.servers import Dovecot, SmtpPeer, free_port, port_accepts, wait_for

pytestmark = pytest.mark.slow


def _message(subject: str = "Help please", sender: str = "customer@example.net") -> bytes:
    """Return a small RFC 5322 message with CRLF line endings."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "support@example.com"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{subject.replace(' ', '-')}@example.net>"
    msg.set_content("My widget is broken.\n.leading dot line\n")
    return msg.as_bytes(policy=email.policy.SMTP)


def _send(
    peer: SmtpPeer,
    raw: bytes,
    mail_from: str = "support@example.com",
    rcpt_tos: tuple[str, ...] = ("customer@example.net",),
) -> None:
    """Send ``raw`` to the peer with smtplib using the given envelope."""
    with smtplib.SMTP(peer.host, peer.port, local_hostname="localhost", timeout=10) as client:
        client.sendmail(mail_from, list(rcpt_tos), raw)


# --------------------------------------------------------------------------- helpers


def test_wait_for_returns_the_truthy_value() -> None:
    """wait_for returns the predicate's first truthy value."""
    values = iter([0, None, "ready"])
    assert wait_for(lambda: next(values), timeout=1) == "ready"


def test_wait_for_raises_assertion_with_message_on_timeout() -> None:
    """wait_for raises AssertionError carrying the message when the deadline passes."""
    with pytest.raises(AssertionError, match="never true"):
        wait_for(lambda: False, timeout=0.05, message="never true")


def test_free_port_is_bindable() -> None:
    """free_port returns a loopback port nothing listens on."""
    assert not port_accepts("127.0.0.1", free_port())


# --------------------------------------------------------------------------- Dovecot


def test_appended_message_reads_back_over_plain_port(dovecot: Dovecot) -> None:
    """A message appended to INBOX is fetched back byte for byte after a plain login."""
    raw = _message()
    uid = dovecot.append(raw)
    assert uid is not None
    with IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=10) as client:
        client.login(dovecot.username, dovecot.password)
        client.select_folder("INBOX", readonly=True)
        assert client.search("ALL") == [uid]
        assert client.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"] == raw
    assert dovecot.uids() == [uid]
    assert dovecot.fetch_raw(uid) == raw


def test_implicit_tls_login_verifies_with_the_ca(dovecot: Dovecot) -> None:
    """Over implicit TLS the server certificate verifies against ca_pem_path and login works."""
    context = ssl.create_default_context(cafile=str(dovecot.ca_pem_path))
    with IMAPClient(
        dovecot.host, dovecot.tls_port, ssl=True, ssl_context=context, timeout=10
    ) as client:
        client.login(dovecot.username, dovecot.password)
        names = {name for _flags, _delim, name in client.list_folders()}
    assert {"INBOX", "Sent"} <= names


def test_tls_without_the_ca_fails_verification(dovecot: Dovecot) -> None:
    """A TLS client trusting only system CAs rejects the server certificate."""
    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient(
            dovecot.host,
            dovecot.tls_port,
            ssl=True,
            ssl_context=ssl.create_default_context(),
            timeout=10,
        )


def test_starttls_on_plain_port_then_login(dovecot: Dovecot) -> None:
    """The plain port offers STARTTLS, verified with the CA, before login."""
    with IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=10) as client:
        assert client.has_capability("STARTTLS")
        client.starttls(dovecot.ssl_context())
        client.login(dovecot.username, dovecot.password)


def test_wrong_password_is_rejected(dovecot: Dovecot) -> None:
    """Login with a wrong password fails; the password file holds the right one."""
    assert dovecot.password_file.read_text() == dovecot.password
    with (
        IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=10) as client,
        pytest.raises(LoginError),
    ):
        client.login(dovecot.username, "not-" + dovecot.password)


def test_idle_is_advertised(dovecot: Dovecot) -> None:
    """Dovecot lists IDLE among its capabilities after login."""
    with dovecot.connect() as client:
        assert client.has_capability("IDLE")


def test_sent_folder_exists_and_helpers_clear_it(dovecot: Dovecot) -> None:
    """Sent has the \\Sent special use, accepts appends with flags, and delete_all empties it."""
    uid = dovecot.append(_message("Re: Help"), folder="Sent", flags=[b"\\Seen"])
    assert uid is not None
    assert dovecot.uids("Sent") == [uid]
    assert b"\\Seen" in dovecot.flags(uid, "Sent")
    with dovecot.connect() as client:
        assert client.find_special_folder(b"\\Sent") == "Sent"
    dovecot.delete_all("Sent")
    assert dovecot.uids("Sent") == []


def test_stop_refuses_connections_and_start_keeps_mail(dovecot: Dovecot) -> None:
    """After stop() both ports refuse; after start() the same ports serve the same mail."""
    raw = _message()
    uid = dovecot.append(raw)
    assert uid is not None
    ports = (dovecot.port, dovecot.tls_port)
    dovecot.stop()
    assert not port_accepts(dovecot.host, dovecot.port)
    assert not port_accepts(dovecot.host, dovecot.tls_port)
    with pytest.raises(ConnectionRefusedError):
        dovecot.connect()
    dovecot.start()
    assert (dovecot.port, dovecot.tls_port) == ports
    assert dovecot.uids() == [uid]
    assert dovecot.fetch_raw(uid) == raw


def test_stop_ends_an_open_idle_session(dovecot: Dovecot) -> None:
    """stop() ends IDLE sessions with a BYE, as a real server shutdown does."""
    with dovecot.connect() as client:
        client.select_folder("INBOX")
        client.idle()
        dovecot.stop()
        responses = client.idle_check(timeout=5)
    assert any(item[0] == b"BYE" for item in responses), responses


@pytest.mark.parametrize("arrival", ["append", "deliver"])
def test_idle_session_sees_exists_when_a_message_arrives(dovecot: Dovecot, arrival: str) -> None:
    """An IDLE session on a second connection gets EXISTS when a message is appended or
    delivered by LMTP."""
    seen: list[tuple[object, ...]] = []

    def got_exists() -> bool:
        seen.extend(watcher.idle_check(timeout=0.2))
        return any(item[1:2] == (b"EXISTS",) for item in seen)

    with dovecot.connect() as watcher:
        watcher.select_folder("INBOX")
        watcher.idle()
        getattr(dovecot, arrival)(_message())
        wait_for(got_exists, timeout=5, message=lambda: f"no EXISTS during IDLE: {seen}")
        watcher.idle_done()


def test_lmtp_delivery_puts_dovecot_fields_above_the_mta_fields(dovecot: Dovecot) -> None:
    """Dovecot adds Return-Path, Delivered-To and its Received above what the MTA added."""
    raw = mta_headers(_message(), results="spf=pass smtp.mailfrom=customer@example.net")
    dovecot.deliver(raw, sender="customer@example.net")
    [uid] = dovecot.uids()
    stored = email.message_from_bytes(dovecot.fetch_raw(uid), policy=email.policy.default)
    assert stored.keys()[:5] == ["Return-Path", "Delivered-To", "Received", "Received",
                                 "Authentication-Results"]
    assert (stored["Return-Path"], stored["Delivered-To"]) == \
        ("<customer@example.net>", dovecot.username)
    assert "with LMTP" in stored.get_all("Received")[0]
    assert stored["Subject"] == "Help please"


def test_lmtp_refuses_an_unknown_recipient(dovecot: Dovecot) -> None:
    """RCPT TO an address with no mailbox here is refused, as by a real mail store."""
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        dovecot.deliver(_message(), recipient="nobody@example.com")


# --------------------------------------------------------------------------- SMTP peer


def test_smtp_peer_records_message_and_envelope(smtp_peer: SmtpPeer) -> None:
    """An accepted message is recorded with its envelope, raw bytes and parsed headers."""
    raw = _message()
    _send(smtp_peer, raw, rcpt_tos=("customer@example.net", "cc@example.org"))
    (received,) = smtp_peer.wait_for_count(1)
    assert received.mail_from == "support@example.com"
    assert received.rcpt_tos == ["customer@example.net", "cc@example.org"]
    assert received.data == raw
    assert received.message["Subject"] == "Help please"
    assert ".leading dot line" in received.message.get_content()


def test_smtp_peer_accepts_null_sender(smtp_peer: SmtpPeer) -> None:
    """MAIL FROM:<> is accepted and recorded as an empty sender."""
    _send(smtp_peer, _message(), mail_from="")
    (received,) = smtp_peer.wait_for_count(1)
    assert received.mail_from == ""


def test_temporary_failure_for_two_sends_then_success(smtp_peer: SmtpPeer) -> None:
    """fail_with(451, times=2) refuses two DATA transactions with 451, then mail flows."""
    smtp_peer.fail_with(451, "4.3.0 Try again later", times=2)
    for _ in range(2):
        with pytest.raises(smtplib.SMTPDataError) as refused:
            _send(smtp_peer, _message())
        assert refused.value.smtp_code == 451
    _send(smtp_peer, _message("third"))
    (received,) = smtp_peer.wait_for_count(1)
    assert received.message["Subject"] == "third"
    assert smtp_peer.refused_count == 2


def test_permanent_failure_lasts_until_recover(smtp_peer: SmtpPeer) -> None:
    """fail_with(550) without times refuses every send with 550 until recover()."""
    smtp_peer.fail_with(550, "5.7.1 Rejected")
    for _ in range(2):
        with pytest.raises(smtplib.SMTPResponseException) as refused:
            _send(smtp_peer, _message())
        assert refused.value.smtp_code == 550
    smtp_peer.recover()
    _send(smtp_peer, _message())
    assert len(smtp_peer.wait_for_count(1)) == 1
    assert smtp_peer.refused_count == 2


def test_failure_at_mail_and_rcpt_stages(smtp_peer: SmtpPeer) -> None:
    """Refusals at MAIL and RCPT reach smtplib as sender and recipient refusals."""
    smtp_peer.fail_with(421, "4.7.0 Busy", times=1, stage="MAIL")
    with pytest.raises(smtplib.SMTPSenderRefused) as sender_refused:
        _send(smtp_peer, _message())
    assert sender_refused.value.smtp_code == 421
    smtp_peer.fail_with(550, "5.1.1 No such user", times=1, stage="RCPT")
    with pytest.raises(smtplib.SMTPRecipientsRefused) as rcpt_refused:
        _send(smtp_peer, _message(), rcpt_tos=("a@example.net", "b@example.net"))
    assert {code for code, _text in rcpt_refused.value.recipients.values()} == {550}
    assert smtp_peer.refused_count == 2
    assert smtp_peer.messages == []


def test_stop_refuses_connections_and_start_reuses_port(smtp_peer: SmtpPeer) -> None:
    """After stop() connections are refused; start() listens again on the same port."""
    port = smtp_peer.port
    smtp_peer.stop()
    with pytest.raises(ConnectionRefusedError):
        _send(smtp_peer, _message())
    smtp_peer.start()
    assert smtp_peer.port == port
    _send(smtp_peer, _message())
    assert len(smtp_peer.wait_for_count(1)) == 1


def test_tls_peer_offers_starttls_verified_with_its_ca(smtp_peer_tls: SmtpPeer) -> None:
    """The TLS peer upgrades with STARTTLS under a certificate verified by its CA."""
    context = ssl.create_default_context(cafile=str(smtp_peer_tls.ca_pem_path))
    with smtplib.SMTP(
        smtp_peer_tls.host, smtp_peer_tls.port, local_hostname="localhost", timeout=10
    ) as client:
        client.starttls(context=context)
        client.sendmail("support@example.com", ["customer@example.net"], _message())
    assert len(smtp_peer_tls.wait_for_count(1)) == 1
