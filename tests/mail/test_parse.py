"""Reading received mail: real-world shapes, hostile bytes, and the IMAP path."""

from __future__ import annotations

import base64
import dataclasses
import os
import time
from datetime import UTC, datetime, timedelta, timezone
from email.headerregistry import HeaderRegistry
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imapclient.response_parser import parse_fetch_response

from mailbridge.core.model import Address, InboundMessage
from mailbridge.mail.parse import (
    MAX_HEADERS,
    TextSection,
    first_text_section,
    html_to_text,
    parse_message,
    parse_parts,
)


def crlf(text: str) -> bytes:
    """A message written with "\\n" in the test, as wire bytes with CRLF."""
    return text.replace("\n", "\r\n").encode("utf-8")


THUNDERBIRD = crlf("""\
Return-Path: <ana@example.com>
Message-ID: <4f1c2a7e-9b3d-4c8e-a1f0-2d5e6b7c8d9e@example.com>
Date: Mon, 30 Nov 2026 10:15:42 +0100
MIME-Version: 1.0
User-Agent: Mozilla Thunderbird
Content-Language: de-DE
To: Acme Support <support@acme.example>
From: =?UTF-8?Q?Ana_M=C3=BCller?= <ana@example.com>
Subject: =?UTF-8?Q?Drucker_f=C3=A4ngt_Feuer?=
Content-Type: text/plain; charset=UTF-8; format=flowed
Content-Transfer-Encoding: 8bit

Hallo,

unser Drucker fängt seit heute früh Feuer. Können Sie helfen?

Grüße
Ana
""")

OUTLOOK = crlf("""\
From: "Whitfield, Dana" <dana.whitfield@contoso.example>
To: "support@acme.example" <support@acme.example>
CC: Bob Lee <bob@contoso.example>, carol@contoso.example
Subject: RE: Invoice 2026-113 is wrong
Thread-Topic: Invoice 2026-113 is wrong
Thread-Index: AQHZ8k2mQ7bX1y0aK0qv3d7T5n8cEg==
Date: Tue, 1 Dec 2026 08:02:11 +0000
Message-ID: <AM0PR04MB6417D3A5B4E8C4A0B4F7E1B2C9A42@AM0PR04MB6417.eurprd04.prod.outlook.com>
References: <first@acme.example>
 <AM0PR04MB64170000000000000000000000000@AM0PR04MB6417.eurprd04.prod.outlook.com>
In-Reply-To: <AM0PR04MB64170000000000000000000000000@AM0PR04MB6417.eurprd04.prod.outlook.com>
Accept-Language: en-US
Content-Language: en-US
X-MS-Has-Attach:
X-MS-TNEF-Correlator:
Content-Type: multipart/alternative;
\tboundary="_000_AM0PR04MB6417D3A5_"
MIME-Version: 1.0

--_000_AM0PR04MB6417D3A5_
Content-Type: text/plain; charset="windows-1252"
Content-Transfer-Encoding: quoted-printable

Hi,

the invoice says =93100 EUR=94 but we agreed on 80 =80.

Dana

--_000_AM0PR04MB6417D3A5_
Content-Type: text/html; charset="windows-1252"
Content-Transfer-Encoding: quoted-printable

<html><body><p>Hi,</p><p>the invoice says =93100 EUR=94</p></body></html>

--_000_AM0PR04MB6417D3A5_--
""")

GMAIL_PLAIN = "Hi there,\n\nmy order #4411 never arrived. Can you check?\n\nThanks, Lee\n"
GMAIL = crlf(f"""\
MIME-Version: 1.0
Date: Wed, 2 Dec 2026 17:45:03 -0800
Message-ID: <CAKx3=q+R8bKq0vHc3nYw@mail.gmail.com>
Subject: Where is my order?
From: Lee Park <lee.park@gmail.example>
To: support@acme.example
Content-Type: multipart/mixed; boundary="000000000000aaa"

--000000000000aaa
Content-Type: multipart/alternative; boundary="000000000000bbb"

--000000000000bbb
Content-Type: text/html; charset="UTF-8"
Content-Transfer-Encoding: quoted-printable

<div dir=3D"ltr">Hi there,<br><br>my order #4411 never arrived.</div>

--000000000000bbb
Content-Type: text/plain; charset="UTF-8"
Content-Transfer-Encoding: base64

{base64.encodebytes(GMAIL_PLAIN.encode()).decode()}
--000000000000bbb--

--000000000000aaa
Content-Type: image/png; name="receipt.png"
Content-Disposition: attachment; filename="receipt.png"
Content-Transfer-Encoding: base64

iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==
--000000000000aaa--
""")


