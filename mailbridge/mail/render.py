"""Mail we send, from jinja2 templates: complete mail (`Rendered`: its wire bytes) out.

Three kinds: the acknowledgement of a new message, a status update to a
customer still waiting, and internal notices to staff (an escalation when a
deadline passed, a nudge before it does). All share one header builder.

Text from the customer's message is data, never template code: it reaches the
templates only as values (never through `from_string`), the HTML templates are
autoescaped, and every header value goes through `mailbridge.mail.headers`.
Operator-supplied template folders run in jinja2's sandbox, with the packaged
templates as fallback for any file the operator did not override.

Templates are per language, one folder each (`mailbridge.config.languages`): for
language L a template is looked up in the operator's L/, then (for the
default language only) at the top of the operator's folder, where the
template names have always been, then in the packaged L/, then in the
packaged English folder. Customer mail is written in its context's
`language`; staff notices in the default language.

Public API: `Renderer(templates_dir=None, *, default_language="en")` with
`render_ack(...)`, `render_status_update(...)`, `render_notice(...)` and
`languages`, each giving a `Rendered`; `TEMPLATE_NAMES`, the template files an operator folder may
override (`ACK_TEXT`, `ACK_HTML`, ...); `PHRASES_FILE`.
"""

from __future__ import annotations

import binascii
import email
import functools
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import jinja2

from mailbridge.config.languages import DEFAULT_LANGUAGE, template_languages
from mailbridge.core.eta import (
    Phrases,
    describe_due,
    describe_opening,
    describe_promise,
    describe_time,
    format_iso,
)
from mailbridge.core.language import match
from mailbridge.core.model import (
    AckContext,
    Agent,
    FaqLink,
    InboundMessage,
    NoticeContext,
    UpdateContext,
)
from mailbridge.mail import templates
from mailbridge.mail.headers import (
    MAX_REFERENCES,
    MAX_SUBJECT,
    SMTP_POLICY,
    SMTPUTF8_POLICY,
    address_field,
    clean,
    ids_field,
    is_message_id,
    mailbox,
    references_for,
    reply_subject,
    text_field,
)
from mailbridge.mail.templates import PACKAGE_TEMPLATES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rendered:
    """One mail we wrote: the bytes that go out over SMTP, and the message read back from
    them (for tests and tools; parsing costs more than writing, so only on demand)."""

    raw: bytes
    utf8: bool = False
    """The mail needs SMTPUTF8: an address has a non-ASCII local part."""

    def as_bytes(self) -> bytes:
        return self.raw

    @functools.cached_property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(
            self.raw, policy=SMTPUTF8_POLICY if self.utf8 else SMTP_POLICY)
        assert isinstance(parsed, EmailMessage)
        return parsed

    def __getitem__(self, name: str) -> Any:
        """A header of the mail, as `EmailMessage` gives it; None when absent."""
        return self.message[name]

ACK_TEXT, ACK_HTML = "ack.txt.j2", "ack.html.j2"
UPDATE_TEXT, UPDATE_HTML = "update.txt.j2", "update.html.j2"
ESCALATION_TEXT, ESCALATION_HTML = "escalation.txt.j2", "escalation.html.j2"
NUDGE_TEXT, NUDGE_HTML = "nudge.txt.j2", "nudge.html.j2"
TEMPLATE_NAMES: dict[str, tuple[str, str]] = {
    "ack": (ACK_TEXT, ACK_HTML),
    "update": (UPDATE_TEXT, UPDATE_HTML),
    "escalation": (ESCALATION_TEXT, ESCALATION_HTML),
    "nudge": (NUDGE_TEXT, NUDGE_HTML),
}
"""Each kind of mail and its (text, HTML) templates."""
MAX_SIGNATURE_LINES = 12
MAX_FAQ = 3

_DEADLINES = {
    "first_response": "first response",
    "next_response": "next response",
    "periodic_update": "status update",
    "resolution": "resolution",
}


