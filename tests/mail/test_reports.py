"""The report parts of real bounces are read: the delivery-status actions and the returned
message's header, from a whole message and from the parts the IMAP watcher fetches."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailbridge.core.model import Report
from mailbridge.mail.parse import parse_message
from mailbridge.mail.reports import ReportSections, read_report, report_sections

SAMPLES = Path(__file__).parent / "reports"


@pytest.mark.parametrize(("name", "expected"), [
    ("lhost-postfix-03.eml", Report(actions=("failed",), returned=True, subject="Message",
                                    message_id="<20140701000000.000000000000@e1.example.ne.jp>")),
    ("rfc3464-08.eml", Report(actions=("failed",), returned=True, subject="Nyaaaaaaaan",
                              message_id="<000000000000000000000000000000@mx.example.or.jp>")),
    ("lhost-opensmtpd-06.eml", Report(actions=("delayed",), returned=True, subject="Nyaan",
                                      message_id="<201612140903.uBE938DJ094645@nyaan.example.jp>")),
    ("arf-01.eml", Report(returned=True, subject="Kijitora cat family")),
])
def test_real_reports_give_their_actions_and_returned_header(name: str,
                                                             expected: Report) -> None:
    """Postfix (message/rfc822), a filter (text/rfc822-headers), OpenSMTPD's delay notice and
    a feedback report give what they report and whose mail they return."""
    assert parse_message((SAMPLES / name).read_bytes()).report == expected


def test_mail_without_report_parts_has_no_report() -> None:
    """A person's multipart mail has no report."""
    raw = (b"From: Ana <ana@example.org>\r\nSubject: Photo\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
           b"Content-Type: text/plain\r\n\r\nSee the photo.\r\n--b--\r\n")
    assert parse_message(raw).report is None


def test_the_imap_sections_of_a_dsn_and_their_reading() -> None:
    """From a BODYSTRUCTURE like Dovecot's, the status part and the returned header are
    fetched (bounded), and their bytes read like the whole message's."""
    structure = ([
        (b"text", b"plain", (b"charset", b"us-ascii"), None, None, b"7bit", 200, 5),
        (b"message", b"delivery-status", None, None, None, b"7bit", 120),
        (b"message", b"rfc822", None, None, None, b"7bit", 900, None, None, 20),
    ], b"report", (b"report-type", b"delivery-status", b"boundary", b"b"))
    sections = report_sections(structure)
    assert sections == ReportSections(status="2", status_encoding="7bit", returned="3",
                                      returned_is_message=True)
    assert sections.items == ["BODY.PEEK[2]<0.16384>", "BODY.PEEK[3.HEADER]"]
    report = sections.read({
        b"BODY[2]<0>": b"Reporting-MTA: dns; mx.example.org\r\n\r\n"
                       b"Final-Recipient: rfc822; ana@example.org\r\nAction: failed\r\n",
        b"BODY[3.HEADER]": b"Message-ID: <ack-1@example.com>\r\nSubject: Re: Hi [#K7M2QD]\r\n"
                           b"In-Reply-To: <q-1@example.org>\r\n\r\n"})
    assert report == Report(actions=("failed",), returned=True, message_id="<ack-1@example.com>",
                            references=("<q-1@example.org>",), subject="Re: Hi [#K7M2QD]")
    assert report_sections((b"text", b"plain", None, None, None, b"7bit", 10)).items == []
    assert read_report(None, None) is None
