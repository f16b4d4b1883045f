"""Received mail, as hostile bytes, in; `InboundMessage` out. Never raises.

This module owns reading mail safely. Broken MIME, unknown charsets, invalid
base64, NUL bytes, 8-bit or endless headers and huge attachments all give a
message with what could be read; each problem becomes one short sentence in
`InboundMessage.defects`. Work is bounded whatever the input:

- the MIME structure is parsed from at most the first `MAX_PARSE_BYTES`;
- no header field longer than `MAX_TOP_FIELD` (top level) or `MAX_MIME_FIELD`
  (Content-* and MIME part headers) reaches the email package, whose
  parameter and address parsers are quadratic in a field's length;
- only the first text part is decoded, and only as much of it as `max_text`
  characters can need.

The MIME structure is parsed with `email.policy.compat32`: the modern policy
parses every Content-Type while splitting parts and takes seconds on a single
16 KB hostile one (RecursionError on nested comments). Header *values* are
decoded with the modern `email.headerregistry` classes, one bounded value at a
time, each inside its own try.

Public API:

- `parse_message(raw, *, max_text=65536)`: a complete message (.eml, mbox entry).
- `parse_parts(header, text, *, transfer_encoding=None, charset=None, subtype=None,
  size=0, max_text=65536, report=None)`: the IMAP path, `BODY.PEEK[HEADER]` plus the raw,
  still transfer-encoded first text part.
- `first_text_section(bodystructure)` and `TextSection`: which part to fetch,
  from an imapclient BODYSTRUCTURE (from `mailbridge.mail.bodystructure`).
- `html_to_text(markup)`: rough plain text from HTML, in linear time (from
  `mailbridge.mail.decode`).
- The limits above and `MAX_HEADERS`, `MAX_VALUE`, `MAX_DECODE`, `MAX_ADDRESSES`,
  `MAX_REFERENCES`, `MAX_DEFECTS`, `MAX_PARTS`, `MAX_DEPTH`.

This module reads the MIME structure and chooses the text part; a header block with
obsolete syntax, a junk line or leading white space is first mended as mail readers read
it (`mailbridge.mail.lenient`, each mend a defect); the header fields are read
in `mailbridge.mail.fields`, the text part decoded in `mailbridge.mail.decode`, and problems
collected by `mailbridge.mail.defects`.
"""

from __future__ import annotations

from email.message import Message
from email.parser import BytesParser
from email.policy import compat32

from mailbridge.core.model import InboundMessage, Report
from mailbridge.mail.bodystructure import (
    MAX_DEPTH,
    MAX_PARTS,
    Structure,
    TextSection,
    choose,
    first_text_section,
    mime_leaves,
)
from mailbridge.mail.decode import char_budget, decode_text, encoded_budget, html_to_text
from mailbridge.mail.defects import MAX_DEFECTS, Defects, guard
from mailbridge.mail.fields import (
    MAX_ADDRESSES,
    MAX_DECODE,
    MAX_HEADERS,
    MAX_MIME_FIELD,
    MAX_REFERENCES,
    MAX_TOP_FIELD,
    MAX_VALUE,
    bound_fields,
    build_message,
    empty_message,
)
from mailbridge.mail.lenient import mend_header_block
from mailbridge.mail.reports import report_of

__all__ = [
    "MAX_ADDRESSES", "MAX_DECODE", "MAX_DEFECTS", "MAX_DEPTH", "MAX_HEADERS", "MAX_MIME_FIELD",
    "MAX_PARSE_BYTES", "MAX_PARTS", "MAX_REFERENCES", "MAX_TOP_FIELD", "MAX_VALUE", "TextSection",
    "first_text_section", "html_to_text", "parse_message", "parse_parts",
]

MAX_PARSE_BYTES = 4 * 1024 * 1024


# --- public entry points ---------------------------------------------------------


def parse_message(raw: bytes, *, max_text: int = 65536) -> InboundMessage:
    """Read a complete message (an .eml file, an mbox entry, an SMTP DATA payload).

    Never raises: whatever cannot be read is missing from the result and
    explained in `defects`. `text` is the first text/plain part that is not an
    attachment (else the first text/html one, as rough plain text), decoded and
    cut to `max_text` characters; `size` is `len(raw)`.
    """
    defects = Defects()
    size = len(raw) if isinstance(raw, bytes | bytearray | memoryview) else 0
    try:
        data = bytes(raw)
        block = mend_header_block(data[:MAX_PARSE_BYTES], defects)
        msg = _parse(bound_fields(block, defects), defects)
        text = guard(defects, "text part", "", lambda: _message_text(msg, max_text, defects))
        if not text and size > MAX_PARSE_BYTES:
            defects.add(f"no text found in the first {MAX_PARSE_BYTES // 1048576} MiB")
        report = report_of(msg) if msg.get_content_maintype().lower() == "multipart" else None
        return build_message(msg, text=text, size=size, defects=defects, report=report)
    except Exception as exc:  # the last line of defence: a parser must never fail
        defects.add(f"message could not be read ({type(exc).__name__})")
        return empty_message(size, defects)


