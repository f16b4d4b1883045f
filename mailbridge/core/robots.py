"""Mail that software wrote, recognised by its structure, its senders and its words.

Public API: `REPORT_TYPES`, `ATTACHED_TYPES`, `report_part(message)`, `returned_original
(message)`, `system_senders(message)`, `wording(message, *, in_thread) -> Wording | None`,
`calendar_reply(message) -> str | None`, `Wording`.

`mailbridge.core.rules` turns these into named rules. The weighing of words works so:

- a set form of mail software at the start of the subject ("Undeliverable:", "Automatic
  reply:", `mailbridge.core.phrases`) weighs 2; a hint ("Delivery failure", "Out of office")
  or a phrase in the sender's own words weighs 1; each of an attached original message, a
  delivery report's field or SMTP reply in the text and a mail system's display name ("Mail
  Delivery System") weighs 1; a statement of absence ("I am out of the office") counts only
  beside a set form or such evidence;
- mail is a robot's when it has a phrase, weighs 2 or more, and has evidence beyond its
  text (a person's text can quote anything);
- a person's signs raise the bar to 3: a question in the sender's own words, or a reply in
  a thread we know unless its subject starts with a set form (a person's reply starts with
  "Re:"). So "Fwd: Returned mail" with a question above the bounce, or a customer's "Re:
  Undeliverable" in their thread, is a person's; "Abwesenheitsnotiz: Re: ..." in the thread
  is still a robot's.

A challenge-response request ("click the link to be added to my approved senders") is a
robot's on its words alone: people do not write that, and it is the answer of software.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from mailbridge.core import phrases, senders
from mailbridge.core.model import InboundMessage

REPORT_TYPES = frozenset({
    "multipart/report", "message/delivery-status", "message/global-delivery-status",
    "message/disposition-notification", "message/global-disposition-notification",
    "message/feedback-report"})
"""Report parts (RFC 6522, 3464, 6533, 8098, 5965): only mail software writes them."""
ATTACHED_TYPES = frozenset({"message/rfc822", "text/rfc822-headers", "message/rfc822-headers",
                            "message/global", "message/global-headers"})
"""A message, or its header, returned inside another."""
CALENDAR_REPLIES = frozenset({"reply", "counter"})
"""iTIP methods of an attendee's answer to an invitation (RFC 5546 section 1.4)."""

_QUESTION = re.compile(r"[?？¿]")
_SENTENCE = re.compile(r"[.!?。！？\n]+")
_CALENDAR_WORDS = re.compile(
    r"accept|declin|tentativ|invitation|calendar|meeting|event|organi[sz]er|\bwhen\b|\bwhere\b"
    r"|joining|reply for|google|outlook|https?://|angenommen|abgelehnt|vorbehalt|einladung"
    r"|besprechung|termin|refus|provisoire|r[ée]union|rechaz|provisional|invitaci[óo]n|reuni[óo]n"
    r"|accettat|rifiutat|provvisori|invito|riunione|aceit|recusad|convite|geaccepteerd"
    r"|geweigerd|voorlopig|uitnodiging|vergadering|承諾|辞退|会議|予定|招待", re.IGNORECASE)
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Wording:
    """Mail recognised by its words: which kind (`phrases.DELIVERY`, ...) and why."""

    kind: str
    reason: str


def report_part(message: InboundMessage) -> str | None:
    """The first report type in the message's own structure, or None."""
    return next((t for t in (message.content_type, *message.parts) if t in REPORT_TYPES), None)


def returned_original(message: InboundMessage) -> str | None:
    """The type of a message or header attached to this one (message/rfc822 ...), or None;
    None for a digest, whose messages are a list's posts, not one returned."""
    if "multipart/digest" in (message.content_type, *message.parts):
        return None
    return next((t for t in message.parts if t in ATTACHED_TYPES), None)


