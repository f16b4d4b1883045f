"""A header block mended as mail readers read it, before the strict parse.

This module owns the three header-block faults that the email package's strict parser
turns into a lost header block (its From included) and that mail readers read anyway:

- obsolete syntax, white space before the colon (`From  : John Doe <j@example.com>`,
  RFC 5322 section 4.5 `obs-optional`): read as `From: ...`;
- a junk line inside the header block (no field, no continuation), as mutt skips it:
  dropped, when the block goes on with mail header fields after it;
- a header block that begins with white space (blank lines, or spaces before the first
  field) or with a UTF-8 byte order mark: read from its first field.

A well-formed block is returned unchanged (the same bytes), so the strict parse stays
where it works; each mend adds one problem to `defects`. Public API:

- `mend_header_block(raw, defects) -> bytes`: `raw` with its top header block mended.
- `MAIL_FIELDS`: the header fields that mark a header block as a mail's.
- `FIELD`: a header field's start, obsolete white space before the colon allowed.
- `BOM`: the UTF-8 byte order mark.
"""

from __future__ import annotations

import re

from mailbridge.mail.defects import Defects, excerpt

BOM = b"\xef\xbb\xbf"
"""UTF-8's byte order mark, which some editors write before the first field of a saved .eml."""
MAX_BLOCK_LINES = 2000
"""Lines of a header block looked at; a longer one is left to the strict parser as it is."""
MAIL_FIELDS = frozenset({
    b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"received", b"return-path",
    b"sender", b"reply-to", b"mime-version", b"content-type", b"delivered-to",
    b"in-reply-to", b"references", b"x-mailer", b"user-agent",
})
FIELD = re.compile(rb"([!-9;-~]+)([ \t]*):")
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)?")
_EOL = rb"(?:\r\n|\n|\r(?!\n))"
_WELL_FORMED = re.compile(
    rb"(?:[!-9;-~]+:|From (?![ \t]*:))[^\r\n]*" + _EOL
    + rb"(?:(?:[!-9;-~]+:|[ \t])[^\r\n]*" + _EOL + rb")*" + _EOL)
"""A header block of fields and continuation lines up to its blank line, beginning with a
field (or an mbox "From " line): nothing to mend."""
_LEADING = re.compile(rb"(?:[ \t]*(?:\r\n|\r|\n))*[ \t]*")


def mend_header_block(raw: bytes, defects: Defects) -> bytes:
    """`raw` with its top-level header block read as mail readers read it."""
    if _WELL_FORMED.match(raw):  # nearly all mail: one regular expression, no line list
        return raw
    if raw.startswith(BOM):  # a Windows editor's mark before the first field
        defects.add("a byte order mark (U+FEFF) before the header block, removed")
        raw = raw[len(BOM):]
        if _WELL_FORMED.match(raw):
            return raw
    start = _LEADING.match(raw)
    offset = start.end() if start else 0
    if offset and FIELD.match(raw, offset):
        defects.add("the header block begins with white space; read from its first field")
        raw = raw[offset:]
    lines, rest = _header_lines(raw)
    mended: list[bytes] = []
    changed = False
    for index, line in enumerate(lines):
        if line[:1] in (b" ", b"\t") or (index == 0 and line.startswith(b"From ")
                                         and not FIELD.match(line)):
            mended.append(line)
            continue
        field = FIELD.match(line)
        if field is not None and field.group(2):
            name = field.group(1).decode("ascii")
            defects.add(f"obsolete header syntax: white space before the colon of {name}")
            mended.append(field.group(1) + b":" + line[field.end():])
            changed = True
        elif field is not None:
            mended.append(line)
        elif mended and _mail_fields_follow(lines[index + 1:]):
            defects.add(f"a line in the header block is no header field, skipped: "
                        f"{excerpt(line.decode('utf-8', 'replace'))}")
            changed = True
        else:
            return raw  # the body begins here (no blank line before it), as the parser sees
    return b"".join(mended) + raw[rest:] if changed else raw


def _header_lines(raw: bytes) -> tuple[list[bytes], int]:
    """The lines of the header block (at most MAX_BLOCK_LINES, line ends kept) and where
    the rest begins: at the blank line that ends the block."""
    lines: list[bytes] = []
    pos = 0
    while pos < len(raw) and len(lines) < MAX_BLOCK_LINES:
        match = _LINE.match(raw, pos)
        if match is None or match.end() == pos:
            break
        line = match.group(0)
        if not line.strip(b"\r\n"):
            break
        lines.append(line)
        pos = match.end()
    return lines, pos


def _mail_fields_follow(lines: list[bytes]) -> bool:
    """Whether the rest of the block holds a mail header field: the line before was junk
    inside the header block, not the first line of a body without a blank line before it."""
    for line in lines:
        field = FIELD.match(line)
        if field is not None and field.group(1).lower() in MAIL_FIELDS:
            return True
    return False