def parse_parts(
    header: bytes,
    text: bytes | None,
    *,
    transfer_encoding: str | None = None,
    charset: str | None = None,
    subtype: str | None = None,
    size: int = 0,
    text_size: int | None = None,
    max_text: int = 65536,
    report: Report | None = None,
    structure: Structure | None = None,
) -> InboundMessage:
    """Read a message from its header block and the raw bytes of its first text part.

    For the IMAP path: `header` is `BODY.PEEK[HEADER]`, `text` is
    `BODY.PEEK[<TextSection.section>]` (still transfer-encoded), and
    `transfer_encoding`, `charset`, `subtype` and `size` come from
    BODYSTRUCTURE / RFC822.SIZE. Unset values fall back to the header of a
    single-part message. `text_size` is the part's full size from
    BODYSTRUCTURE: when `text` is shorter (a partial fetch such as
    `BODY.PEEK[1]<0.N>`), its cut end is not reported as damage. Gives the same
    result as `parse_message` on the whole message, except `size`, which is the
    given one, and the parts, which are `structure`'s: the caller reads them from
    BODYSTRUCTURE (`mailbridge.mail.structure.imap_parts`); without it, those of the header
    block alone. `report` is what `mailbridge.mail.reports`
    read from the report parts the watcher fetched (`report_sections`), if any. Never
    raises.
    """
    defects = Defects()
    try:
        block = mend_header_block(bytes(header)[:MAX_PARSE_BYTES], defects)
        msg = _parse(bound_fields(block, defects), defects)
        body = ""
        if text is not None:
            encoding, cs, sub = _part_defaults(msg, transfer_encoding, charset, subtype)
            raw = bytes(text)
            cut = text_size is not None and len(raw) < text_size
            body = guard(
                defects,
                "text part",
                "",
                lambda: decode_text(
                    raw,
                    encoding=encoding,
                    charset=cs,
                    subtype=sub,
                    max_text=max_text,
                    defects=defects,
                    cut=cut,
                ),
            )
        return build_message(msg, text=body, size=size, defects=defects, structure=structure,
                             report=report)
    except Exception as exc:
        defects.add(f"message could not be read ({type(exc).__name__})")
        return empty_message(size, defects, structure)


# --- the MIME structure --------------------------------------------------------


def _parse(data: bytes, defects: Defects) -> Message:
    try:
        return BytesParser(policy=compat32).parsebytes(data)
    except Exception as exc:
        defects.add(f"MIME structure unreadable ({type(exc).__name__}), headers only")
        return BytesParser(policy=compat32).parsebytes(data, headersonly=True)


# --- the text part -----------------------------------------------------------------


def _message_text(msg: Message, max_text: int, defects: Defects) -> str:
    part = choose(_text_parts(msg))
    if part is None:
        defects.add("no text part found")
        return ""
    payload = _raw_payload(part)
    if payload is None:
        return ""
    subtype = part.get_content_subtype().lower()
    encoding = str(part.get("content-transfer-encoding", "7bit"))
    budget = encoded_budget(encoding, char_budget(subtype, max_text))
    raw = payload[:budget].encode("utf-8", "surrogateescape")
    charset = guard(defects, "charset", None, part.get_content_charset)
    cut = len(payload) > budget
    return decode_text(
        raw,
        encoding=encoding,
        charset=charset,
        subtype=subtype,
        max_text=max_text,
        defects=defects,
        cut=cut,
    )


def _raw_payload(part: Message) -> str | None:
    """The part's body exactly as received (8-bit bytes as surrogate escapes).

    `get_payload()` re-decodes 8-bit bytes with the declared charset and
    replaces what it cannot, and `get_payload(decode=True)` does the transfer
    decoding its own way; reading the stored payload lets `parse_message` and
    `parse_parts` share one decoder and lose no byte.
    """
    payload = getattr(part, "_payload", None)
    return payload if isinstance(payload, str) else None


def _text_parts(msg: Message) -> list[tuple[str, Message]]:
    """(subtype, part) of every text/plain and text/html part that is not an attachment."""
    found: list[tuple[str, Message]] = []
    for part in mime_leaves(msg):
        ctype = part.get_content_type().lower()
        if ctype in ("text/plain", "text/html") and not _is_attachment(part):
            found.append((ctype[5:], part))
    return found


def _is_attachment(part: Message) -> bool:
    try:
        return part.get_content_disposition() == "attachment"
    except Exception:
        return False


def _part_defaults(
    msg: Message, encoding: str | None, charset: str | None, subtype: str | None
) -> tuple[str, str | None, str | None]:
    """Fill what BODYSTRUCTURE did not say from the header of a single-part message."""
    if msg.get_content_maintype().lower() != "text":
        return encoding or "7bit", charset, subtype
    if encoding is None:
        encoding = str(msg.get("content-transfer-encoding", "7bit"))
    if charset is None:
        charset = msg.get_content_charset()
    return encoding, charset, subtype or msg.get_content_subtype().lower()

