"""The report parts of a received message: what a bounce says and which message it returns.

This module owns reading the parts a delivery report (RFC 3464), a feedback report
(RFC 5965) or an older MTA's bounce carries besides its text: the per-recipient `Action`
fields of a message/delivery-status part, and the header of the returned message
(message/rfc822 or message/global: its header; text/rfc822-headers: the headers alone).
The daemon learns from them that one of our acknowledgements bounced. Never raises; the
walk is bounded by `MAX_PARTS` and `MAX_DEPTH`, the parts read by `MAX_REPORT_BYTES`.
Public API:

- `report_of(msg) -> Report | None`: from a complete message parsed with compat32.
- `report_sections(bodystructure) -> ReportSections`: which parts the IMAP watcher fetches
  (`ReportSections.items`, then `ReportSections.read(fetched)`).
- `read_report(status, returned) -> Report | None`: from the raw bytes of those parts.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32

from mailbridge.core.model import InboundMessage, Report
from mailbridge.core.robots import ATTACHED_TYPES
from mailbridge.mail.bodystructure import MAX_PARTS, atom, imap_leaves, mime_leaves
from mailbridge.mail.defects import Defects
from mailbridge.mail.fields import build_message
from mailbridge.mail.lenient import mend_header_block

MAX_REPORT_BYTES = 16 * 1024
"""Bytes of a delivery-status part or of a returned header that are read."""
_STATUS = ("message/delivery-status", "message/global-delivery-status")
_RETURNED_MESSAGE = frozenset({"message/rfc822", "message/global"})
_RETURNED_HEADERS = ATTACHED_TYPES - _RETURNED_MESSAGE
"""text/rfc822-headers and its kin: a returned message's header alone."""
_ACTION = re.compile(rb"^action[ \t]*:[ \t]*([a-z-]+)", re.IGNORECASE | re.MULTILINE)


def report_of(msg: Message) -> Report | None:
    """The report parts of a complete message; None when it has none."""
    try:
        status, returned = _find_parts(msg)
        actions = _actions_of(status) if status is not None else ()
        inner = _returned_of(returned) if returned is not None else None
        return _report(actions, inner)
    except Exception:
        return None


def read_report(status: bytes | None, returned: bytes | None) -> Report | None:
    """The report from the raw delivery-status part and the returned header, as fetched."""
    try:
        actions = _actions(status) if status else ()
        inner = _header_message(returned) if returned else None
        return _report(actions, inner)
    except Exception:
        return None


@dataclass(frozen=True)
class ReportSections:
    """Where a message's report parts are, as IMAP part numbers ("" for none)."""

    status: str = ""
    status_encoding: str = ""
    returned: str = ""
    returned_encoding: str = ""
    returned_is_message: bool = False

    @property
    def items(self) -> list[str]:
        """The FETCH items that get the parts, each bounded."""
        found = []
        if self.status:
            found.append(f"BODY.PEEK[{self.status}]<0.{MAX_REPORT_BYTES}>")
        if self.returned_is_message:
            found.append(f"BODY.PEEK[{self.returned}.HEADER]")
        elif self.returned:
            found.append(f"BODY.PEEK[{self.returned}]<0.{MAX_REPORT_BYTES}>")
        return found

    def read(self, fetched: Mapping[bytes, object]) -> Report | None:
        """The report from a FETCH response of `items` (the keys as imapclient gives them)."""
        status = _value(fetched, f"BODY[{self.status}]") if self.status else None
        key = f"BODY[{self.returned}.HEADER]" if self.returned_is_message \
            else f"BODY[{self.returned}]"
        returned = _value(fetched, key) if self.returned else None
        return read_report(_decoded(status, self.status_encoding),
                           _decoded(returned, self.returned_encoding)[:MAX_REPORT_BYTES]
                           if returned is not None else None)


def report_sections(bodystructure: object) -> ReportSections:
    """The report parts of an imapclient BODYSTRUCTURE; empty when it has none."""
    try:
        return _imap_sections(bodystructure)
    except Exception:
        return ReportSections()


# --- a complete message -------------------------------------------------------------


def _find_parts(msg: Message) -> tuple[Message | None, Message | None]:
    status = returned = None
    for part in mime_leaves(msg):
        ctype = part.get_content_type().lower()
        if ctype in _STATUS and status is None:
            status = part
        elif (ctype in _RETURNED_MESSAGE or ctype in _RETURNED_HEADERS) and returned is None \
                and part is not msg:
            returned = part
        if status is not None and returned is not None:
            break
    return status, returned


def _actions_of(part: Message) -> tuple[str, ...]:
    payload = part.get_payload()
    if isinstance(payload, list):  # compat32 parses each block of fields as a Message
        found = [str(block.get("action", "")).strip().lower() for block in payload
                 if isinstance(block, Message)]
        return tuple(a.split()[0] for a in found if a)[:MAX_PARTS]
    return _actions(_part_bytes(part))


def _returned_of(part: Message) -> InboundMessage | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        inner: Message = payload[0]
        return _fields(inner)
    return _header_message(_part_bytes(part))


def _part_bytes(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    return payload[:MAX_REPORT_BYTES] if isinstance(payload, bytes) else b""


# --- raw parts ----------------------------------------------------------------------


def _actions(data: bytes) -> tuple[str, ...]:
    return tuple(m.lower().decode("ascii") for m in _ACTION.findall(data[:MAX_REPORT_BYTES]))


def _header_message(data: bytes) -> InboundMessage | None:
    block = mend_header_block(data[:MAX_REPORT_BYTES], Defects())
    return _fields(BytesParser(policy=compat32).parsebytes(block, headersonly=True))


def _fields(msg: Message) -> InboundMessage:
    return build_message(msg, text="", size=0, defects=Defects())


def _report(actions: Sequence[str], inner: InboundMessage | None) -> Report | None:
    if not actions and inner is None:
        return None
    if inner is None:
        return Report(actions=tuple(actions))
    return Report(actions=tuple(actions), returned=True, message_id=inner.message_id,
                  references=(*inner.in_reply_to, *inner.references), subject=inner.subject)


def _value(fetched: Mapping[bytes, object], prefix: str) -> bytes | None:
    """The value of the FETCH item whose key begins with `prefix` ("BODY[2]" for BODY[2]<0>)."""
    wanted = prefix.encode("ascii")
    for key, value in fetched.items():
        if isinstance(key, bytes) and key.startswith(wanted):
            return value if isinstance(value, bytes) else None
    return None


def _decoded(data: bytes | None, encoding: str) -> bytes:
    if data is None:
        return b""
    try:
        if encoding == "base64":
            return base64.b64decode(data, validate=False)
        if encoding == "quoted-printable":
            return quopri.decodestring(data)
    except (binascii.Error, ValueError):
        return b""
    return data


# --- IMAP BODYSTRUCTURE ---------------------------------------------------------------


def _imap_sections(structure: object) -> ReportSections:
    status = returned = ("", "")
    is_message = False
    for node, section in imap_leaves(structure):
        if not section or len(node) < 6:  # a single-part message has no report part to fetch
            continue
        ctype = f"{atom(node[0])}/{atom(node[1])}"
        if ctype in _STATUS and not status[0]:
            status = (section, atom(node[5]))
        elif (ctype in _RETURNED_MESSAGE or ctype in _RETURNED_HEADERS) and not returned[0]:
            returned = (section, atom(node[5]))
            is_message = ctype in _RETURNED_MESSAGE
    return ReportSections(status=status[0], status_encoding=status[1], returned=returned[0],
                          returned_encoding=returned[1] if not is_message else "",
                          returned_is_message=is_message)
