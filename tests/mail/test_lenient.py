"""Header blocks the strict parser loses are read as mail readers read them, each mend a
defect; a well-formed block is parsed strictly, unchanged. Samples: tests/mail/odd_headers."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import compat32
from pathlib import Path

from mailbridge.mail.defects import Defects
from mailbridge.mail.lenient import mend_header_block
from mailbridge.mail.parse import parse_message, parse_parts

SAMPLES = Path(__file__).parent / "odd_headers"


def _sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def test_obsolete_syntax_with_space_before_the_colon_is_read() -> None:
    """RFC 2822 A.6.3 (`From  : John Doe`, a junk line, comments in Date and Message-ID)
    gives its From, To, Subject, Date and Message-ID, and says how it was read."""
    message = parse_message(_sample("obsolete-syntax-rfc2822-a63.eml"))
    assert [(a.name, a.addr) for a in message.from_] == [("John Doe", "jdoe@machine.example")]
    assert [a.addr for a in message.to] == ["mary@example.net"]
    assert message.subject == "Saying Hello"
    assert message.date is not None and message.date.isoformat() == "1997-11-21T09:55:06-06:00"
    assert message.message_id == "<1234@local.machine.example>"
    assert message.text.startswith("This is a message just to say hello.")
    assert "obsolete header syntax: white space before the colon of From" in message.defects
    assert "a line in the header block is no header field, skipped: '__'" in message.defects


def test_a_junk_line_inside_the_header_block_is_skipped() -> None:
    """A stray `quite Delivered-To: ...` line between Received fields no longer ends the header
    block (the strict parser loses From, Subject and Date there)."""
    raw = _sample("junk-line-in-header.eml")
    assert message_from_bytes(raw, policy=compat32)["From"] is None  # what the strict read loses
    message = parse_message(raw)
    assert [a.addr for a in message.from_] == ["xxx@xxx.xxx"]
    assert message.subject == "Stop adware/spyware once and for all."
    assert message.message_id == "<4D6AA7EB.6490534@xxx.xxx>"
    assert message.text.startswith("You are infected with:")
    assert message.defects == (
        "a line in the header block is no header field, skipped: "
        "'quite Delivered-To: xxx@xxx.xxx'",)


def test_a_header_block_that_begins_with_white_space_is_read_from_its_first_field() -> None:
    """A blank line and spaces before the first field cost nothing but a defect."""
    message = parse_message(_sample("leading-white-space.eml"))
    assert [a.addr for a in message.from_] == ["jdoe@machine.example"]
    assert message.subject == "Saying Hello"
    assert message.defects == (
        "the header block begins with white space; read from its first field",)


def test_the_imap_path_mends_the_header_block_alike() -> None:
    """BODY[HEADER] with a junk line gives what the whole message gives."""
    raw = _sample("junk-line-in-header.eml")
    header, _, body = raw.partition(b"\r\n\r\n")
    message = parse_parts(header + b"\r\n\r\n", body, size=len(raw))
    whole = parse_message(raw)
    assert (message.from_, message.subject, message.message_id, message.defects) == (
        whole.from_, whole.subject, whole.message_id, whole.defects)


def test_a_well_formed_block_is_left_to_the_strict_parser() -> None:
    """Mail without these faults is passed on as the same bytes, with no defect."""
    raw = b"From: Ana <ana@example.org>\r\nSubject: Hi\r\n\r\nFrom: the body, not a field\r\n"
    defects = Defects()
    assert mend_header_block(raw, defects) is raw
    assert defects.result() == ()


def test_a_body_without_a_blank_line_before_it_stays_the_body() -> None:
    """A non-field line followed by no mail header field is where the body begins, as for the
    strict parser: `Regards: Ana` in it is not read as a header."""
    raw = b"From: Ana <ana@example.org>\nSubject: Hi\nPlease call me back.\nRegards: Ana\n"
    defects = Defects()
    assert mend_header_block(raw, defects) is raw
    message = parse_message(raw)
    assert message.subject == "Hi" and "Regards: Ana" in message.text


def test_a_byte_order_mark_before_the_header_block_is_removed() -> None:
    """An .eml saved by a Windows editor, with U+FEFF first, is read from its first field."""
    raw = b"\xef\xbb\xbf" + _sample("leading-white-space.eml").lstrip()
    message = parse_message(raw)
    assert [a.addr for a in message.from_] == ["jdoe@machine.example"]
    assert message.defects == (
        "a byte order mark (U+FEFF) before the header block, removed",)
