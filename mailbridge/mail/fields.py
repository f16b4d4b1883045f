"""The header fields of a received message: bounded before parsing, read one by one after.

This module owns the header block, top level and MIME parts alike. `bound_fields` cuts every
field the email package would parse in quadratic time; `build_message` then reads each field
of the parsed message with the modern `email.headerregistry` classes, one bounded value at a
time, each inside its own guard, so a bad field costs that field and adds a problem. Public
API, used by `mailbridge.mail.parse` (which re-exports the limits):

- `bound_fields(raw, defects) -> bytes`: `raw` with every over-long header field cut.
- `build_message(msg, *, text, size, defects) -> InboundMessage`: the fields of `msg`,
  with `text` and `size` as given.
- `empty_message(size, defects) -> InboundMessage`: a message of which nothing could be read.
- The limits `MAX_TOP_FIELD`, `MAX_MIME_FIELD`, `MAX_HEADERS`, `MAX_VALUE`, `MAX_DECODE`,
  `MAX_ADDRESSES`, `MAX_REFERENCES`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.headerregistry import Address as HeaderAddress
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from typing import TypeVar

from mailbridge.core.model import Address, InboundMessage, Report
from mailbridge.mail.bodystructure import MAX_PARTS, Structure
from mailbridge.mail.defects import Defects, excerpt, guard
from mailbridge.mail.headers import PLAIN_ADDR_SPEC, CachedHeaderRegistry
from mailbridge.mail.structure import message_parts

MAX_TOP_FIELD = 64 * 1024
MAX_MIME_FIELD = 2 * 1024
MAX_HEADERS = 500
MAX_VALUE = 4096
"""Characters of one header value that are decoded, parsed and kept."""
MAX_DECODE = 128 * 1024
"""Characters of RFC 2047 decoding for all kept headers together."""
MAX_ADDRESSES = 100
MAX_REFERENCES = 50

_T = TypeVar("_T")
_ADDRESS_HEADERS = CachedHeaderRegistry()
_UNSTRUCTURED = CachedHeaderRegistry(use_default_map=False)
_ID_TOKEN = re.compile(r"<[^<>\s]+>")
_PLAIN_MAILBOX = re.compile(
    rf" *(?:(?P<name>[A-Za-z0-9!#$%&'*+/^_`{{|}}~ -]*?) *<(?P<angle>{PLAIN_ADDR_SPEC})>"
    rf"|(?P<bare>{PLAIN_ADDR_SPEC})) *")
"""One mailbox any parser reads alike: ASCII atoms as the name (no quotes, comments, dots,
or "=" and "?" of encoded words), a dot-atom local part and a host name. Most mail has
such a From and To; the full parser, which costs about as much as the rest of reading a
message, is left for everything else."""
_HEADER_LINE = re.compile(rb"[!-9;-~]*:")
_BOUNDARY_LINE = re.compile(
    rb"--[0-9A-Za-z'()+_,./:=?-](?:[0-9A-Za-z'()+_,./:=? -]{0,68}[0-9A-Za-z'()+_,./:=?-])?"
    rb"[ \t]*(?:\r\n|\r|\n)?\Z"
)
_COMMENT = re.compile(r"\([^()]*\)")
_HEADER_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
_SURROGATES = re.compile("[\ud800-\udfff]")


# --- bounding --------------------------------------------------------------------


def bound_fields(raw: bytes, defects: Defects) -> bytes:
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


# --- headers -----------------------------------------------------------------------


def build_message(msg: Message, *, text: str, size: int, defects: Defects,
                  structure: Structure | None = None,
                  report: Report | None = None) -> InboundMessage:
    """The header fields of `msg`, with `text`, `size` and `report` as given; each bad field
    a problem. The parts are `structure`'s when given (IMAP's BODYSTRUCTURE), else `msg`'s."""
    items = [(str(name), str(value)) for name, value in msg.raw_items()]
    index: dict[str, list[str]] = {}
    for name, value in items:
        index.setdefault(name.lower(), []).append(value)

    def field(name: str, default: _T, read: Callable[[], _T]) -> _T:
        return guard(defects, f"{name} header", default, read)

    guard(defects, "MIME structure", None, lambda: _mime_defects(msg, defects))
    if structure is None:
        structure = message_parts(msg)
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
        headers=guard(defects, "header list", (), lambda: _header_pairs(items, defects)),
        content_type=field("Content-Type", "text/plain", lambda: _content_type(msg)),
        text=text,
        defects=defects.result(),
        size=size,
        parts=structure.parts,
        calendar_method=structure.calendar_method,
        report=report,
    )


def empty_message(size: int, defects: Defects,
                  structure: Structure | None = None) -> InboundMessage:
    """A message of which nothing could be read: only `size`, the problems and the parts
    `structure` gives (IMAP's BODYSTRUCTURE, read apart)."""
    structure = structure or Structure()
    return InboundMessage(
        message_id=None, from_=(), sender=None, reply_to=(), to=(), cc=(),
        return_path=None, subject="", date=None, in_reply_to=(), references=(),
        defects=defects.result(), size=size, parts=structure.parts,
        calendar_method=structure.calendar_method,
    )  # fmt: skip


def _unicode(value: str, name: str, defects: Defects) -> str:
    """A raw header value as text: unfolded, 8-bit bytes read as UTF-8 or windows-1252."""
    value = value.replace("\r", "").replace("\n", "")
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
    if text.isascii() and text.isprintable():  # nearly every value: nothing to drop
        return " ".join(text.split())
    text = _SURROGATES.sub("\ufffd", text.replace("\t", " "))
    return " ".join(_HEADER_CONTROLS.sub("", text).split())