def simple(headers: str, body: str = "Hello\n") -> bytes:
    return crlf(headers.rstrip("\n") + "\n\n" + body)


BASIC = "From: Ana <ana@example.com>\nDate: Mon, 30 Nov 2026 10:00:00 +0000\nMessage-ID: <m1@x>\n"


def with_attachment(size: int, *, text_first: bool) -> bytes:
    text = "--b\nContent-Type: text/plain; charset=utf-8\n\nThe report is attached.\n"
    blob = base64.encodebytes(os.urandom(size)).decode()
    attachment = (
        "--b\nContent-Type: application/pdf; name=r.pdf\n"
        "Content-Disposition: attachment; filename=r.pdf\n"
        f"Content-Transfer-Encoding: base64\n\n{blob}"
    )
    parts = [text, attachment] if text_first else [attachment, text]
    return crlf(
        BASIC + "Content-Type: multipart/mixed; boundary=b\n\n" + "".join(parts) + "--b--\n"
    )


# --- real-world messages ------------------------------------------------------------


def test_thunderbird_plain_text_is_read_completely() -> None:
    """A Thunderbird 8-bit UTF-8 message gives its sender, subject, date and text."""
    msg = parse_message(THUNDERBIRD)
    assert msg.from_ == (Address(name="Ana Müller", addr="ana@example.com"),)
    assert msg.subject == "Drucker fängt Feuer"
    assert msg.message_id == "<4f1c2a7e-9b3d-4c8e-a1f0-2d5e6b7c8d9e@example.com>"
    assert msg.date == datetime(2026, 11, 30, 9, 15, 42, tzinfo=UTC)
    assert msg.return_path == "ana@example.com"
    assert msg.to == (Address(name="Acme Support", addr="support@acme.example"),)
    assert "unser Drucker fängt seit heute früh Feuer" in msg.text
    assert msg.content_type == "text/plain"
    assert msg.size == len(THUNDERBIRD)
    assert msg.defects == ()


def test_outlook_reply_keeps_threading_and_windows_1252_text() -> None:
    """Outlook's Thread-Index mail gives its ids, Cc list and cp1252 text with € and quotes."""
    msg = parse_message(OUTLOOK)
    assert msg.from_ == (Address(name="Whitfield, Dana", addr="dana.whitfield@contoso.example"),)
    assert [a.addr for a in msg.cc] == ["bob@contoso.example", "carol@contoso.example"]
    assert msg.in_reply_to == (
        "<AM0PR04MB64170000000000000000000000000@AM0PR04MB6417.eurprd04.prod.outlook.com>",
    )
    assert msg.references[0] == "<first@acme.example>"
    assert len(msg.references) == 2
    assert msg.header("thread-index") == "AQHZ8k2mQ7bX1y0aK0qv3d7T5n8cEg=="
    assert msg.header("x-ms-has-attach") == ""
    assert "the invoice says “100 EUR” but we agreed on 80 €." in msg.text
    assert msg.content_type == "multipart/alternative"
    assert msg.defects == ()


def test_gmail_prefers_the_plain_part_over_html_and_skips_the_attachment() -> None:
    """In multipart/mixed > alternative, the text/plain part wins even after the HTML one."""
    msg = parse_message(GMAIL)
    assert msg.text == GMAIL_PLAIN.strip()
    assert msg.date == datetime(2026, 12, 3, 1, 45, 3, tzinfo=UTC)
    assert msg.message_id == "<CAKx3=q+R8bKq0vHc3nYw@mail.gmail.com>"
    assert msg.defects == ()


@pytest.mark.parametrize("text_first", [True, False])
def test_text_is_found_beside_a_2_mb_attachment(text_first: bool) -> None:
    """The text part is found whether it comes before or after a 2 MB base64 attachment."""
    raw = with_attachment(2 * 1024 * 1024, text_first=text_first)
    msg = parse_message(raw)
    assert msg.text == "The report is attached."
    assert msg.size == len(raw)
    assert msg.defects == ()


