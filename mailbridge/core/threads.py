"""Which thread a message belongs to, and the short references we hand out.

Public API: `linked_ids`, `subject_ref`, `make_ref`, `REF_ALPHABET`.

The service looks the candidate ids up in the store and passes what it found
back in; nothing here touches the store.
"""

from __future__ import annotations

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