def _bounded(index: dict[str, list[str]], name: str, defects: Defects) -> str | None:
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


def _subject(index: dict[str, list[str]], defects: Defects) -> str:
    text = _bounded(index, "Subject", defects)
    return "" if text is None else _tidy(_decode_words("subject", text))


def _addresses(index: dict[str, list[str]], name: str, defects: Defects) -> tuple[Address, ...]:
    text = _bounded(index, name, defects)
    if text is None or not text.strip():
        return ()
    plain = _PLAIN_MAILBOX.fullmatch(text)
    if plain is not None:
        return (Address(name=_tidy(plain.group("name") or ""),
                        addr=plain.group("angle") or plain.group("bare")),)
    try:
        header = _ADDRESS_HEADERS(name.lower(), text)
        found: Sequence[HeaderAddress] = getattr(header, "addresses", ())
    except Exception:
        # The strict parser refuses e.g. an encoded CR/LF in a display name; the
        # address itself may be fine, and losing it would lose the sender.
        lenient = _lenient_addresses(text)
        defects.add(f"{name} header malformed{', read leniently' if lenient else ''}: "
                    f"{excerpt(text)}")
        return lenient[:MAX_ADDRESSES]
    usable = [a for a in found if a.username and a.domain]
    if len(usable) < len(found) or (not found and ":" not in text):
        defects.add(f"{name} header has no usable address: {excerpt(text)}")
    if len(usable) > MAX_ADDRESSES:
        defects.add(f"{name} header has {len(usable)} addresses, first {MAX_ADDRESSES} kept")
    return tuple(
        Address(name=_tidy(a.display_name), addr=_tidy(a.addr_spec)) for a in usable[:MAX_ADDRESSES]
    )


def _lenient_addresses(text: str) -> tuple[Address, ...]:
    """Addresses read with the tolerant legacy parser; names decoded and cleaned."""
    found = []
    for raw_name, raw_spec in getaddresses([text]):
        spec = _tidy(raw_spec)
        local, _, domain = spec.rpartition("@")
        if not local or not domain or " " in spec:
            continue
        name = raw_name
        with contextlib.suppress(Exception):  # an undecodable name stays as written
            name = str(make_header(decode_header(raw_name)))
        found.append(Address(name=_tidy(name), addr=spec))
    return tuple(found)


def _from(index: dict[str, list[str]], defects: Defects) -> tuple[Address, ...]:
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


def _sender(index: dict[str, list[str]], defects: Defects) -> Address | None:
    found = _addresses(index, "Sender", defects)
    return found[0] if found else None


def _return_path(index: dict[str, list[str]]) -> str | None:
    values = index.get("return-path")
    if not values:
        return None
    text = _tidy(_unicode(values[0][:MAX_VALUE], "Return-Path", Defects()))
    match = re.search(r"<([^<>]*)>", text)
    spec = (match.group(1) if match else text).strip()
    if spec.startswith("@") and ":" in spec:  # an obsolete source route: @relay:user@host
        spec = spec.split(":", 1)[1]
    return spec


def _message_id(index: dict[str, list[str]], defects: Defects) -> str | None:
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
    match = _ID_TOKEN.search(re.sub(r"\s+", "", _COMMENT.sub("", text)))
    if match and "@" in match.group(0):  # obsolete: comments and spaces inside (RFC 5322 4.5.4)
        defects.add(f"Message-ID header in obsolete syntax, read as {match.group(0)}")
        return match.group(0)
    defects.add(f"Message-ID header unusable: {excerpt(text)}")
    return None


def _ids(index: dict[str, list[str]], name: str) -> tuple[str, ...]:
    """Every "<id>" token of all `name` headers; the last MAX_REFERENCES of them."""
    text = " ".join(index.get(name, ()))[-MAX_TOP_FIELD:]
    tokens = _ID_TOKEN.findall(_tidy(_unicode(text, name, Defects())))
    return tuple(tokens[-MAX_REFERENCES:])


def _date(index: dict[str, list[str]], defects: Defects) -> datetime | None:
    text = _bounded(index, "Date", defects)
    if text is None:
        defects.add("Date header missing")
        return None
    text = _tidy(text)[:200]
    parsed = _parsed_date(text)
    if parsed is None and ("(" in text or " :" in text or ": " in text):
        # Obsolete syntax (RFC 5322 4.5.1): comments, and spaces around the colons.
        parsed = _parsed_date(re.sub(r"\s*:\s*", ":", _COMMENT.sub(" ", text)))
        if parsed is not None:
            defects.add("Date header in obsolete syntax (comments or spaces), read leniently")
    if parsed is None:
        defects.add(f"Date header unparseable: {excerpt(text)}")
        return None
    if parsed.tzinfo is None:
        defects.add("Date header has no time zone, assumed UTC")
        parsed = parsed.replace(tzinfo=UTC)
    try:
        # Keep the sender's own UTC offset: it says what time it is for the customer.
        parsed.astimezone(UTC)
        return parsed
    except (OverflowError, ValueError):
        defects.add(f"Date header out of range: {excerpt(text)}")
        return None


def _parsed_date(text: str) -> datetime | None:
    try:
        return parsedate_to_datetime(text)
    except Exception:
        return None


def _header_pairs(items: list[tuple[str, str]], defects: Defects) -> tuple[tuple[str, str], ...]:
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


def _mime_defects(msg: Message, defects: Defects) -> None:
    """The email package's own findings, as sentences."""
    for count, part in enumerate(msg.walk()):
        if count >= MAX_PARTS:
            break
        for found in getattr(part, "defects", ()):
            name = type(found).__name__.removesuffix("Defect")
            words = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).lower()
            defects.add(f"MIME structure: {words}")

