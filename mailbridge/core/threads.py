"""Which thread a message belongs to, and the short references we hand out.

Public API: `linked_ids`, `subject_ref`, `make_ref`, `REF_ALPHABET`.

The service looks the candidate ids up in the store and passes what it found
back in; nothing here touches the store.
"""

from __future__ import annotations

import base64
import binascii
import re

from mailbridge.core.model import InboundMessage

REF_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
"""Upper-case letters and digits without the look-alikes 0/O, 1/I."""
REF_LENGTH = 6
_REF_IN_SUBJECT = re.compile(r"\[#([A-Z2-9]{6})\]")


def linked_ids(message: InboundMessage) -> tuple[str, ...]:
    """Message-IDs this message answers, most direct first, without repeats."""
    seen: dict[str, None] = {}
    for mid in (*message.in_reply_to, *reversed(message.references)):
        seen.setdefault(mid, None)
    return tuple(seen)


def subject_ref(subject: str) -> str | None:
    """The thread reference we put in our subjects, e.g. "[#K7M2QD]", if present."""
    match = _REF_IN_SUBJECT.search(subject)
    return match.group(1) if match else None


def make_ref(random_bytes: bytes) -> str:
    """A reference of REF_LENGTH characters from at least REF_LENGTH random bytes."""
    if len(random_bytes) < REF_LENGTH:
        raise ValueError(f"need {REF_LENGTH} random bytes, got {len(random_bytes)}")
    return "".join(REF_ALPHABET[b % len(REF_ALPHABET)] for b in random_bytes[:REF_LENGTH])


# Reply and forward prefixes of the common mail clients, in several languages:
# Re, Aw (de), Sv (sv/da/no), Antw (nl), Vs (fi), Odp (pl), Ynt (tr), Rif/R (it),
# Fwd/Fw, Wg (de), Tr (fr), Doorst (nl), Rv (es), Enc (pt), Vl (fi), Pd (pl).
_PREFIX = re.compile(
    r"^\s*(?:re|aw|sv|antw|vs|odp|ynt|rif|r|fwd?|wg|tr|doorst|rv|enc|vl|pd)"
    r"\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*", re.IGNORECASE)
_ANY_REF = re.compile(r"\[#[A-Z2-9]{6}\]")


def normalize_subject(subject: str) -> str:
    """The subject without reply/forward prefixes, our reference, case or extra spaces."""
    text = _ANY_REF.sub(" ", subject)
    while True:
        stripped = _PREFIX.sub("", text, count=1)
        if stripped == text:
            break
        text = stripped
    return " ".join(text.split()).casefold()


def thread_index_key(value: str | None) -> str | None:
    """Outlook's conversation key: the first 22 bytes of the base64 Thread-Index.

    A reply's Thread-Index is its parent's plus five bytes, so the first 22
    (a FILETIME and a GUID) name the conversation. None when absent or invalid.
    """
    if not value:
        return None
    try:
        raw = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) < 22:
        return None
    return "thread-index:" + raw[:22].hex()
