"""SmtpTransport against a real SMTP peer, with and without PIPELINING (RFC 2920).

Every case runs twice: once against a peer that offers PIPELINING (the envelope goes out
in one write) and once against one that does not (smtplib's command-by-command exchange).
Both must deliver the same bytes, classify the same refusals the same way, replace a
connection the server closed without a failure, and report a silence after the final dot as
an unknown outcome.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest

from mailbridge.clock import FakeClock
from mailbridge.config import SmtpSettings
from mailbridge.errors import DeliveryUnknownError, PermanentError, TransientError
from mailbridge.io.smtp_sender import SmtpTransport
from tests.outbox import T0
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


# -- a connection the server closed, and the ambiguous end of DATA -----------------------------


@pytest.fixture(params=[True, False], ids=["pipelining", "one-by-one"])
def idle_peer(request: pytest.FixtureRequest) -> Iterator[SmtpPeer]:
    """A peer that closes connections idle for 0.2 s, as Postfix does after 300 s."""
    with SmtpPeer(pipelining=request.param, idle_timeout=0.2) as peer:
        yield peer


def kept_transport(peer: SmtpPeer, clock: FakeClock,
                   timeout: timedelta = timedelta(seconds=5)) -> SmtpTransport:
    settings = SmtpSettings.model_validate(
        {"host": peer.host, "port": peer.port, "tls": "none", "timeout": timeout})
    return SmtpTransport(settings, local_hostname="test.example", clock=clock)


def reconnects(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [m for m in caplog.messages if "event=reconnect" in m]


@pytest.mark.parametrize("quiet", [timedelta(seconds=1), timedelta(minutes=10)],
                         ids=["shorter-than-the-probe", "long-quiet"])
def test_after_the_server_closed_an_idle_connection_the_next_message_goes_out_at_once(
        idle_peer: SmtpPeer, caplog: pytest.LogCaptureFixture, quiet: timedelta) -> None:
    """A kept connection the server closed for idleness is noticed (by NOOP after a long
    quiet, else at MAIL) and the message goes out on a new one, with no error."""
    caplog.set_level(logging.INFO, logger="mailbridge.io.smtp_sender")
    clock = FakeClock(T0)
    transport = kept_transport(idle_peer, clock)
    try:
        transport.send("", "c0@example.org", ACK)
        idle_peer.wait_for_closed(1)
        clock.advance(quiet)
        transport.send("", "c1@example.org", ACK)
        transport.send("", "c2@example.org", ACK)  # on the new connection, kept again
    finally:
        transport.close()
    assert [m.rcpt_tos for m in idle_peer.wait_for_count(3)] == [
        [f"c{n}@example.org"] for n in range(3)]
    reason = "idle_connection_gone" if quiet > timedelta(seconds=5) else "closed_by_server"
    assert [f"reason={reason}" in m for m in reconnects(caplog)] == [True]


def test_a_421_on_a_kept_connection_is_answered_with_a_new_connection(
        peer: SmtpPeer, caplog: pytest.LogCaptureFixture) -> None:
    """421 at MAIL (Postfix: "Error: timeout exceeded", then it hangs up) costs a reconnect,
    not a retry; on a new connection it is a temporary failure."""
    caplog.set_level(logging.INFO, logger="mailbridge.io.smtp_sender")
    transport = kept_transport(peer, FakeClock(T0))
    try:
        transport.send("", "c0@example.org", ACK)
        peer.fail_with(421, "4.4.2 Error: timeout exceeded", times=1, stage="MAIL")
        transport.send("", "c1@example.org", ACK)
        transport.close()
        peer.fail_with(421, "4.3.2 Service shutting down", times=1, stage="MAIL")
        with pytest.raises(TransientError, match=re.escape("421 4.3.2 Service shutting down")):
            transport.send("", "c2@example.org", ACK)
    finally:
        transport.close()
    assert [m.rcpt_tos for m in peer.wait_for_count(2)] == [["c0@example.org"],
                                                           ["c1@example.org"]]
    assert len(reconnects(caplog)) == 1


def test_a_hang_up_after_the_final_dot_is_an_unknown_outcome(peer: SmtpPeer) -> None:
    """The server took the message and hung up before replying: whether it was accepted is
    unknown, so the error is never one that is retried; the next message goes through."""
    transport = kept_transport(peer, FakeClock(T0))
    try:
        peer.drop_after_data()
        with pytest.raises(DeliveryUnknownError, match="no reply after the end"):
            transport.send("", "c0@example.org", ACK)
        transport.send("", "c1@example.org", ACK)
    finally:
        transport.close()
    assert [m.rcpt_tos for m in peer.wait_for_count(2)] == [["c0@example.org"],
                                                           ["c1@example.org"]]


def test_no_reply_within_the_timeout_after_the_final_dot_is_an_unknown_outcome(
        peer: SmtpPeer) -> None:
    """A server silent after the final dot for longer than [smtp] timeout may still
    deliver: unknown, not a temporary failure."""
    transport = kept_transport(peer, FakeClock(T0), timeout=timedelta(milliseconds=300))
    try:
        peer.stall(3.0)
        with pytest.raises(DeliveryUnknownError, match="timed out"):
            transport.send("", "c0@example.org", ACK)
    finally:
        transport.close()
    assert peer.stalled_count == 1 and len(peer.messages) == 1
