"""SmtpTransport against a real SMTP peer, with and without PIPELINING (RFC 2920).

Every case runs twice: once against a peer that offers PIPELINING (the envelope goes out
in one write) and once against one that does not (smtplib's command-by-command exchange).
Both must deliver the same bytes and classify the same refusals the same way.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from mailbridge.config import SmtpSettings
from mailbridge.errors import PermanentError, TransientError
from mailbridge.io.smtp_sender import SmtpTransport
from tests.servers import SmtpPeer

ACK = (b"From: Dana <support@example.com>\r\nTo: c@example.org\r\nSubject: Re: Help\r\n\r\n"
       b"Thank you.\r\n.\r\n..two dots\r\n.leading dot\r\nlast line without an end")


@pytest.fixture(params=[True, False], ids=["pipelining", "one-by-one"])
def peer(request: pytest.FixtureRequest) -> Iterator[SmtpPeer]:
    with SmtpPeer(pipelining=request.param) as peer:
        yield peer


@pytest.fixture
def transport(peer: SmtpPeer) -> Iterator[SmtpTransport]:
    transport = SmtpTransport(SmtpSettings(host=peer.host, port=peer.port, tls="none"),
                              local_hostname="test.example")
    yield transport
    transport.close()


def test_the_message_arrives_byte_for_byte_with_its_envelope(
        peer: SmtpPeer, transport: SmtpTransport) -> None:
    for n in range(3):  # one connection, kept open across sends
        transport.send("", f"c{n}@example.org", ACK)
    received = peer.wait_for_count(3)
    assert [(m.mail_from, m.rcpt_tos) for m in received] == [
        ("", [f"c{n}@example.org"]) for n in range(3)]
    # Lines starting with a dot survive dot-stuffing; the unterminated last line is ended.
    assert {m.data for m in received} == {ACK + b"\r\n"}
    assert {m.pipelined for m in received} == {peer.pipelining}


@pytest.mark.parametrize("stage", ["MAIL", "RCPT", "DATA"])
@pytest.mark.parametrize(("code", "text", "error"), [
    (451, "4.3.0 Try again later", TransientError),
    (550, "5.1.1 No such user", PermanentError),
], ids=["4xx-temporary", "5xx-permanent"])
def test_a_refusal_is_classified_by_its_code_and_the_next_send_goes_through(
        peer: SmtpPeer, transport: SmtpTransport, stage: str, code: int, text: str,
        error: type[Exception]) -> None:
    peer.fail_with(code, text, times=1, stage=stage)
    with pytest.raises(error, match=re.escape(f"{code} {text}")):
        transport.send("", "c@example.org", ACK)
    transport.send("", "c@example.org", ACK)
    assert [m.rcpt_tos for m in peer.wait_for_count(1)] == [["c@example.org"]]
    assert peer.refused_count == 1


def test_a_non_ascii_local_part_goes_out_with_smtputf8(
        peer: SmtpPeer, transport: SmtpTransport) -> None:
    transport.send("", "jörg@example.org", ACK)
    transport.send("", "c@example.org", ACK)
    assert [m.rcpt_tos for m in peer.wait_for_count(2)] == [["jörg@example.org"],
                                                           ["c@example.org"]]


def test_an_idn_domain_goes_out_as_punycode(peer: SmtpPeer, transport: SmtpTransport) -> None:
    transport.send("", "c@bücher.example", ACK)
    assert [m.rcpt_tos for m in peer.wait_for_count(1)] == [["c@xn--bcher-kva.example"]]