def test_a_20_mb_attachment_is_parsed_quickly() -> None:
    """A 20 MB message is read in bounded time and its text is found."""
    raw = with_attachment(15 * 1024 * 1024, text_first=True)
    started = time.perf_counter()
    msg = parse_message(raw)
    assert time.perf_counter() - started < 5
    assert msg.text == "The report is attached."
    assert msg.size == len(raw) > 20_000_000


def test_html_only_message_becomes_plain_text() -> None:
    """HTML is turned into readable text without tags, scripts or styles."""
    raw = simple(
        BASIC + "Content-Type: text/html; charset=utf-8",
        "<html><head><style>p {color: red}</style></head><body>"
        "<p>Hello&nbsp;&amp; welcome</p><script>alert(1)</script><ul><li>one</li><li>two</li></ul>"
        "</body></html>",
    )
    msg = parse_message(raw)
    assert msg.text == "Hello & welcome\n\n- one\n- two"


def test_mbox_from_line_is_accepted() -> None:
    """An mbox entry starting with a "From " line parses like the bare message."""
    msg = parse_message(b"From ana@example.com Mon Nov 30 10:00:00 2026\r\n" + THUNDERBIRD)
    assert msg.from_[0].addr == "ana@example.com"
    assert msg.subject == "Drucker fängt Feuer"


# --- hostile and broken mail --------------------------------------------------------


def test_broken_base64_gives_what_can_be_read() -> None:
    """Invalid base64 yields the readable text and a defect instead of an error."""
    body = base64.b64encode(b"Please call me back").decode()
    raw = simple(
        BASIC + "Content-Type: text/plain\nContent-Transfer-Encoding: base64",
        body[:-3] + "!!*\n",
    )
    msg = parse_message(raw)
    assert msg.text.startswith("Please call me")
    assert any("base64" in d for d in msg.defects)


def test_unknown_charset_is_reported_and_decoded() -> None:
    """An unknown charset falls back to windows-1252 and says so."""
    raw = crlf(BASIC + "Content-Type: text/plain; charset=x-unknown\n\n") + b"caf\xe9\r\n"
    msg = parse_message(raw)
    assert msg.text == "café"
    assert "charset 'x-unknown' unknown, decoded as windows-1252" in msg.defects


def test_invalid_bytes_for_the_declared_charset_are_replaced() -> None:
    """Bytes that are not valid UTF-8 in a UTF-8 part become U+FFFD, with a defect."""
    raw = crlf(BASIC + "Content-Type: text/plain; charset=utf-8\n\n") + b"ok \xff\xfe ok\r\n"
    msg = parse_message(raw)
    assert msg.text == "ok \ufffd\ufffd ok"
    assert "text is not valid utf-8, undecodable bytes replaced" in msg.defects


def test_nul_bytes_are_removed_from_text_and_headers() -> None:
    """NUL bytes never reach the text or a header value."""
    raw = b"From: a\x00na@example.com\r\nSubject: hel\x00lo\r\n\r\nbo\x00dy\r\n"
    msg = parse_message(raw)
    assert msg.subject == "hello"
    assert msg.text == "body"
    assert "text contains NUL bytes, removed" in msg.defects
    assert all("\x00" not in value for _, value in msg.headers)


def test_8bit_headers_are_read_as_utf8_or_windows_1252() -> None:
    """Raw 8-bit headers decode as UTF-8 when valid, else windows-1252 with a defect."""
    raw = (
        b"From: Jos\xc3\xa9 <jose@example.com>\r\n"
        b"Subject: Caf\xe9 cr\xe8me\r\n"
        b"Date: Mon, 30 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m@x>\r\n\r\nHi\r\n"
    )
    msg = parse_message(raw)
    assert msg.from_ == (Address(name="José", addr="jose@example.com"),)
    assert msg.subject == "Café crème"
    assert msg.defects == (
        "Subject header has 8-bit bytes that are not UTF-8, read as windows-1252",
    )


