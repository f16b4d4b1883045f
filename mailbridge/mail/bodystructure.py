"""Which part of a message holds its text: `first_text_section(bodystructure) -> TextSection`.

This module owns reading an imapclient BODYSTRUCTURE, so the IMAP watcher fetches one text
part instead of the whole message. Like the rest of `mailbridge.mail` it never raises, and
its walk is bounded by `MAX_PARTS` parts and `MAX_DEPTH` levels. Public API (re-exported by
`mailbridge.mail.parse`):

- `first_text_section(bodystructure)` and `TextSection`: which part to fetch.
- `choose(candidates)`: the first "plain" item, else the first "html" one; `parse` chooses
  among the parts of a complete message with it too.
- `imap_parts(bodystructure) -> Structure`: the content types of the parts and the method
  of the first calendar part, as `mailbridge.mail.structure` reads them from a whole message.
- `MAX_PARTS`, `MAX_DEPTH`: the bounds of every walk over a MIME structure.
- `imap_leaves(structure)`, `imap_children(node)`, `atom(value)`: a BODYSTRUCTURE's
  single parts with their part numbers, a node's parts, one of its values as lower-case
  text; `mime_leaves(msg)`: the single parts of a parsed message (`mailbridge.mail.parse`
  and `mailbridge.mail.reports` walk them too).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email.message import Message
from typing import TypeVar

MAX_PARTS = 500
MAX_DEPTH = 30

_T = TypeVar("_T")


@dataclass(frozen=True)
class Structure:
    """The content types of a message's parts below the top level, in order, without the
    parts of attached messages; and the iTIP method of its first text/calendar part."""

    parts: tuple[str, ...] = ()
    calendar_method: str = ""


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


def first_text_section(bodystructure: object) -> TextSection | None:
    """The first text/plain part that is not an attachment, else the first text/html.

    `bodystructure` is what imapclient returns for BODYSTRUCTURE: a BodyData
    whose first item is the list of parts for a multipart, or the single part
    (type, subtype, params, id, description, encoding, size, ...) with bytes
    values. Parts of attached messages (message/rfc822) are not searched.
    Returns None when there is no such part or the structure makes no sense.
    """
    try:
        return choose(_imap_text_parts(bodystructure))
    except Exception:
        return None


def choose(candidates: Sequence[tuple[str, _T]]) -> _T | None:
    """The item of the first "plain" candidate, else of the first "html" one, else None."""
    for wanted in ("plain", "html"):
        for subtype, item in candidates:
            if subtype == wanted:
                return item
    return None


def imap_parts(bodystructure: object) -> Structure:
    """The structure of a message from its imapclient BODYSTRUCTURE; empty when it makes no
    sense. The calendar method is the part's Content-Type `method` parameter, which RFC 6047
    section 2.4 requires."""
    try:
        return _imap_structure(bodystructure)
    except Exception:
        return Structure()


# --- IMAP BODYSTRUCTURE ------------------------------------------------------------


def _imap_structure(structure: object) -> Structure:
    parts: list[str] = []
    method = ""
    stack: list[tuple[object, int]] = [(structure, 0)]
    while stack and len(parts) < MAX_PARTS:
        node, depth = stack.pop()
        if not isinstance(node, tuple | list) or not node:
            continue
        children = imap_children(node)
        if children is not None:
            after = 1 if isinstance(node[0], list) else len(children)
            if depth:
                parts.append(f"multipart/{atom(node[after]) if len(node) > after else ''}")
            if depth < MAX_DEPTH:
                stack.extend((child, depth + 1) for child in reversed(children))
            continue
        ctype = f"{atom(node[0])}/{atom(node[1])}" if len(node) > 1 else ""
        if depth:
            parts.append(ctype)
        if ctype == "text/calendar" and not method and len(node) > 2:
            method = _param(node[2], "method")
    return Structure(tuple(parts), method)


def _imap_text_parts(structure: object) -> list[tuple[str, TextSection]]:
    found: list[tuple[str, TextSection]] = []
    for node, section in imap_leaves(structure):
        part = _imap_text_part(node, section or "1")
        if part is not None:
            found.append((part.subtype, part))
    return found


def imap_leaves(structure: object) -> Iterator[tuple[Sequence[object], str]]:
    """Each part of a BODYSTRUCTURE that is no multipart, with its IMAP part number ("" for
    a single-part message), in order; bounded by MAX_PARTS and MAX_DEPTH."""
    stack: list[tuple[object, str, int]] = [(structure, "", 0)]
    visited = 0
    while stack and visited < MAX_PARTS:
        node, section, depth = stack.pop()
        visited += 1
        if not isinstance(node, tuple | list) or not node:
            continue
        children = imap_children(node)
        if children is None:
            yield node, section
        elif depth < MAX_DEPTH:
            prefix = f"{section}." if section else ""
            numbered = [(child, f"{prefix}{i}") for i, child in enumerate(children, 1)]
            stack.extend((child, number, depth + 1) for child, number in reversed(numbered))


def mime_leaves(msg: Message) -> Iterator[Message]:
    """Each part of a parsed message that is no multipart, in order (the message itself when
    it is single-part); bounded by MAX_PARTS and MAX_DEPTH."""
    stack: list[tuple[Message, int]] = [(msg, 0)]
    visited = 0
    while stack and visited < MAX_PARTS:
        part, depth = stack.pop()
        visited += 1
        if not part.get_content_type().lower().startswith("multipart/"):
            yield part
            continue
        children = part.get_payload()
        if isinstance(children, list) and depth < MAX_DEPTH:
            stack.extend((c, depth + 1) for c in reversed(children) if isinstance(c, Message))


def imap_children(node: Sequence[object]) -> Sequence[object] | None:
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
    if len(node) < 7 or atom(node[0]) != "text" or atom(node[1]) not in ("plain", "html"):
        return None
    disposition = node[9] if len(node) > 9 else None
    if (
        isinstance(disposition, tuple | list)
        and disposition
        and atom(disposition[0]) == "attachment"
    ):
        return None
    return TextSection(
        section=section,
        encoding=atom(node[5]) or "7bit",
        charset=_param(node[2], "charset", lower=False) or None,
        subtype=atom(node[1]),
        size=node[6] if isinstance(node[6], int) else 0,
    )


def _param(params: object, name: str, *, lower: bool = True) -> str:
    """The value of parameter `name` in a BODYSTRUCTURE parameter list, or ""."""
    if not isinstance(params, tuple | list):
        return ""
    keys = [atom(item) for item in params[0::2]]
    if name not in keys:
        return ""
    value = params[keys.index(name) * 2 + 1]
    return atom(value) if lower else _text(value)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return value if isinstance(value, str) else ""


def atom(value: object) -> str:
    return _text(value).strip().lower()
