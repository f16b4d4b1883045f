"""Which thread a message belongs to, and the short references we hand out.

Public API: `find_thread`, `RecentThread`, `Windows`, `linked_ids`, `subject_ref`,
`normalize_subject`, `thread_index_key`, `make_ref`, `REF_ALPHABET`.

The service looks the candidate ids and the customer's recent threads up in the
store and passes what it found in; nothing here touches the store.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

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


@dataclass(frozen=True)
class RecentThread:
    """One of the customer's recent threads, as the store returns them, newest first."""

    id: str
    subject_key: str
    created_at: datetime
    resolved: bool = False


@dataclass(frozen=True)
class Windows:
    same_subject: timedelta
    burst: timedelta


def find_thread(message: InboundMessage, *, known: Mapping[str, str], ref_owner: str | None,
                customer: str, agents: frozenset[str], recent: Sequence[RecentThread],
                windows: Windows, now: datetime) -> tuple[str | None, str]:
    """The thread `message` continues and how we know, or (None, "").

    `known` maps Message-IDs and Thread-Index keys we stored to their threads;
    `ref_owner` is the customer of the thread named by the subject reference.
    Never by subject alone across different senders: `recent` holds only this
    customer's threads.
    """
    for mid in linked_ids(message):
        if mid in known:
            return known[mid], "it answers a message of that thread"
    ref = subject_ref(message.subject)
    # A guessed reference must not join a stranger's thread.
    if ref is not None and ref_owner is not None and customer in (ref_owner, *agents):
        return ref, "its subject carries the thread reference"
    index = thread_index_key(message.header("thread-index"))
    if index is not None and index in known:
        return known[index], "Outlook's Thread-Index names the same conversation"
    key = normalize_subject(message.subject)
    for thread in recent:
        if key and thread.subject_key == key and not thread.resolved \
                and thread.created_at >= now - windows.same_subject:
            return thread.id, "the same customer wrote again with the same subject"
    if recent and recent[0].created_at >= now - windows.burst:
        return recent[0].id, "the same customer wrote again moments after"
    return None, ""