def test_missing_from_and_date_are_defects() -> None:
    """Without From and Date the message still parses, and both are reported."""
    msg = parse_message(b"Subject: hi\r\nMessage-ID: <m@x>\r\n\r\nbody\r\n")
    assert msg.from_ == ()
    assert msg.author is None
    assert msg.date is None
    assert "From header missing" in msg.defects
    assert "Date header missing" in msg.defects


def test_unparseable_date_names_the_value() -> None:
    """An unreadable Date gives None and a defect that quotes it."""
    msg = parse_message(simple("From: a@example.com\nDate: yesterday\nMessage-ID: <m@x>"))
    assert msg.date is None
    assert msg.defects == ("Date header unparseable: 'yesterday'",)


def test_date_without_zone_is_assumed_utc() -> None:
    """A "-0000" date is taken as UTC, with a defect."""
    msg = parse_message(simple("From: a@example.com\nDate: Mon, 30 Nov 2026 10:00:00 -0000"))
    assert msg.date == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    assert "Date header has no time zone, assumed UTC" in msg.defects


def test_date_keeps_the_instant_and_the_senders_offset() -> None:
    """Offsets are honoured; the result is the same instant, in UTC."""
    msg = parse_message(simple("From: a@example.com\nDate: Tue, 1 Dec 2026 01:30:00 +0530"))
    expected = datetime(2026, 12, 1, 1, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    assert msg.date == expected
    assert msg.date is not None and msg.date.utcoffset() == timedelta(hours=5, minutes=30)


def test_two_from_addresses_are_kept_and_reported() -> None:
    """A From with two mailboxes keeps both, in order, and notes it."""
    msg = parse_message(simple("From: Ana <ana@example.com>, Bo <bo@example.com>"))
    assert [a.addr for a in msg.from_] == ["ana@example.com", "bo@example.com"]
    assert msg.author == Address(name="Ana", addr="ana@example.com")
    assert "From header has 2 addresses" in msg.defects


def test_repeated_from_header_uses_the_first() -> None:
    """Two From header lines: the first is used and the repetition reported."""
    msg = parse_message(simple("From: ana@example.com\nFrom: evil@example.com"))
    assert [a.addr for a in msg.from_] == ["ana@example.com"]
    assert "From header appears 2 times, the first was used" in msg.defects


def test_smtputf8_address_is_kept_in_unicode() -> None:
    """An internationalised address (RFC 6532) comes through intact."""
    raw = "From: José Pérez <josé@exämple.com>\nTo: 支持 <支持@例子.测试>\n\nHola\n".replace(
        "\n", "\r\n"
    )
    msg = parse_message(raw.encode("utf-8"))
    assert msg.from_ == (Address(name="José Pérez", addr="josé@exämple.com"),)
    assert msg.to == (Address(name="支持", addr="支持@例子.测试"),)
    assert msg.from_[0].domain == "exämple.com"


def test_garbage_address_header_is_empty_with_a_defect() -> None:
    """An address header without a usable address gives () and a defect."""
    msg = parse_message(simple("From: ana@example.com\nTo: not an address\nCc: @@@"))
    assert msg.to == ()
    assert msg.cc == ()
    assert "To header has no usable address: 'not an address'" in msg.defects


def test_group_syntax_without_members_is_not_a_defect() -> None:
    """`undisclosed-recipients:;` is valid and simply empty."""
    msg = parse_message(simple(BASIC + "To: undisclosed-recipients:;"))
    assert msg.to == ()
    assert msg.defects == ()


def test_message_id_is_normalised() -> None:
    """A bare id gets angle brackets; junk around a bracketed id is dropped."""
    assert parse_message(simple("Message-ID: abc@x")).message_id == "<abc@x>"
    assert parse_message(simple("Message-ID:  (comment) <abc@x> tail")).message_id == "<abc@x>"
    missing = parse_message(simple("From: a@example.com"))
    assert missing.message_id is None
    assert "Message-ID header missing" in missing.defects
    junk = parse_message(simple("Message-ID: what ever"))
    assert junk.message_id is None
    assert "Message-ID header unusable: 'what ever'" in junk.defects


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Return-Path: <>\n", ""),
        ("Return-Path: <bounce+x@lists.example>\n", "bounce+x@lists.example"),
        ("Return-Path: <@relay.example:ana@example.com>\n", "ana@example.com"),
        (
            "Return-Path: <first@example.com>\nReturn-Path: <second@example.com>\n",
            "first@example.com",
        ),
        ("", None),
    ],
)
def test_return_path(header: str, expected: str | None) -> None:
    """Return-Path gives the addr-spec, "" for the null path, None when absent."""
    assert parse_message(simple(BASIC + header)).return_path == expected


