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
  size=0, max_text=65536)`: the IMAP path, `BODY.PEEK[HEADER]` plus the raw,
  still transfer-encoded first text part.
- `first_text_section(bodystructure)` and `TextSection`: which part to fetch,
  from an imapclient BODYSTRUCTURE.
- `html_to_text(markup)`: rough plain text from HTML, in linear time.
"""

from __future__ import annotations

import binascii
import codecs
import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address as HeaderAddress
from email.headerregistry import HeaderRegistry
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from email.utils import parsedate_to_datetime
from typing import TypeVar

from mailbridge.core.model import Address, InboundMessage
from mailbridge.mail.headers import clean

MAX_PARSE_BYTES = 4 * 1024 * 1024
MAX_TOP_FIELD = 64 * 1024
MAX_MIME_FIELD = 2 * 1024
MAX_HEADERS = 500
MAX_VALUE = 4096
"""Characters of one header value that are decoded, parsed and kept."""
MAX_DECODE = 128 * 1024
"""Characters of RFC 2047 decoding for all kept headers together."""
MAX_ADDRESSES = 100
MAX_REFERENCES = 50
MAX_DEFECTS = 50
MAX_PARTS = 500
MAX_DEPTH = 30

_T = TypeVar("_T")
_ADDRESS_HEADERS = HeaderRegistry()
_UNSTRUCTURED = HeaderRegistry(use_default_map=False)
_ID_TOKEN = re.compile(r"<[^<>\s]+>")
_HEADER_LINE = re.compile(rb"[!-9;-~]*:")
_BOUNDARY_LINE = re.compile(
    rb"--[0-9A-Za-z'()+_,./:=?-](?:[0-9A-Za-z'()+_,./:=? -]{0,68}[0-9A-Za-z'()+_,./:=?-])?"
    rb"[ \t]*(?:\r\n|\r|\n)?\Z"
)
_BODY_CONTROLS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_HEADER_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
_SURROGATES = re.compile("[\ud800-\udfff]")
_HTML_START = re.compile(r"\s*<(?:!doctype|html|head|body|div|p|table|meta)\b", re.IGNORECASE)
_CHARSET_ALIASES = {
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "windows-874": "cp874",
    "x-mac-roman": "mac_roman",
    "x-sjis": "shift_jis",
}
_NOT_TEXT_CODECS = frozenset(
    {"idna", "punycode", "unicode-escape", "raw-unicode-escape", "undefined"}
)
_NO_CHARSET = frozenset({"", "us-ascii", "ascii", "unknown-8bit"})


@dataclass(frozen=True)
class TextSection:
    """Where the first text part of a message is, for `BODY.PEEK[<section>]`."""

    section: str
    """The IMAP part number: "1", "1.2"; "1" for a single-part message."""
    encoding: str
    """The Content-Transfer-Encoding, lower-case: "base64", "quoted-printable", "7bit"."""
    charset: str | None
    subtype: str
    """"plain" or "html"."""
    size: int
    """The encoded size in octets, as the server reported it."""


class _Defects:
    """The problems found so far, deduplicated and capped at MAX_DEFECTS."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.dropped = 0

    def add(self, text: str) -> None:
        if text in self.items:
            return
        if len(self.items) < MAX_DEFECTS:
            self.items.append(text)
        else:
            self.dropped += 1

    def result(self) -> tuple[str, ...]:
        more = [f"{self.dropped} more problems not listed"] if self.dropped else []
        return (*self.items, *more)


# --- public entry points ---------------------------------------------------------


def parse_message(raw: bytes, *, max_text: int = 65536) -> InboundMessage:
    """Read a complete message (an .eml file, an mbox entry, an SMTP DATA payload).

    Never raises: whatever cannot be read is missing from the result and
    explained in `defects`. `text` is the first text/plain part that is not an
    attachment (else the first text/html one, as rough plain text), decoded and
    cut to `max_text` characters; `size` is `len(raw)`.
    """
    defects = _Defects()
    size = len(raw) if isinstance(raw, bytes | bytearray | memoryview) else 0
    try:
        data = bytes(raw)
        msg = _parse(_bound_fields(data[:MAX_PARSE_BYTES], defects), defects)
        text = _guard(defects, "text part", "", lambda: _message_text(msg, max_text, defects))
        if not text and size > MAX_PARSE_BYTES:
            defects.add(f"no text found in the first {MAX_PARSE_BYTES // 1048576} MiB")
        return _build(msg, text=text, size=size, defects=defects)
    except Exception as exc:  # the last line of defence: a parser must never fail
        defects.add(f"message could not be read ({type(exc).__name__})")
        return _empty(size, defects)


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
    given one. Never raises.
    """
    defects = _Defects()
    try:
        msg = _parse(_bound_fields(bytes(header)[:MAX_PARSE_BYTES], defects), defects)
        body = ""
        if text is not None:
            encoding, cs, sub = _part_defaults(msg, transfer_encoding, charset, subtype)
            raw = bytes(text)
            cut = text_size is not None and len(raw) < text_size
            body = _guard(
                defects,
                "text part",
                "",
                lambda: _decode_text(
                    raw,
                    encoding=encoding,
                    charset=cs,
                    subtype=sub,
                    max_text=max_text,
                    defects=defects,
                    cut=cut,
                ),
            )
        return _build(msg, text=body, size=size, defects=defects)
    except Exception as exc:
        defects.add(f"message could not be read ({type(exc).__name__})")
        return _empty(size, defects)


def first_text_section(bodystructure: object) -> TextSection | None:
    """The first text/plain part that is not an attachment, else the first text/html.

    `bodystructure` is what imapclient returns for BODYSTRUCTURE: a BodyData
    whose first item is the list of parts for a multipart, or the single part
    (type, subtype, params, id, description, encoding, size, ...) with bytes
    values. Parts of attached messages (message/rfc822) are not searched.
    Returns None when there is no such part or the structure makes no sense.
    """
    try:
        return _choose(_imap_text_parts(bodystructure))
    except Exception:
        return None


def html_to_text(markup: str) -> str:
    """Rough plain text from HTML: tags dropped, blocks on their own lines.

    A small linear scanner rather than html.parser, whose worst cases on
    malformed input are quadratic in the Python versions we support.
    """
    lower = markup.lower()
    out: list[str] = []
    pos, end = 0, len(markup)
    while pos < end:
        lt = markup.find("<", pos)
        if lt < 0:
            out.append(_html_text(markup[pos:]))
            break
        out.append(_html_text(markup[pos:lt]))
        pos = _skip_markup(markup, lower, lt, out)
    lines = (" ".join(line.split()) for line in "".join(out).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# --- parsing and bounding --------------------------------------------------------


def _parse(data: bytes, defects: _Defects) -> Message:
    try:
        return BytesParser(policy=compat32).parsebytes(data)
    except Exception as exc:
        defects.add(f"MIME structure unreadable ({type(exc).__name__}), headers only")
        return BytesParser(policy=compat32).parsebytes(data, headersonly=True)


def _bound_fields(raw: bytes, defects: _Defects) -> bytes:
    """`raw` with every over-long header field cut, in the top and MIME part headers.

    A line that looks like a MIME boundary starts a header block; a blank or
    non-header line ends it, as in the email package's own parser.
    """
    out: list[bytes] = []
    in_header, top, size, limit = True, True, 0, MAX_TOP_FIELD
    for index, line in enumerate(raw.splitlines(keepends=True)):
        if not in_header:
            if line.startswith(b"--") and _BOUNDARY_LINE.match(line):
                in_header = True
            out.append(line)
            continue
        if line[:1] in (b" ", b"\t"):
            size += len(line)
        elif _HEADER_LINE.match(line) or (index == 0 and line.startswith(b"From ")):
            size = len(line)
            content = line[:8].lower() == b"content-"
            limit = MAX_TOP_FIELD if top and not content else MAX_MIME_FIELD
        else:
            in_header, top = False, False
            out.append(line)
            continue
        if size <= limit:
            out.append(line)
            continue
        keep = len(line) - (size - limit)
        if keep > 0:
            out.append(line[:keep].rstrip(b"\r\n") + b"\r\n")
        defects.add(f"a header field longer than {limit // 1024} KiB was cut")
    return b"".join(out)


def _guard(defects: _Defects, what: str, default: _T, read: Callable[[], _T]) -> _T:
    try:
        return read()
    except Exception as exc:
        defects.add(f"{what} unreadable ({type(exc).__name__})")
        return default


def _empty(size: int, defects: _Defects) -> InboundMessage:
    return InboundMessage(
        message_id=None, from_=(), sender=None, reply_to=(), to=(), cc=(),
        return_path=None, subject="", date=None, in_reply_to=(), references=(),
        defects=defects.result(), size=size,
    )  # fmt: skip


# --- headers -----------------------------------------------------------------------


def _build(msg: Message, *, text: str, size: int, defects: _Defects) -> InboundMessage:
    items = [(str(name), str(value)) for name, value in msg.raw_items()]
    index: dict[str, list[str]] = {}
    for name, value in items:
        index.setdefault(name.lower(), []).append(value)

    def field(name: str, default: _T, read: Callable[[], _T]) -> _T:
        return _guard(defects, f"{name} header", default, read)

    _guard(defects, "MIME structure", None, lambda: _mime_defects(msg, defects))
    return InboundMessage(
        message_id=field("Message-ID", None, lambda: _message_id(index, defects)),
        from_=field("From", (), lambda: _from(index, defects)),
        sender=field("Sender", None, lambda: _sender(index, defects)),
        reply_to=field("Reply-To", (), lambda: _addresses(index, "Reply-To", defects)),
        to=field("To", (), lambda: _addresses(index, "To", defects)),
        cc=field("Cc", (), lambda: _addresses(index, "Cc", defects)),
        return_path=field("Return-Path", None, lambda: _return_path(index)),
        subject=field("Subject", "", lambda: _subject(index, defects)),
        date=field("Date", None, lambda: _date(index, defects)),
        in_reply_to=field("In-Reply-To", (), lambda: _ids(index, "in-reply-to")),
        references=field("References", (), lambda: _ids(index, "references")),
        headers=_guard(defects, "header list", (), lambda: _header_pairs(items, defects)),
        content_type=field("Content-Type", "text/plain", lambda: _content_type(msg)),
        text=text,
        defects=defects.result(),
        size=size,
    )


def _unicode(value: str, name: str, defects: _Defects) -> str:
    """A raw header value as text: unfolded, 8-bit bytes read as UTF-8 or windows-1252."""
    value = re.sub(r"\r\n|\r|\n", "", value)
    if value.isascii():
        return value
    data = value.encode("utf-8", "surrogateescape")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        defects.add(f"{name} header has 8-bit bytes that are not UTF-8, read as windows-1252")
        return data.decode("cp1252", "replace")


def _tidy(text: str) -> str:
    """Header text without control characters, surrogates or repeated whitespace."""
    text = _SURROGATES.sub("\ufffd", text.replace("\t", " "))
    return " ".join(_HEADER_CONTROLS.sub("", text).split())


def _excerpt(text: str) -> str:
    return repr(clean(text, max_len=60))


def _bounded(index: dict[str, list[str]], name: str, defects: _Defects) -> str | None:
    """The first value of header `name` as text, cut to MAX_VALUE characters."""
    values = index.get(name.lower())
    if not values:
        return None
    text = _unicode(values[0], name, defects)
    if len(text) > MAX_VALUE:
        defects.add(f"{name} header longer than {MAX_VALUE} characters, cut")
        text = text[:MAX_VALUE]
    return text


def _decode_words(name: str, text: str) -> str:
    """RFC 2047 encoded words decoded; the text unchanged when that fails."""
    if "=?" not in text:
        return text
    try:
        return str(_UNSTRUCTURED(name, text))
    except Exception:
        return text


def _subject(index: dict[str, list[str]], defects: _Defects) -> str:
    text = _bounded(index, "Subject", defects)
    return "" if text is None else _tidy(_decode_words("subject", text))


def _addresses(index: dict[str, list[str]], name: str, defects: _Defects) -> tuple[Address, ...]:
    text = _bounded(index, name, defects)
    if text is None or not text.strip():
        return ()
    try:
        header = _ADDRESS_HEADERS(name.lower(), text)
        found: Sequence[HeaderAddress] = getattr(header, "addresses", ())
    except Exception:
        defects.add(f"{name} header unreadable: {_excerpt(text)}")
        return ()
    usable = [a for a in found if a.username and a.domain]
    if len(usable) < len(found) or (not found and ":" not in text):
        defects.add(f"{name} header has no usable address: {_excerpt(text)}")
    if len(usable) > MAX_ADDRESSES:
        defects.add(f"{name} header has {len(usable)} addresses, first {MAX_ADDRESSES} kept")
    return tuple(
        Address(name=_tidy(a.display_name), addr=_tidy(a.addr_spec)) for a in usable[:MAX_ADDRESSES]
    )


def _from(index: dict[str, list[str]], defects: _Defects) -> tuple[Address, ...]:
    count = len(index.get("from", ()))
    if count == 0:
        defects.add("From header missing")
        return ()
    if count > 1:
        defects.add(f"From header appears {count} times, the first was used")
    found = _addresses(index, "From", defects)
    if len(found) > 1:
        defects.add(f"From header has {len(found)} addresses")
    return found


def _sender(index: dict[str, list[str]], defects: _Defects) -> Address | None:
    found = _addresses(index, "Sender", defects)
    return found[0] if found else None


def _return_path(index: dict[str, list[str]]) -> str | None:
    values = index.get("return-path")
    if not values:
        return None
    text = _tidy(_unicode(values[0][:MAX_VALUE], "Return-Path", _Defects()))
    match = re.search(r"<([^<>]*)>", text)
    spec = (match.group(1) if match else text).strip()
    if spec.startswith("@") and ":" in spec:  # an obsolete source route: @relay:user@host
        spec = spec.split(":", 1)[1]
    return spec


def _message_id(index: dict[str, list[str]], defects: _Defects) -> str | None:
    text = _bounded(index, "Message-ID", defects)
    if text is None:
        defects.add("Message-ID header missing")
        return None
    text = _tidy(text)
    match = _ID_TOKEN.search(text)
    if match:
        return match.group(0)
    if re.fullmatch(r"[^<>\s]+@[^<>\s]+", text):
        defects.add("Message-ID header lacks angle brackets")
        return f"<{text}>"
    defects.add(f"Message-ID header unusable: {_excerpt(text)}")
    return None


def _ids(index: dict[str, list[str]], name: str) -> tuple[str, ...]:
    """Every "<id>" token of all `name` headers; the last MAX_REFERENCES of them."""
    text = " ".join(index.get(name, ()))[-MAX_TOP_FIELD:]
    tokens = _ID_TOKEN.findall(_tidy(_unicode(text, name, _Defects())))
    return tuple(tokens[-MAX_REFERENCES:])


def _date(index: dict[str, list[str]], defects: _Defects) -> datetime | None:
    text = _bounded(index, "Date", defects)
    if text is None:
        defects.add("Date header missing")
        return None
    text = _tidy(text)[:200]
    try:
        parsed: datetime | None = parsedate_to_datetime(text)
    except Exception:
        parsed = None
    if parsed is None:
        defects.add(f"Date header unparseable: {_excerpt(text)}")
        return None
    if parsed.tzinfo is None:
        defects.add("Date header has no time zone, assumed UTC")
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        defects.add(f"Date header out of range: {_excerpt(text)}")
        return None


def _header_pairs(items: list[tuple[str, str]], defects: _Defects) -> tuple[tuple[str, str], ...]:
    if len(items) > MAX_HEADERS:
        defects.add(f"{len(items)} headers, only the first {MAX_HEADERS} kept")
    budget, cut, pairs = MAX_DECODE, 0, []
    for name, value in items[:MAX_HEADERS]:
        text = _unicode(value, name, defects)
        if len(text) > MAX_VALUE:
            text, cut = text[:MAX_VALUE], cut + 1
        if "=?" in text and budget > 0:
            budget -= len(text)
            text = _decode_words(name, text)
        pairs.append((_tidy(name).lower(), _tidy(text)))
    if cut:
        defects.add(f"{cut} header values longer than {MAX_VALUE} characters were cut")
    return tuple(pairs)


def _content_type(msg: Message) -> str:
    return msg.get_content_type().lower()


def _mime_defects(msg: Message, defects: _Defects) -> None:
    """The email package's own findings, as sentences."""
    for count, part in enumerate(msg.walk()):
        if count >= MAX_PARTS:
            break
        for found in getattr(part, "defects", ()):
            name = type(found).__name__.removesuffix("Defect")
            words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).lower()
            defects.add(f"MIME structure: {words}")


# --- the text part -----------------------------------------------------------------


def _choose(candidates: Sequence[tuple[str, _T]]) -> _T | None:
    for wanted in ("plain", "html"):
        for subtype, item in candidates:
            if subtype == wanted:
                return item
    return None


def _message_text(msg: Message, max_text: int, defects: _Defects) -> str:
    part = _choose(_text_parts(msg))
    if part is None:
        defects.add("no text part found")
        return ""
    payload = _raw_payload(part)
    if payload is None:
        return ""
    subtype = part.get_content_subtype().lower()
    encoding = str(part.get("content-transfer-encoding", "7bit"))
    budget = _encoded_budget(encoding, _char_budget(subtype, max_text))
    raw = payload[:budget].encode("utf-8", "surrogateescape")
    charset = _guard(defects, "charset", None, part.get_content_charset)
    cut = len(payload) > budget
    return _decode_text(
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
    stack: list[tuple[Message, int]] = [(msg, 0)]
    visited = 0
    while stack and visited < MAX_PARTS:
        part, depth = stack.pop()
        visited += 1
        ctype = part.get_content_type().lower()
        if ctype.startswith("multipart/"):
            children = part.get_payload()
            if isinstance(children, list) and depth < MAX_DEPTH:
                subparts = [c for c in children if isinstance(c, Message)]
                stack.extend((child, depth + 1) for child in reversed(subparts))
        elif ctype in ("text/plain", "text/html") and not _is_attachment(part):
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


def _char_budget(subtype: str | None, max_text: int) -> int:
    """Decoded characters worth reading: HTML gets four times `max_text` for its markup."""
    return max(max_text, 0) * (4 if subtype == "html" else 1)


def _encoded_budget(encoding: str, chars: int) -> int:
    """Encoded octets enough for `chars` characters.

    A character takes at most 4 octets (UTF-8, UTF-16, UTF-32); quoted-printable
    writes each octet as "=XX", base64 as 4/3 plus line breaks.
    """
    name = encoding.strip().lower().split(";")[0].strip()
    return chars * {"quoted-printable": 12, "base64": 6}.get(name, 4) + 1024


def _decode_text(
    raw: bytes,
    *,
    encoding: str,
    charset: str | None,
    subtype: str | None,
    max_text: int,
    defects: _Defects,
    cut: bool = False,
) -> str:
    chars = _char_budget(subtype, max_text)
    budget = _encoded_budget(encoding, chars)
    cut = cut or len(raw) > budget
    data = _transfer_decode(raw[:budget], encoding, cut=cut, defects=defects)
    text = _to_str(data, charset, final=not cut, defects=defects)[:chars]
    if subtype == "html" or (subtype is None and _HTML_START.match(text[:1024])):
        text = html_to_text(text)
    if "\x00" in text:
        defects.add("text contains NUL bytes, removed")
    text = _BODY_CONTROLS.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return text.strip()[: max(max_text, 0)]


def _transfer_decode(data: bytes, encoding: str, *, cut: bool, defects: _Defects) -> bytes:
    name = encoding.strip().lower().split(";")[0].strip()
    if name == "base64":
        return _base64(data, cut=cut, defects=defects)
    if name == "quoted-printable":
        if cut and b"\n" in data:
            data = data[: data.rfind(b"\n") + 1]
        return binascii.a2b_qp(data)
    if name not in ("", "7bit", "8bit", "binary"):
        defects.add(f"transfer encoding {_excerpt(name)} unknown, text read as is")
    return data


def _base64(data: bytes, *, cut: bool, defects: _Defects) -> bytes:
    """Lenient base64: junk skipped, padding repaired, concatenated chunks decoded."""
    if re.search(rb"[^A-Za-z0-9+/=\s]", data):
        defects.add("text part has invalid base64 characters, they were skipped")
    pieces = [p for p in re.sub(rb"[^A-Za-z0-9+/=]", b"", data).split(b"=") if p]
    out = bytearray()
    for number, piece in enumerate(pieces, 1):
        chunk, extra = piece, len(piece) % 4
        if cut and number == len(pieces):
            chunk, extra = chunk[: len(chunk) - extra], 0
        if extra == 1:
            defects.add("text part has broken base64, decoded what could be read")
            chunk = chunk[:-1]
        elif extra:
            chunk += b"=" * (4 - extra)
        out += binascii.a2b_base64(chunk)
    return bytes(out)


def _codec(charset: str) -> str | None:
    """The Python codec for a MIME charset name, or None when unknown or not text."""
    name = _CHARSET_ALIASES.get(charset, charset)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError, TypeError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_TEXT_CODECS:
        return None
    return info.name


def _to_str(data: bytes, charset: str | None, *, final: bool, defects: _Defects) -> str:
    declared = (charset or "").strip().strip("\"'").lower()
    if declared in _NO_CHARSET:
        if data.isascii():
            return data.decode("ascii")
        return _guess(data, final=final, defects=defects, why="text has 8-bit bytes but no charset")
    codec = _codec(declared)
    if codec is None:
        why = f"charset {_excerpt(declared)} unknown"
        return _guess(data, final=final, defects=defects, why=why)
    decoder = codecs.getincrementaldecoder(codec)
    try:
        return decoder("strict").decode(data, final=final)
    except UnicodeDecodeError:
        defects.add(f"text is not valid {declared}, undecodable bytes replaced")
        return decoder("replace").decode(data, final=final)


def _guess(data: bytes, *, final: bool, defects: _Defects, why: str) -> str:
    """UTF-8 when the bytes are valid UTF-8, else windows-1252 (never fails)."""
    try:
        text = codecs.getincrementaldecoder("utf-8")("strict").decode(data, final=final)
    except UnicodeDecodeError:
        defects.add(f"{why}, decoded as windows-1252")
        return data.decode("cp1252", "replace")
    defects.add(f"{why}, decoded as utf-8")
    return text


# --- HTML ----------------------------------------------------------------------------

_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9:-]*)[^<>]*>")
_SKIP_CONTENT = ("script", "style", "title", "template")
_LINE_TAGS = frozenset(
    ("br", "p", "div", "tr", "li", "ul", "ol", "table", "h1", "h2", "h3", "h4", "h5", "h6",
     "blockquote", "pre", "hr", "section", "article", "header", "footer", "address", "dt", "dd")
)  # fmt: skip


def _html_text(chunk: str) -> str:
    """Text between tags: whitespace runs collapse to one space, as a browser shows it."""
    return html.unescape(re.sub(r"\s+", " ", chunk))


def _skip_markup(markup: str, lower: str, lt: int, out: list[str]) -> int:
    """Handle the markup at `lt`; return where the text goes on."""
    end = len(markup)
    if markup.startswith("<!--", lt):
        close = markup.find("-->", lt + 4)
        return end if close < 0 else close + 3
    if markup.startswith(("<!", "<?"), lt):
        close = markup.find(">", lt)
        return end if close < 0 else close + 1
    tag = _TAG.match(markup, lt)
    if tag is None:
        out.append("<")
        return lt + 1
    name = tag.group(2).lower()
    if not tag.group(1) and name in _SKIP_CONTENT:
        close = lower.find(f"</{name}", tag.end())
        if close < 0:
            return end
        after = markup.find(">", close)
        return end if after < 0 else after + 1
    if name == "li":
        out.append("" if tag.group(1) else "\n- ")
    elif name in _LINE_TAGS:
        out.append("\n")
    elif name in ("td", "th"):
        out.append(" ")
    return tag.end()


# --- IMAP BODYSTRUCTURE ------------------------------------------------------------


def _imap_text_parts(structure: object) -> list[tuple[str, TextSection]]:
    found: list[tuple[str, TextSection]] = []
    stack: list[tuple[object, str, int]] = [(structure, "", 0)]
    visited = 0
    while stack and visited < MAX_PARTS:
        node, section, depth = stack.pop()
        visited += 1
        if not isinstance(node, tuple | list) or not node:
            continue
        children = _imap_children(node)
        if children is not None:
            if depth < MAX_DEPTH:
                prefix = f"{section}." if section else ""
                numbered = [(child, f"{prefix}{i}") for i, child in enumerate(children, 1)]
                stack.extend((child, number, depth + 1) for child, number in reversed(numbered))
            continue
        part = _imap_text_part(node, section or "1")
        if part is not None:
            found.append((part.subtype, part))
    return found


def _imap_children(node: Sequence[object]) -> Sequence[object] | None:
    """The parts of a multipart node, or None for a single part.

    imapclient's BodyData nests the parts in a list as the first item; a raw
    parsed response has them as the leading tuples.
    """
    if isinstance(node[0], list):
        return node[0]
    if isinstance(node[0], tuple):
        count = next((i for i, item in enumerate(node) if not isinstance(item, tuple)), len(node))
        return list(node[:count])
    return None


def _imap_text_part(node: Sequence[object], section: str) -> TextSection | None:
    if len(node) < 7 or _atom(node[0]) != "text" or _atom(node[1]) not in ("plain", "html"):
        return None
    disposition = node[9] if len(node) > 9 else None
    if (
        isinstance(disposition, tuple | list)
        and disposition
        and _atom(disposition[0]) == "attachment"
    ):
        return None
    params = node[2] if isinstance(node[2], tuple | list) else ()
    keys = [_atom(item) for item in params[0::2]]
    charset = _text(params[keys.index("charset") * 2 + 1]) if "charset" in keys else None
    return TextSection(
        section=section,
        encoding=_atom(node[5]) or "7bit",
        charset=charset or None,
        subtype=_atom(node[1]),
        size=node[6] if isinstance(node[6], int) else 0,
    )


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return value if isinstance(value, str) else ""


def _atom(value: object) -> str:
    return _text(value).strip().lower()