def system_senders(message: InboundMessage, *,
                   answer_reply_to: bool = False) -> list[tuple[str, str, str]]:
    """(field, address, kind) for each of From, Sender and Return-Path that is mail
    software's. A From the parser could not read is taken as written. A no-reply From or
    Sender that writes for a person of another domain named in Reply-To (a web form) does
    not count, nor, when acknowledgements go to Reply-To (`answer_reply_to`), a no-reply
    envelope sender of such a form."""
    found: list[tuple[str, str, str]] = []
    relay = senders.form_relay(message)
    fields = [("From", a.addr) for a in message.from_]
    if not message.from_:
        fields += [("From", senders.raw_address(v)) for v in message.header_all("from")]
    if message.sender is not None:
        fields.append(("Sender", message.sender.addr))
    if message.return_path:
        fields.append(("Return-Path", message.return_path))
    for field, address in fields:
        kind = senders.system_kind(address)
        relayed = relay and kind == senders.NO_REPLY and (
            field != "Return-Path" or answer_reply_to)
        if kind is None or relayed:
            continue
        found.append((field, address, kind))
    return found


def _system_display_name(message: InboundMessage) -> str:
    names = [a.name for a in message.from_]
    if not message.from_:
        names += [v.partition("<")[0].strip().strip('"') for v in message.header_all("from")]
    return next((n for n in names if senders.system_name(n)), "")


def _evidence(message: InboundMessage, own: str,
              found: phrases.Phrase | None) -> list[tuple[int, str, bool]]:
    """(weight, description, beyond the text) of each sign of software besides phrases."""
    signs: list[tuple[int, str, bool]] = []
    attached = returned_original(message)
    if attached:
        signs.append((1, f"a returned message attached ({attached})", True))
    name = _system_display_name(message)
    if name:
        signs.append((1, f"sender name {name!r}", True))
    if found is None or found.kind in (phrases.DELIVERY, phrases.COMPLAINT):
        diagnostic = phrases.diagnostics(own)
        if diagnostic:
            signs.append((1, f"delivery diagnostics {diagnostic[:40]!r}", False))
    return signs


@functools.lru_cache(maxsize=8)
def wording(message: InboundMessage, *, in_thread: bool) -> Wording | None:
    """Whether the words of the message, with what backs them, are those of software
    (a delivery failure, an automatic reply, a complaint report, a challenge request).

    Kept for the last few messages: three rules (auto_reply, bounce_text, challenge) and
    `core.bounces` ask it of the same message (about 70 µs a time)."""
    own = phrases.own_text(message.text)
    body = phrases.text_phrase(own)
    if body is not None and body.kind == phrases.CHALLENGE:
        return Wording(phrases.CHALLENGE, f"its text asks the sender to prove they are a "
                                          f"person: {body.words!r}")
    subject = phrases.subject_phrase(message.subject)
    if subject is None and body is None:
        return None
    signs: list[tuple[int, str, bool]] = []
    if subject is not None:
        signs.append((2 if subject.decisive else 1, f"subject {subject.words!r}", True))
    if body is not None:
        signs.append((1, f"text {body.words!r}", False))
    evidence = _evidence(message, own, subject or body)
    signs += evidence
    if body is not None and body.weak and not evidence and not (subject and subject.decisive):
        return None  # "Out of office" and "I am away": a person may write both
    weight = sum(w for w, _, _ in signs)
    # A subject that begins with a set form ("Undeliverable:", "Automatic reply:") is
    # software's, in a thread or not and whatever its text asks ("Urgent? Call ..."): a
    # person replying writes "Re: ...", a person forwarding "Fwd: ...". Otherwise a thread or
    # a question in the sender's own words asks for more evidence.
    set_form = subject is not None and subject.decisive
    person = not set_form and (in_thread or bool(_QUESTION.search(own[:phrases.OPENING])))
    if weight < (3 if person else 2) or not any(beyond for _, _, beyond in signs):
        return None
    kind = (subject or body).kind  # type: ignore[union-attr]
    if subject is not None and subject.kind == phrases.CHALLENGE:
        kind = phrases.CHALLENGE
    return Wording(kind, f"it reads as a {kind}: " + ", ".join(d for _, d, _ in signs))


def calendar_reply(message: InboundMessage) -> str | None:
    """Why the message is an answer of calendar software to an invitation (iTIP REPLY or
    COUNTER) with no words of a person beside it; None otherwise."""
    method = message.calendar_method.lower()
    if method not in CALENDAR_REPLIES:
        return None
    own = phrases.own_text(message.text)
    words = [w for s in _SENTENCE.split(own) if not _CALENDAR_WORDS.search(s)
             for w in _WORD.findall(s)]
    if len(words) > 2:
        return None
    return (f"it is a calendar reply (METHOD:{method.upper()}) with no words of a person: "
            "calendar software answered an invitation")