def test_references_keep_the_last_50_ids() -> None:
    """A long References header keeps its newest 50 ids, in order."""
    ids = [f"<id{i}@example.com>" for i in range(80)]
    msg = parse_message(simple(BASIC + "References: " + "\n ".join(ids)))
    assert msg.references == tuple(ids[-50:])


def test_in_reply_to_extracts_ids_from_noise() -> None:
    """In-Reply-To keeps only the <id> tokens, whatever surrounds them."""
    msg = parse_message(simple(BASIC + 'In-Reply-To: "Ana" <p1@example.com> (sent)'))
    assert msg.in_reply_to == ("<p1@example.com>",)


def test_subject_is_decoded_unfolded_and_cleaned() -> None:
    """Encoded words decode, folding and control characters disappear."""
    msg = parse_message(
        simple(
            BASIC
            + "Subject: =?utf-8?b?w4RyZ2VyIG1pdA==?=\n =?iso-8859-1?q?M=FCll?=\n\tand\x07 more"
        )
    )
    assert msg.subject == "Ärger mitMüll and more"


def test_huge_header_count_is_capped_but_fields_are_still_found() -> None:
    """Thousands of headers keep only the first 500, yet a late From is still read."""
    raw = crlf(
        "".join(f"X-Spam-{i}: {i}\n" for i in range(3000)) + "From: late@example.com\n\nhi\n"
    )
    msg = parse_message(raw)
    assert len(msg.headers) == MAX_HEADERS
    assert msg.headers[0] == ("x-spam-0", "0")
    assert msg.from_ == (Address(name="", addr="late@example.com"),)
    assert "3001 headers, only the first 500 kept" in msg.defects


def test_headers_keep_every_value_in_order() -> None:
    """`headers` lists each header once per occurrence, names lower-cased, values decoded."""
    msg = parse_message(
        simple(BASIC + "Received: one\nReceived: two\nX-Name: =?utf-8?q?J=C3=B6rg?=")
    )
    assert msg.header_all("received") == ("one", "two")
    assert msg.header("x-name") == "Jörg"


def test_text_is_cut_to_max_text() -> None:
    """The text is never longer than max_text characters."""
    msg = parse_message(simple(BASIC, "ä" * 10_000), max_text=100)
    assert msg.text == "ä" * 100


def test_huge_content_type_parameters_take_bounded_time() -> None:
    """A 1 MB Content-Type (quadratic in the email package) is cut and parsed quickly."""
    raw = crlf(BASIC + "Content-Type: text/plain; a=" + ";" * 1_000_000 + "\n\nstill here\n")
    started = time.perf_counter()
    msg = parse_message(raw)
    assert time.perf_counter() - started < 2
    assert msg.text == "still here"
    assert "a header field longer than 2 KiB was cut" in msg.defects


def test_deeply_nested_multiparts_do_not_raise() -> None:
    """Thousands of nested multiparts give a result with a defect, not a RecursionError."""
    nested = "".join(
        f"Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n" for i in range(3000)
    )
    msg = parse_message(crlf(BASIC + nested + "Content-Type: text/plain\n\ndeep\n"))
    assert msg.from_[0].addr == "ana@example.com"
    assert msg.defects


def test_non_bytes_input_does_not_raise() -> None:
    """Even a wrong argument type gives an (empty) message with a defect."""
    msg = parse_message("not bytes")  # type: ignore[arg-type]
    assert msg.defects == ("message could not be read (TypeError)",)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_any_bytes_parse_without_raising(raw: bytes) -> None:
    """Arbitrary bytes always give an InboundMessage with sentence defects."""
    msg = parse_message(raw, max_text=500)
    assert isinstance(msg, InboundMessage)
    assert len(msg.text) <= 500
    assert all(isinstance(d, str) and d for d in msg.defects)
    assert "\r" not in msg.subject and "\n" not in msg.subject and "\x00" not in msg.subject


