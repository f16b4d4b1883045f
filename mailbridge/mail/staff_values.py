"""What staff mail shows, in the desk's language: notices (nudge, escalation, hand-over)
and the shift digest, as plain, cleaned values for their templates.

Public API: `notice_values(ctx, now, language, phrases)`, `digest_values(ctx, now, language,
phrases)`, `span(delta, language)` and `STAFF_WORDS` (the words Python puts into subjects
and values, per language; a language without an entry writes English).

The customer's text reaches a template only as a value (`quote`, already "> " lines);
templates print it, never evaluate it, and the HTML templates escape it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from mailbridge.core.eta import Phrases, describe_due, describe_time, format_iso
from mailbridge.core.model import DigestContext, NoticeContext
from mailbridge.mail.headers import MAX_SUBJECT, clean
from mailbridge.mail.mime import bare_ref

STAFF_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "first_response": "first response", "next_response": "next response",
        "periodic_update": "status update", "resolution": "resolution",
        "overdue": "{deadline} overdue", "due_in": "{deadline} due in {span}",
        "handover": "now yours, {status}", "no_subject": "(no subject)",
        "digest": "Your open threads: {count}", "awaiting_agent": "awaiting you",
        "awaiting_customer": "awaiting the customer", "nothing_due": "nothing due",
        "why_assigned": "assigned to you by {by}", "why_new": "a new thread",
        "why_shift": "handed over from {by}, who is away",
        "days": "{n} d", "hours": "{n} h", "minutes": "{n} min", "under": "under 1 min",
    },
    "de": {
        "first_response": "Erstantwort", "next_response": "nächste Antwort",
        "periodic_update": "Zwischenstand", "resolution": "Lösung",
        "overdue": "{deadline} überfällig", "due_in": "{deadline} fällig in {span}",
        "handover": "jetzt bei dir, {status}", "no_subject": "(kein Betreff)",
        "digest": "Deine offenen Anfragen: {count}", "awaiting_agent": "wartet auf dich",
        "awaiting_customer": "wartet auf den Kunden", "nothing_due": "nichts fällig",
        "why_assigned": "{by} hat sie dir zugewiesen", "why_new": "eine neue Anfrage",
        "why_shift": "übernommen von {by}, nicht im Dienst",
        "days": "{n} T", "hours": "{n} Std.", "minutes": "{n} Min.", "under": "unter 1 Min.",
    },
}


def _words(language: str) -> dict[str, str]:
    return STAFF_WORDS.get(language.split("-", maxsplit=1)[0], STAFF_WORDS["en"])


def span(delta: timedelta, language: str = "en") -> str:
    """A duration for people, rounded down: "under 1 min", "25 min", "4 h 5 min", "2 d 3 h"."""
    words = _words(language)
    minutes = max(int(delta.total_seconds() // 60), 0)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = [(days, "days"), (hours, "hours"), (minutes, "minutes")]
    shown = [words[unit].format(n=n) for n, unit in parts if n]
    if days:
        shown = shown[:2] if hours else shown[:1]
    return " ".join(shown) or words["under"]


def _deadline(name: str, words: dict[str, str]) -> str:
    return words.get(name) or clean(name.replace("_", " "), max_len=40)


def notice_values(ctx: NoticeContext, now: datetime, language: str,
                  phrases: Phrases) -> dict[str, Any]:
    """What staff notices may use: plain, cleaned strings (and one flag, `overdue`)."""
    words = _words(language)
    ref = bare_ref(ctx.thread_ref)
    deadline = _deadline(ctx.deadline, words)
    overdue = ctx.due <= now
    status = words["overdue"].format(deadline=deadline) if overdue else \
        words["due_in"].format(deadline=deadline, span=span(ctx.due - now, language))
    if ctx.kind == "handover":
        status = words["handover"].format(status=status)
    head = f"[#{ref}] {status}: " if ref else f"{status}: "
    subject = clean(ctx.subject, max_len=200)
    room = MAX_SUBJECT - len(head)
    return {
        "to_name": clean(ctx.to_name, max_len=80),
        "thread_ref": ref,
        "ref_tag": f"[#{ref}]",
        "notice_subject": head + (clean(subject, max_len=room) or words["no_subject"]),
        "subject": subject,
        "customer_address": clean(ctx.customer_address, max_len=320),
        "policy": clean(ctx.policy, max_len=80),
        "priority": clean(ctx.priority, max_len=40),
        "deadline": deadline,
        "overdue": overdue,
        "due_words": describe_due(ctx.due, timezone=ctx.timezone, now=now, language=phrases),
        "due_iso": format_iso(ctx.due, timezone=ctx.timezone),
        "due_span": span(abs(ctx.due - now), language),
        "received_words": describe_time(ctx.received, timezone=ctx.timezone, now=now,
                                        language=phrases),
        "received_ago": span(now - ctx.received, language),
        "agent_name": clean(ctx.agent.name, max_len=80),
        "agent_email": clean(ctx.agent.email, max_len=320),
        "support_name": clean(ctx.support_name, max_len=80),
        "support_address": clean(ctx.support_address, max_len=320),
        "timezone": ctx.timezone,
        "quote": "\n".join(clean(line, max_len=400) for line in ctx.quote.splitlines()),
        "why": _why(ctx, words),
    }


def _why(ctx: NoticeContext, words: dict[str, str]) -> str:
    """Why a hand-over's thread is now theirs, in words; "" when not a hand-over."""
    pattern = words.get(f"why_{ctx.why}", "") if ctx.why else ""
    return clean(pattern.format(by=clean(ctx.by, max_len=80)), max_len=300)


def digest_values(ctx: DigestContext, now: datetime, language: str,
                  phrases: Phrases) -> dict[str, Any]:
    """What the digest templates may use: the threads as cleaned rows, times in the agent's
    zone."""
    words = _words(language)
    rows = []
    for entry in ctx.entries:
        ref = bare_ref(entry.thread_ref)
        due = entry.due
        rows.append({
            "ref_tag": f"[#{ref}]",
            "customer": clean(entry.customer, max_len=80),
            "subject": clean(entry.subject, max_len=120) or words["no_subject"],
            "state": words.get(entry.state) or clean(entry.state, max_len=40),
            "due_words": describe_due(due, timezone=ctx.timezone, now=now, language=phrases)
            if due is not None else words["nothing_due"],
            "due_iso": format_iso(due, timezone=ctx.timezone) if due is not None else "",
            "overdue": due is not None and due <= now,
        })
    return {
        "to_name": clean(ctx.to_name, max_len=80),
        "thread_ref": "",
        "notice_subject": words["digest"].format(count=len(rows)),
        "threads": rows,
        "support_name": clean(ctx.support_name, max_len=80),
        "support_address": clean(ctx.support_address, max_len=320),
        "timezone": ctx.timezone,
        "shift_words": describe_time(ctx.shift_start, timezone=ctx.timezone, now=now,
                                     language=phrases),
    }
