"""Whether a robot's message says our own mail failed, and which of our mail it names.

Public API: `KINDS`, `failure_kind(message, verdict) -> str | None`,
`named(message) -> Named`.

A bounce or complaint about one of our acknowledgements is news for its thread: the
customer's address may be broken. It is never acknowledged (the robot rules of
`mailbridge.core.rules` have said no before this is asked); the service records it on the
thread whose mail it names (`mailbridge.daemon.bounces`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailbridge.core import phrases, robots, rules, senders, threads
from mailbridge.core.model import InboundMessage, Verdict

KINDS = ("bounce", "complaint")
"""A delivery failure (a bounce, a DSN with Action: failed), or a spam complaint."""
MAX_NAMED_IDS = 20
"""Message-IDs read from a bounce's text, at most."""

_NO_FAILURE_RULES = frozenset({"auto_reply", "challenge", "calendar_reply", "list", "bulk"})
"""Automatic mail that says the address works: answers of software, list and bulk mail."""
_WORDED = {phrases.DELIVERY: "bounce", phrases.COMPLAINT: "complaint"}
_COMPLAINT = re.compile(r"\b(?:abuse|complaint|spam report|feedback report)\b", re.IGNORECASE)
_ID = re.compile(r"<[^<>\s@]{1,200}@[^<>\s@]{1,255}>")
_REPORT_TYPE = re.compile(r"report-type\s*=\s*\"?([a-z-]+)", re.IGNORECASE)


@dataclass(frozen=True)
class Named:
    """What a robot's message names of ours: Message-IDs (the returned message's first)
    and thread references ("K7M2QD" for "[#K7M2QD]")."""

    ids: tuple[str, ...]
    refs: tuple[str, ...]


def failure_kind(message: InboundMessage, verdict: Verdict) -> str | None:
    """"bounce" or "complaint" when automatic mail reports a failure of mail we sent; None
    for anything else: a person, a read receipt, a delay or success notice, an out-of-office
    (the address works), a challenge, a calendar answer, list or bulk mail."""
    if verdict.reply or verdict.rule not in rules.AUTOMATIC_RULES \
            or verdict.rule in _NO_FAILURE_RULES:
        return None
    types = (message.content_type, *message.parts)
    report, report_type = message.report, _report_type(message)
    if "message/feedback-report" in types or report_type == "feedback-report":
        return "complaint"
    if report is not None and report.actions:
        return "bounce" if "failed" in report.actions else None
    if report_type == "delivery-status" or "message/delivery-status" in types \
            or message.header("x-failed-recipients") is not None:
        return "bounce"
    if report_type or "message/disposition-notification" in types:
        return None  # a read receipt or another kind of report
    words = robots.wording(message, in_thread=False)
    if words is not None and words.kind in _WORDED:
        return _WORDED[words.kind]
    if robots.returned_original(message) or (report is not None and report.returned):
        # Our mail sent back without RFC 3464: older MTAs, gateways, providers' abuse desks.
        return "complaint" if _COMPLAINT.search(message.subject) or _from_abuse(message) \
            else "bounce"
    if any(kind != senders.NO_REPLY for _, _, kind in robots.system_senders(message)):
        return "bounce"  # a bounce in plain text from MAILER-DAEMON or postmaster
    return None


def named(message: InboundMessage) -> Named:
    """The Message-IDs and thread references `message` names, most telling first: the
    returned message's header, then In-Reply-To and References, then the text."""
    report = message.report
    ids: dict[str, None] = {}
    refs: dict[str, None] = {}
    if report is not None:
        for mid in (report.message_id, *report.references):
            if mid:
                ids.setdefault(mid, None)
    for mid in (*message.in_reply_to, *reversed(message.references),
                *_ID.findall(message.text)[:MAX_NAMED_IDS]):
        ids.setdefault(mid, None)
    for text in (report.subject if report else "", message.subject, message.text):
        ref = threads.subject_ref(text)
        if ref:
            refs.setdefault(ref, None)
    return Named(tuple(ids), tuple(refs))


def _report_type(message: InboundMessage) -> str:
    if message.content_type != "multipart/report":
        return ""
    match = _REPORT_TYPE.search(message.header("content-type") or "")
    return match.group(1).lower() if match else ""


def _from_abuse(message: InboundMessage) -> bool:
    return any(senders.local_part(a.addr).startswith("abuse") for a in message.from_)