REAL = [THUNDERBIRD, OUTLOOK, GMAIL]


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(REAL),
    st.lists(st.tuples(st.integers(0, 10_000), st.binary(min_size=0, max_size=8)), max_size=6),
)
def test_damaged_real_messages_parse_without_raising(
    raw: bytes, edits: list[tuple[int, bytes]]
) -> None:
    """Real messages with random bytes spliced in or cut out still parse."""
    data = bytearray(raw)
    for position, chunk in edits:
        at = position % (len(data) + 1)
        data[at : at + len(chunk)] = chunk if chunk else b""
    msg = parse_message(bytes(data))
    assert isinstance(msg, InboundMessage)
    assert all(isinstance(a.addr, str) for a in msg.from_)


# --- html_to_text -------------------------------------------------------------------


def _cpu_seconds(markup: str) -> float:
    """The least CPU time of three conversions of `markup` (this process's time only, so
    other work on the machine does not count)."""
    spent = []
    for _ in range(3):
        started = time.process_time()
        html_to_text(markup)
        spent.append(time.process_time() - started)
    return min(spent)


def test_html_to_text_handles_unclosed_markup_in_linear_time() -> None:
    """Pathological unclosed tags and comments do not slow the converter down: four times
    the markup costs about four times the work (a quadratic parser would take sixteen)."""
    def markup(n: int) -> str:
        return "<a<b<c" * n + "<!--" + "x" * n

    assert html_to_text(markup(40_000)).startswith("<a<b<c")
    small, large = _cpu_seconds(markup(10_000)), _cpu_seconds(markup(40_000))
    assert large < 8 * max(small, 0.001), (small, large)


# --- the IMAP path ------------------------------------------------------------------


def bodystructure(text: bytes) -> object:
    """BODYSTRUCTURE as imapclient 4.x hands it over (a BodyData)."""
    parsed = parse_fetch_response([b"1 (UID 7 BODYSTRUCTURE " + text + b")"])
    return parsed[7][b"BODYSTRUCTURE"]


RFC3501_SINGLE = b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 3028 92)'
RFC3501_MIXED = (
    b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)'
    b'("TEXT" "PLAIN" ("CHARSET" "US-ASCII" "NAME" "cc.diff") '
    b'"<960723163407.20117h@cac.washington.edu>" "Compiler diff" "BASE64" 4554 73) "MIXED")'
)
GMAIL_STRUCTURE = (
    b'((("TEXT" "HTML" ("CHARSET" "UTF-8") NIL NIL "QUOTED-PRINTABLE" 80 2 NIL NIL NIL NIL)'
    b'("TEXT" "PLAIN" ("CHARSET" "UTF-8") NIL NIL "BASE64" 100 2 NIL NIL NIL NIL)'
    b' "ALTERNATIVE" ("BOUNDARY" "000000000000bbb") NIL NIL NIL)'
    b'("IMAGE" "PNG" ("NAME" "receipt.png") NIL NIL "BASE64" 96 NIL'
    b' ("ATTACHMENT" ("FILENAME" "receipt.png")) NIL NIL)'
    b' "MIXED" ("BOUNDARY" "000000000000aaa") NIL NIL NIL)'
)


def test_first_text_section_of_a_single_part_message_is_1() -> None:
    """RFC 3501's single-part example: the body is section 1."""
    assert first_text_section(bodystructure(RFC3501_SINGLE)) == TextSection(
        section="1", encoding="7bit", charset="US-ASCII", subtype="plain", size=3028
    )


def test_first_text_section_of_rfc3501_multipart_is_the_first_part() -> None:
    """RFC 3501's multipart/mixed example picks part 1, not the attached diff."""
    section = first_text_section(bodystructure(RFC3501_MIXED))
    assert section is not None
    assert (section.section, section.size) == ("1", 1152)


def test_first_text_section_prefers_plain_in_nested_alternative() -> None:
    """Gmail's mixed > alternative(html, plain): the plain part 1.2 wins."""
    assert first_text_section(bodystructure(GMAIL_STRUCTURE)) == TextSection(
        section="1.2", encoding="base64", charset="UTF-8", subtype="plain", size=100
    )


