"""The shape of a message: the content types of its parts and the method of its calendar.

Public API: `message_parts(msg) -> Structure`, and from `mailbridge.mail.bodystructure`
`imap_parts(bodystructure) -> Structure` and `Structure`.

The robot rules read what a message is made of (a delivery report, a returned message, a
calendar reply: `mailbridge.core.robots`): `message_parts` from a parsed message,
`imap_parts` from an imapclient BODYSTRUCTURE, so mail read over IMAP, whose parts are never
downloaded, is judged as the same mail read from a file. Both give the types of the parts
below the top level in order, without opening attached messages, and the iTIP method of the
first text/calendar part (its Content-Type `method` parameter, which RFC 6047 section 2.4
requires; a complete message's calendar text when the parameter is missing). Never raises;
walks are bounded by `MAX_PARTS` and `MAX_DEPTH`.
"""

from __future__ import annotations

import re
from email.message import Message

from mailbridge.mail.bodystructure import MAX_DEPTH, MAX_PARTS, Structure, imap_parts

__all__ = ["Structure", "imap_parts", "message_parts"]

_METHOD_LINE = re.compile(r"^METHOD:([A-Za-z-]{1,20})\s*$", re.MULTILINE)
_CALENDAR_PEEK = 8192


def message_parts(msg: Message) -> Structure:
    """The structure of a parsed message (email.message.Message, any policy)."""
    try:
        return _walk_message(msg)
    except Exception:
        return Structure()


def _walk_message(msg: Message) -> Structure:
    parts: list[str] = []
    method = ""
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack and len(parts) < MAX_PARTS:
        part, depth = stack.pop()
        ctype = part.get_content_type().lower()
        if depth:
            parts.append(ctype)
        if ctype == "text/calendar" and not method:
            method = _message_method(part)
        if ctype.startswith("multipart/") and depth < MAX_DEPTH:
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend((c, depth + 1) for c in reversed(children) if isinstance(c, Message))
    return Structure(tuple(parts), method)


def _message_method(part: Message) -> str:
    param = part.get_param("method")
    if isinstance(param, str) and param.strip():
        return param.strip().lower()
    payload = part.get_payload()
    if isinstance(payload, str):
        found = _METHOD_LINE.search(payload[:_CALENDAR_PEEK])
        if found:
            return found.group(1).lower()
    return ""