class Renderer:
    """Renders our mail from the packaged templates or an operator's folder.

    Every template is loaded (and so syntax-checked) once, at construction;
    `check-config` builds one to report a broken template before start.
    """

    def __init__(self, templates_dir: Path | None = None, *,
                 default_language: str = DEFAULT_LANGUAGE) -> None:
        found = {*template_languages(PACKAGE_TEMPLATES), DEFAULT_LANGUAGE}
        if templates_dir is not None:
            found |= set(template_languages(templates_dir))
        self.languages: tuple[str, ...] = tuple(sorted(found))
        """The languages customer mail can be written in."""
        self.default_language = match(default_language, self.languages) or DEFAULT_LANGUAGE
        self._templates: dict[str, dict[str, tuple[jinja2.Template, jinja2.Template]]] = {}
        self._phrases: dict[str, Phrases] = {}
        for language in self.languages:
            env = templates.environment(templates_dir, language,
                                        top_level=language == self.default_language)
            self._templates[language] = {
                kind: (templates.load(env, text), templates.load(env, html))
                for kind, (text, html) in TEMPLATE_NAMES.items()
            }
            self._phrases[language] = templates.phrases(templates_dir, language)

    def _language(self, language: str) -> str:
        """The folder for `language`: itself, its primary subtag, else the default."""
        return match(language, self.languages) or self.default_language

    def render_ack(
        self,
        ctx: AckContext,
        original: InboundMessage,
        *,
        message_id: str,
        date: datetime,
        now: datetime,
    ) -> Rendered:
        """The complete acknowledgement for `original`, ready for SMTP.

        `message_id` is ours (see `headers.make_message_id`); `date` is the
        Date header and `now` the moment the answer time is described from,
        both timezone-aware. Raises TemplateError when a template fails, and
        ValueError for an unusable customer or support address.
        """
        language = self._language(ctx.language)
        words = self._phrases[language]
        values = _customer_values(ctx, ctx.subject or original.subject, now, words)
        values["reply_subject"] = reply_subject(original.subject, ctx.thread_ref)
        values["opening"] = ""
        if ctx.opens_at is not None and ctx.opens_at > now:
            # Only while still closed: an ack rendered after opening must not say "closed".
            values["opening"] = describe_opening(ctx.opens_at, timezone=ctx.timezone, now=now,
                                                 language=words)
        values["agent_starts"] = ""
        starts = ctx.agent_starts_at
        if starts is not None and starts > now and (ctx.opens_at is None or starts > ctx.opens_at):
            values["agent_starts"] = describe_time(starts, timezone=ctx.timezone, now=now,
                                                   language=words)
        values["faq"] = _faq_values(ctx.faq)
        values["language"] = language
        extra = ctx.extra.items()
        values["extra"] = {clean(k, max_len=80): clean(v, max_len=500) for k, v in extra}
        parent = original.message_id
        msg = _customer_message(
            ctx, values["reply_subject"], message_id=message_id, date=date,
            in_reply_to=parent if parent and is_message_id(parent) else None,
            references=references_for(original),
        )  # fmt: skip
        return self._fill(msg, "ack", values, language)

    def render_status_update(
        self, ctx: UpdateContext, *, message_id: str, date: datetime, now: datetime
    ) -> Rendered:
        """A status update to a waiting customer, signed by the same agent, ready for SMTP.

        It says we have not forgotten them and when they will hear from us
        (`ctx.due`). It threads under `ctx.in_reply_to` and `ctx.references`;
        malformed ids are dropped. Arguments and errors as for `render_ack`.
        """
        language = self._language(ctx.language)
        values = _customer_values(ctx, ctx.subject, now, self._phrases[language])
        values["reply_subject"] = reply_subject(ctx.subject, ctx.thread_ref)
        values["language"] = language
        parent = ctx.in_reply_to if ctx.in_reply_to and is_message_id(ctx.in_reply_to) else None
        references = _reference_ids([*ctx.references, *([parent] if parent else [])])
        msg = _customer_message(
            ctx, values["reply_subject"], message_id=message_id, date=date,
            in_reply_to=parent, references=references,
        )  # fmt: skip
        return self._fill(msg, "update", values, language)

    def render_notice(
        self, ctx: NoticeContext, *, message_id: str, date: datetime, now: datetime
    ) -> Rendered:
        """An internal notice to `ctx.to_address`: an escalation or a nudge (`ctx.kind`).

        Raises ValueError for an unknown kind or an unusable address, and
        TemplateError when a template fails.
        """
        if ctx.kind not in ("escalation", "nudge"):
            raise ValueError(f"unknown notice kind {clean(ctx.kind, max_len=40)!r}")
        values = _notice_values(ctx, now)
        support = clean(ctx.support_name, max_len=80)
        msg = _message(
            sender=(", ".join(p for p in ("mailbridge", support) if p), ctx.support_address),
            recipient=(ctx.to_name, ctx.to_address), reply_to=None,
            subject=values["notice_subject"], message_id=message_id, date=date,
            auto_submitted="auto-generated", loop=ctx.support_address,
            thread_ref=ctx.thread_ref,
        )  # fmt: skip
        return self._fill(msg, ctx.kind, values, self.default_language)

    def _fill(self, head: _Head, kind: str, values: dict[str, Any], language: str) -> Rendered:
        """The mail: `head`'s header lines and the text and HTML alternatives of `kind`."""
        text_template, html_template = self._templates[language][kind]
        text = templates.render(text_template, values)
        html = templates.render(html_template, values)
        boundary = f"=_{secrets.token_hex(16)}"  # "=_" never occurs in quoted-printable
        lines = [*head.lines, "MIME-Version: 1.0\r\n",
                 f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n', "\r\n"]
        for subtype, body in (("plain", text), ("html", html)):
            lines += [f"--{boundary}\r\n", f'Content-Type: text/{subtype}; charset="utf-8"\r\n',
                      "Content-Transfer-Encoding: quoted-printable\r\n", "\r\n",
                      _quoted_printable(body), "\r\n"]
        lines.append(f"--{boundary}--\r\n")
        log.debug("rendered %s for thread %s", kind, values["thread_ref"])
        return Rendered("".join(lines).encode("utf-8"), utf8=head.utf8)


def _quoted_printable(text: str) -> str:
    """`text` as quoted-printable lines ending in CRLF (RFC 2045 6.7)."""
    body = text.replace("\r\n", "\n").replace("\r", "\n")
    if not body.endswith("\n"):
        body += "\n"
    encoded = binascii.b2a_qp(body.encode("utf-8"), istext=True).decode("ascii")
    return encoded.replace("\n", "\r\n")


def _greeting_name(name: str, address: str) -> str:
    """The name to greet with; "" when it is missing or just an address again."""
    text = clean(name, max_len=80)
    if "@" in text or text.lower() == address.lower():
        return ""
    return text


def _ref(thread_ref: str) -> str:
    return clean(thread_ref, max_len=40).strip("[]# ")


def _customer_values(
    ctx: AckContext | UpdateContext, subject: str, now: datetime, words: Phrases
) -> dict[str, Any]:
    """What customer-facing templates may use: plain, cleaned strings."""
    ref = _ref(ctx.thread_ref)
    return {
        "greeting_name": _greeting_name(ctx.customer_name, ctx.customer_address),
        "customer_name": clean(ctx.customer_name, max_len=80),
        "customer_address": clean(ctx.customer_address, max_len=320),
        "subject": clean(subject, max_len=200),
        **_agent_values(ctx.agent),
        "support_name": clean(ctx.support_name, max_len=80),
        "support_address": clean(ctx.support_address, max_len=320),
        "thread_ref": ref,
        "ref_tag": f"[#{ref}]",
        "due_words": describe_promise(
            ctx.due, timezone=ctx.timezone, customer_offset=ctx.customer_offset, now=now,
            language=words,
        ),
        "due_iso": format_iso(ctx.due, timezone=ctx.timezone),
        "timezone": ctx.timezone,
    }


def _agent_values(agent: Agent) -> dict[str, Any]:
    """The agent's name, title, signature (text and lines) and photo, cleaned.

    The photo is only ever the configured https URL, as it is: nothing is added to it.
    """
    lines = [clean(line, max_len=200) for line in agent.signature.strip().splitlines()]
    lines = lines[:MAX_SIGNATURE_LINES]
    photo = agent.photo_url.strip()
    usable = photo.startswith("https://") and clean(photo, max_len=2000) == photo
    return {
        "agent_name": clean(agent.name, max_len=80),
        "agent_email": clean(agent.email, max_len=320),
        "agent_title": clean(agent.title, max_len=80),
        "signature": "\n".join(lines),
        "signature_lines": lines,
        "photo_url": photo if usable and " " not in photo else "",
    }


def _faq_values(links: Iterable[FaqLink]) -> list[dict[str, str]]:
    """Up to `MAX_FAQ` articles with an https URL, as {title, url}."""
    kept = []
    for link in links:
        url = link.url.strip()
        if url.startswith("https://") and " " not in url and clean(url, max_len=2000) == url:
            kept.append({"title": clean(link.title, max_len=120), "url": url})
    return kept[:MAX_FAQ]


def _notice_values(ctx: NoticeContext, now: datetime) -> dict[str, Any]:
    """What staff notices may use: plain, cleaned strings (and one flag, `overdue`)."""
    ref = _ref(ctx.thread_ref)
    deadline = _DEADLINES.get(ctx.deadline) or clean(ctx.deadline.replace("_", " "), max_len=40)
    overdue = ctx.due <= now
    status = f"{deadline} overdue" if overdue else f"{deadline} due in {_span(ctx.due - now)}"
    head = f"[#{ref}] {status}: " if ref else f"{status}: "
    subject = clean(ctx.subject, max_len=200)
    room = MAX_SUBJECT - len(head)
    return {
        "to_name": clean(ctx.to_name, max_len=80),
        "thread_ref": ref,
        "ref_tag": f"[#{ref}]",
        "notice_subject": head + (clean(subject, max_len=room) or "(no subject)"),
        "subject": subject,
        "customer_address": clean(ctx.customer_address, max_len=320),
        "policy": clean(ctx.policy, max_len=80),
        "priority": clean(ctx.priority, max_len=40),
        "deadline": deadline,
        "overdue": overdue,
        "due_words": describe_due(ctx.due, timezone=ctx.timezone, now=now),
        "due_iso": format_iso(ctx.due, timezone=ctx.timezone),
        "due_span": _span(abs(ctx.due - now)),
        "received_words": describe_time(ctx.received, timezone=ctx.timezone, now=now),
        "received_ago": _span(now - ctx.received),
        "agent_name": clean(ctx.agent.name, max_len=80),
        "agent_email": clean(ctx.agent.email, max_len=320),
        "support_name": clean(ctx.support_name, max_len=80),
        "timezone": ctx.timezone,
    }


def _span(delta: timedelta) -> str:
    """A duration for people, rounded down: "under 1 min", "25 min", "4 h 5 min", "2 d 3 h"."""
    minutes = max(int(delta.total_seconds() // 60), 0)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min" if minutes else "under 1 min"


def _reference_ids(ids: Iterable[str]) -> tuple[str, ...]:
    """Well-formed ids only, each once (its last place), the last `MAX_REFERENCES` kept."""
    kept: list[str] = []
    for token in reversed(list(ids)):
        if is_message_id(token) and token not in kept:
            kept.append(token)
    return tuple(reversed(kept[:MAX_REFERENCES]))


def _customer_message(
    ctx: AckContext | UpdateContext,
    subject: str,
    *,
    message_id: str,
    date: datetime,
    in_reply_to: str | None,
    references: tuple[str, ...],
) -> _Head:
    """Headers of mail to the customer: from the agent at the desk, an RFC 3834 auto-reply."""
    agent, support = clean(ctx.agent.name, max_len=80), clean(ctx.support_name, max_len=80)
    signature = ", ".join(part for part in (agent, support) if part)  # "Dana W, Acme Support"
    # Replies still go to the tracked support mailbox, whichever address it comes from.
    return _message(
        sender=(signature, ctx.agent.from_address or ctx.support_address),
        recipient=(ctx.customer_name, ctx.customer_address),
        reply_to=(support, ctx.support_address),
        subject=subject, message_id=message_id, date=date,
        in_reply_to=in_reply_to, references=references,
        auto_submitted="auto-replied", loop=ctx.support_address, thread_ref=ctx.thread_ref,
    )  # fmt: skip


@dataclass(frozen=True)
class _Head:
    lines: tuple[str, ...]
    """Complete header lines, folded, each ending in CRLF."""
    utf8: bool
    """An address needs SMTPUTF8 (RFC 6531/6532): header values are raw UTF-8."""


def _message(
    *,
    sender: tuple[str, str],
    recipient: tuple[str, str],
    reply_to: tuple[str, str] | None,
    subject: str,
    message_id: str,
    date: datetime,
    auto_submitted: str,
    loop: str,
    thread_ref: str,
    in_reply_to: str | None = None,
    references: tuple[str, ...] = (),
) -> _Head:
    """The headers every mail of ours has; addresses are (display name, addr-spec) pairs.

    The one place header values are set: names are cleaned and checked by
    `mailbox`, ids must be well-formed, and no value may hold a line break
    (the field writers of `mailbridge.mail.headers` refuse one).
    """
    if date.tzinfo is None or date.utcoffset() is None:
        raise ValueError("the Date of our mail must be timezone-aware")
    if not is_message_id(message_id):
        raise ValueError(f"not a usable Message-ID: {clean(message_id, max_len=80)!r}")
    boxes = {"From": mailbox(*sender), "To": mailbox(*recipient)}
    if reply_to is not None:
        boxes["Reply-To"] = mailbox(*reply_to)
    utf8 = not all(spec.isascii() for _display, spec in boxes.values())
    lines = [address_field(name, box, utf8=utf8) for name, box in boxes.items()]
    lines += [text_field("Subject", clean(subject, max_len=MAX_SUBJECT), utf8=utf8),
              text_field("Date", format_datetime(date), utf8=False),
              ids_field("Message-ID", [message_id])]
    if in_reply_to is not None and is_message_id(in_reply_to):
        lines.append(ids_field("In-Reply-To", [in_reply_to]))
    kept = [ref for ref in references if is_message_id(ref)]
    if kept:
        lines.append(ids_field("References", kept))
    lines += [text_field("Auto-Submitted", auto_submitted, utf8=False),
              "X-Auto-Response-Suppress: All\r\n",
              # Loop protection other responders understand (Sieve, procmail, many helpdesks).
              text_field("X-Loop", clean(loop, max_len=320), utf8=utf8),
              text_field("X-Mailbridge-Thread", _ref(thread_ref), utf8=utf8)]
    return _Head(tuple(lines), utf8)