def test_first_text_section_skips_text_attachments_and_falls_back_to_html() -> None:
    """A text/plain attachment is skipped; an inline HTML part is the fallback."""
    structure = (
        b'(("TEXT" "PLAIN" ("CHARSET" "UTF-8") NIL NIL "7BIT" 10 1 NIL ("ATTACHMENT" ("FILENAME"'
        b' "log.txt")) NIL NIL)("TEXT" "HTML" ("CHARSET" "UTF-8") NIL NIL "7BIT" 20 1 NIL'
        b' ("INLINE" NIL) NIL NIL) "MIXED" ("BOUNDARY" "x") NIL NIL NIL)'
    )
    section = first_text_section(bodystructure(structure))
    assert section is not None
    assert (section.section, section.subtype) == ("2", "html")


def test_first_text_section_does_not_enter_attached_messages() -> None:
    """Text inside an attached message/rfc822 is not the customer's text."""
    structure = (
        b'(("IMAGE" "PNG" NIL NIL NIL "BASE64" 10)("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 300'
        b' (NIL "fwd" NIL NIL NIL NIL NIL NIL NIL NIL)'
        b' ("TEXT" "PLAIN" ("CHARSET" "UTF-8") NIL NIL "7BIT" 20 1) 12) "MIXED")'
    )
    assert first_text_section(bodystructure(structure)) is None


@pytest.mark.parametrize(
    "odd",
    [None, b"", (), [], ((),), (b"TEXT",), 42, [[]], ([None],), (b"TEXT", b"PLAIN", 7), "str"],
)
def test_first_text_section_returns_none_for_odd_structures(odd: object) -> None:
    """Nonsense structures give None, never an exception."""
    assert first_text_section(odd) is None


def test_first_text_section_survives_very_deep_nesting() -> None:
    """A structure nested thousands deep gives None quickly instead of recursing."""
    node: object = (b"TEXT", b"PLAIN", None, None, None, b"7BIT", 1)
    for _ in range(5000):
        node = ([node], b"MIXED")
    assert first_text_section(node) is None


atoms = st.one_of(
    st.none(), st.integers(), st.binary(max_size=10), st.sampled_from([b"TEXT", b"PLAIN", b"HTML"])
)
structures = st.recursive(
    atoms,
    lambda inner: st.lists(inner, max_size=8).map(tuple) | st.lists(inner, max_size=4),
    max_leaves=40,
)


@given(structures)
def test_first_text_section_never_raises(structure: object) -> None:
    """Arbitrary nested tuples, lists and atoms never raise."""
    result = first_text_section(structure)
    assert result is None or isinstance(result, TextSection)


# --- parse_parts matches parse_message ----------------------------------------------


def split_for_imap(raw: bytes, section: str) -> tuple[bytes, bytes]:
    """What the watcher fetches: BODY.PEEK[HEADER] and the raw BODY.PEEK[section]."""
    end = raw.find(b"\r\n\r\n")
    header = raw[: end + 4]
    part: Message = BytesParser(policy=compat32).parsebytes(raw)
    for number in section.split("."):
        if part.is_multipart():
            payload = part.get_payload()
            assert isinstance(payload, list)
            child = payload[int(number) - 1]
            assert isinstance(child, Message)
            part = child
    if str(part.get("content-transfer-encoding", "")).lower() in ("base64", "quoted-printable"):
        body = part.get_payload()  # ASCII in these samples, so exactly as received
        assert isinstance(body, str)
        return header, body.encode("ascii")
    raw_body = part.get_payload(decode=True)  # without a transfer encoding: the raw bytes
    assert isinstance(raw_body, bytes)
    return header, raw_body


GMAIL_HTML_ONLY = crlf(
    BASIC + "Subject: html\nContent-Type: text/html; charset=utf-8\n"
    "Content-Transfer-Encoding: quoted-printable\n\n<p>Hello =C3=A9</p>\n"
)

IMAP_CASES = [
    (THUNDERBIRD, TextSection("1", "8bit", "UTF-8", "plain", 0)),
    (OUTLOOK, TextSection("1", "quoted-printable", "windows-1252", "plain", 0)),
    (GMAIL, TextSection("1.2", "base64", "UTF-8", "plain", 0)),
    (GMAIL_HTML_ONLY, TextSection("1", "quoted-printable", "utf-8", "html", 0)),
]


