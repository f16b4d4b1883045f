"""Saved mail as people export it: what is a message, what is an mbox, where it splits.

This module owns recognising mail by its content rather than its file name, for `replay`
(which reads the files; nothing here does I/O). Public API:

- `not_mail(data) -> str | None`: why `data` is clearly not a message ("empty file",
  "binary content (a PNG image)", "no header block ..."), or None when it may be one.
- `is_mbox(data) -> bool`: whether `data` begins with an mbox "From " line of the
  plausible shape `From <sender> <date>` (not `From: ...`, not obsolete `From  : ...`).
- `one_message(data) -> list[bytes]`: a file that holds one message (an .eml), without
  the mbox "From " line it may begin with; empty when nothing is left.
- `split_mbox(data) -> list[bytes]`: the messages of an mbox, each without its "From "
  line and with mboxrd/mboxo ">From " quoting undone. A "From " line separates two
  messages only at a message boundary: after a blank line, with a date after the sender,
  and followed by a header field; a body line that merely begins with "From " (a quoted
  original, "From 9:00 to 17:00 ...") stays in its message.
"""

from __future__ import annotations

import re

from mailbridge.mail.lenient import BOM, FIELD, MAIL_FIELDS

SNIFF_BYTES = 64 * 1024
"""How much of a file decides whether it is mail."""

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"), (b"%PDF-", "a PDF document"), (b"\x1f\x8b", "gzip data"),
    (b"PK\x03\x04", "a ZIP archive"), (b"BZh", "bzip2 data"), (b"\xfd7zXZ\x00", "xz data"),
    (b"(\xb5/\xfd", "zstd data"), (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
     "an OLE compound file, such as an Outlook .msg; save the mail as .eml instead"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
_FROM_LINE = re.compile(rb"From (?![ \t]*:)\S+")
"""An mbox "From " line's start; `From  : x` is an obsolete From field, not a separator."""
_WEEKDAY = rb"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MONTH = rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
_SEPARATOR = re.compile(
    rb"From (?![ \t]*:)\S+[ \t]+(?:"
    rb"(?:" + _WEEKDAY + rb",?[ \t]+)?(?:" + _MONTH + rb"[ \t]+\d{1,2}|\d{1,2}[ \t]+" + _MONTH
    + rb")[ \t]+(?:\d{4}[ \t]+)?\d{1,2}:\d{2}"
    rb"|\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2})")
"""`From sender Mon Jan  1 10:00:00 2024` (asctime, as mbox writers put it, with or without a
zone) or `From sender 2024-01-01 10:00:00`."""
_QUOTED_FROM = re.compile(rb"^>(>*From )", re.MULTILINE)
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)?")
_BLANK = re.compile(rb"[ \t]*(?:\r\n|\r|\n)?")


def not_mail(data: bytes) -> str | None:
    """Why `data` is clearly not an email message, or None when it may be one."""
    head = data[:SNIFF_BYTES]
    if not head.strip():
        return "empty file" if not data else "empty: only white space"
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return f"binary content ({what})"
    lines = head.removeprefix(BOM).lstrip().splitlines()
    if lines and _FROM_LINE.match(lines[0]):
        lines = lines[1:]
    names: set[bytes] = set()
    for line in lines:
        if not line.strip():
            break
        if line[:1] in (b" ", b"\t"):
            continue
        field = FIELD.match(line)
        if field is None:
            if not names:
                break
            continue  # a junk line inside the header block: readers skip it
        names.add(field.group(0).rstrip(b": \t").lower())
    if not names & MAIL_FIELDS:
        if b"\x00" in head[:4096]:  # mail may hold a stray NUL; without headers it is binary
            return "binary content (NUL bytes)"
        return ("no header block: it does not begin with mail header fields such as "
                "From: and Subject:")
    return None


def is_mbox(data: bytes) -> bool:
    """Whether `data` begins with an mbox "From " line."""
    first = data[:1024].splitlines()[:1]
    return bool(first) and _FROM_LINE.match(first[0]) is not None


def split_mbox(data: bytes) -> list[bytes]:
    """The messages of an mbox, "From " lines removed and ">From " quoting undone.

    Text before the first "From " line (an mbox named so, that lacks one) is a message
    of its own when it is not blank.
    """
    lines = data.splitlines(keepends=True)
    messages: list[list[bytes]] = []
    current: list[bytes] = []
    for index, line in enumerate(lines):
        if _separates(lines, index):
            if current and _BLANK.fullmatch(current[-1]):
                current.pop()  # the blank line before a "From " line belongs to the mbox
            if current and b"".join(current).strip():
                messages.append(current)
            current = []
            continue
        current.append(line)
    if current and b"".join(current).strip():
        messages.append(current)
    return [_QUOTED_FROM.sub(rb"\1", b"".join(m)) for m in messages]


def one_message(data: bytes) -> list[bytes]:
    """`data` as one message: without its leading "From " line, if it has one."""
    if is_mbox(data):
        first = _LINE.match(data)
        data = data[first.end():] if first else data
    return [data] if data.strip() else []


def _separates(lines: list[bytes], index: int) -> bool:
    line = lines[index]
    if not line.startswith(b"From "):
        return False
    if index == 0:
        return _FROM_LINE.match(line) is not None
    if not _BLANK.fullmatch(lines[index - 1]) or _SEPARATOR.match(line) is None:
        return False
    following = lines[index + 1] if index + 1 < len(lines) else b""
    return FIELD.match(following) is not None
