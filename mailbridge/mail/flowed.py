"""Plain text as format=flowed (RFC 3676, DelSp=No): lines that wrap, and rewrap, anywhere.

Every text part mailbridge writes goes through `flowed` (`mailbridge.mail.mime`): a line
longer than `WIDTH` columns is broken at spaces into lines that end in a space (a soft line
break, which a flowed reader joins again and rewraps to its window); a word longer than the
width (a URL) is never broken, it gets a line of its own. Lines that start with ">" are
quotes: they are never wrapped, so a quoted message keeps its shape. A line that would read
as something else is space-stuffed (one space put before it, which the reader removes): one
that starts with a space, with "From " (mbox would mangle it) or, inside a wrapped line, with
">". Trailing spaces of the source lines are dropped, so that no hard line break reads as a
soft one; the signature separator "-- " keeps its space.

Public API: `flowed(text, width=WIDTH) -> str`, `WIDTH`; `unflowed(text) -> str`, the text as
a flowed reader shows it (soft breaks joined, stuffing removed), for tools and tests.
"""

from __future__ import annotations

import re
import unicodedata

WIDTH = 72
"""Columns, the soft break's space included; RFC 3676 asks for at most 78."""

_SIGNATURE_SEPARATOR = "-- "
_NOT_ASCII = re.compile(r"[^\x00-\x7f]")


def flowed(text: str, width: int = WIDTH) -> str:
    """`text` (any line endings) as format=flowed lines joined by "\\n", ending in "\\n"."""
    out: list[str] = []
    for source in text.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n").split("\n"):
        if source == _SIGNATURE_SEPARATOR:
            out.append(source)
            continue
        line = source.rstrip(" ")
        if line.startswith(">"):
            out.append(line)  # a quote: never wrapped, never stuffed
            continue
        out += [_stuffed(part) for part in _wrapped(line, width)]
    return "\n".join(out) + "\n"


def _wrapped(line: str, width: int) -> list[str]:
    """`line` in pieces of at most `width` columns, each but the last ending in a space; a
    piece that no space lets fit is as short as its first word allows."""
    # Nearly always every character takes one column (ASCII, accents, curly quotes): then a
    # piece's length is its width, and the characters are not looked up piece after piece.
    columns = len if _one_column(line) else _columns
    pieces: list[str] = []
    rest = line
    while columns(rest) > (room := width - 1 if _stuffed(rest) != rest else width):
        cut = _last_space(rest, room, one_column=columns is len)
        if cut is None:
            cut = rest.find(" ", 1)
            if cut == -1:
                break
        pieces.append(rest[:cut + 1])
        rest = rest[cut + 1:]
    pieces.append(rest)
    return pieces


def _last_space(text: str, width: int, *, one_column: bool) -> int | None:
    """The index of the last space after which the text before it (the space included) fits
    in `width` columns; a space at index 0 does not count (it would leave an empty piece).
    `one_column`: every character of `text` takes one column."""
    if one_column:  # the last space before column `width`
        index = text.rfind(" ", 1, width)
        return None if index == -1 else index
    found, used = None, 0
    for index, char in enumerate(text):
        used += _char_columns(char)
        if used > width:
            break
        if char == " " and index > 0:
            found = index
    return found


def _stuffed(line: str) -> str:
    return " " + line if line.startswith((" ", ">", "From ")) else line


def _columns(text: str) -> int:
    return sum(_char_columns(char) for char in text)


def _one_column(text: str) -> bool:
    """No wide characters and no combining marks in `text`: only its few non-ASCII
    characters, if any, are looked up."""
    return text.isascii() or all(_char_columns(char) == 1
                                 for char in _NOT_ASCII.findall(text))


def _char_columns(char: str) -> int:
    """Wide (CJK) characters take two columns of a terminal; combining marks none."""
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def unflowed(text: str) -> str:
    """Format=flowed (DelSp=No) `text` as its reader sees it: each paragraph one line,
    space-stuffing removed, quotes kept with their ">" marks (RFC 3676 4.1-4.5)."""
    out: list[str] = []
    open_depth: int | None = None  # the quote depth of a paragraph still flowing on
    for line in text.replace("\r\n", "\n").rstrip("\n").split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        content = content[1:] if content.startswith(" ") else content
        if open_depth == depth:
            out[-1] += content
        else:
            out.append(">" * depth + (" " if depth and content else "") + content)
        soft = content.endswith(" ") and content != _SIGNATURE_SEPARATOR
        open_depth = depth if soft else None
    return "\n".join(out) + "\n"