@pytest.mark.parametrize(("raw", "section"), IMAP_CASES)
def test_parse_parts_matches_parse_message(raw: bytes, section: TextSection) -> None:
    """Header plus first text part gives the same message as the full bytes, but for the
    parts below the top level, which the watcher reads from BODYSTRUCTURE
    (tests/mail/test_structure.py)."""
    header, text = split_for_imap(raw, section.section)
    from_parts = parse_parts(
        header,
        text,
        transfer_encoding=section.encoding,
        charset=section.charset,
        subtype=section.subtype,
        size=len(raw),
    )
    whole = parse_message(raw)
    assert from_parts.text
    assert dataclasses.replace(from_parts, defects=()) == dataclasses.replace(
        whole, defects=(), parts=(), calendar_method="")


def test_parse_parts_falls_back_to_the_header_of_a_single_part_message() -> None:
    """Without BODYSTRUCTURE details, a single-part message's own header decides."""
    header, text = split_for_imap(GMAIL_HTML_ONLY, "1")
    assert parse_parts(header, text).text == "Hello é"


def test_parse_parts_without_text_still_reads_headers() -> None:
    """When no text part was fetched, the headers are still all there."""
    header, _ = split_for_imap(OUTLOOK, "1")
    msg = parse_parts(header, None, size=1234)
    assert msg.text == ""
    assert msg.size == 1234
    assert msg.subject == "RE: Invoice 2026-113 is wrong"


def test_parse_parts_with_the_imapclient_section_end_to_end() -> None:
    """first_text_section on Gmail's BODYSTRUCTURE points at the part parse_parts needs."""
    section = first_text_section(bodystructure(GMAIL_STRUCTURE))
    assert section is not None
    header, text = split_for_imap(GMAIL, section.section)
    msg = parse_parts(
        header, text, transfer_encoding=section.encoding, charset=section.charset,
        subtype=section.subtype,
    )  # fmt: skip
    assert msg.text == GMAIL_PLAIN.strip()


def test_parse_parts_never_raises_on_garbage() -> None:
    """Garbage header and text bytes give a message with defects."""
    msg = parse_parts(
        b"\xff\xfe\x00:::\r\n", b"=?=\xff", transfer_encoding="base64", charset="\x00"
    )
    assert isinstance(msg, InboundMessage)


def test_parse_parts_accepts_a_partial_fetch() -> None:
    """A text part cut by `BODY.PEEK[1]<0.N>` decodes without false damage reports."""
    text = ("Grüße aus Köln. " * 200).strip()
    encoded = base64.encodebytes(text.encode()).replace(b"\n", b"\r\n")
    raw = crlf(
        BASIC + "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
    )
    header = raw[: raw.find(b"\r\n\r\n") + 4]
    partial = encoded[:1001]  # mid-line, mid-quantum and, decoded, mid-character
    msg = parse_parts(
        header, partial, transfer_encoding="base64", charset="utf-8", subtype="plain",
        text_size=len(encoded),
    )  # fmt: skip
    assert text.startswith(msg.text)
    assert len(msg.text) > 500
    assert msg.defects == ()


@settings(max_examples=300, deadline=None)
@given(name=st.from_regex(r"[A-Za-z0-9!#$%&'*+/^_`{|}~ -]{0,30}", fullmatch=True),
       local=st.from_regex(r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]{1,10}(\.[A-Za-z0-9_-]{1,5}){0,2}",
                           fullmatch=True),
       domain=st.from_regex(r"[a-z0-9]{1,8}(-[a-z0-9]{1,4})?(\.[a-z]{2,6}){1,2}",
                            fullmatch=True),
       angle=st.booleans())
def test_plain_mailboxes_read_as_the_full_parser_reads_them(name: str, local: str,
                                                            domain: str, angle: bool) -> None:
    """The shortcut for plain From/To values gives what the header parser gives."""
    value = f"{name} <{local}@{domain}>" if angle else f"{local}@{domain}"
    raw = f"From: {value}\r\nTo: support@example.com\r\nSubject: x\r\n\r\nbody\r\n".encode()
    parsed = parse_message(raw).author
    [full] = HeaderRegistry()("from", value).addresses
    assert parsed == Address(name=" ".join(full.display_name.split()), addr=full.addr_spec)
