"""Mail we send, from jinja2 templates: the values each kind of mail shows, rendered.

Three kinds: the acknowledgement of a new message, a status update to a
customer still waiting, and internal notices to staff (an escalation when a
deadline passed, a nudge before it does). This module owns what their templates
may use (plain, cleaned values) and renders them; `mailbridge.mail.mime` builds
the headers and the MIME message around the words.

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

Public API: `Renderer(templates_dir=None, *, default_language="en", branding=Branding())` with
`render_ack(...)`, `render_status_update(...)`, `render_notice(...)`, `check(samples)` and
`languages`, each render giving a `Rendered` (`mailbridge.mail.mime`, re-exported here);
`TEMPLATE_NAMES`, the template files an operator folder may override (`ACK_TEXT`,
`ACK_HTML`, ...); `Branding` (the desk's colour and logo, `Branding.of(config.support)`).

Customer mail's HTML templates also get `accent_color`, and `logo_url` and `photo_url`: a
`cid:` URL of a picture sent inside the mail (multipart/related, only when the HTML shows
it), an agent's https photo_url, or "".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2

from mailbridge.config import SupportSettings
from mailbridge.config.branding import DEFAULT_ACCENT
from mailbridge.config.languages import DEFAULT_LANGUAGE, template_languages
from mailbridge.core.eta import (
    Phrases,
    describe_opening,
    describe_promise,
    describe_time,
    format_iso,
)
from mailbridge.core.language import match
from mailbridge.core.model import (
    AckContext,
    Agent,
    DigestContext,
    FaqLink,
    Image,
    InboundMessage,
    NoticeContext,
    UpdateContext,
)
from mailbridge.core.names import greeting_name
from mailbridge.core.standing import describe_progress, describe_queue, words_for
from mailbridge.errors import TemplateError
from mailbridge.mail import templates
from mailbridge.mail.headers import (
    clean,
    is_message_id,
    references_for,
    reply_subject,
)
from mailbridge.mail.mime import (
    Head,
    Inline,
    Rendered,
    assemble,
    bare_ref,
    content_id,
    customer_head,
    message_head,
    reference_ids,
)
from mailbridge.mail.samples import Samples
from mailbridge.mail.staff_values import digest_values, notice_values
from mailbridge.mail.templates import PACKAGE_TEMPLATES, PHRASES_FILE

__all__ = ["ACK_HTML", "ACK_TEXT", "DIGEST_HTML", "DIGEST_TEXT", "ESCALATION_HTML",
           "ESCALATION_TEXT", "HANDOVER_HTML", "HANDOVER_TEXT", "NUDGE_HTML", "NUDGE_TEXT",
           "TEMPLATE_NAMES", "UPDATE_HTML", "UPDATE_TEXT", "Branding", "Rendered", "Renderer"]

log = logging.getLogger(__name__)

ACK_TEXT, ACK_HTML = "ack.txt.j2", "ack.html.j2"
UPDATE_TEXT, UPDATE_HTML = "update.txt.j2", "update.html.j2"
ESCALATION_TEXT, ESCALATION_HTML = "escalation.txt.j2", "escalation.html.j2"
NUDGE_TEXT, NUDGE_HTML = "nudge.txt.j2", "nudge.html.j2"
HANDOVER_TEXT, HANDOVER_HTML = "handover.txt.j2", "handover.html.j2"
DIGEST_TEXT, DIGEST_HTML = "digest.txt.j2", "digest.html.j2"
TEMPLATE_NAMES: dict[str, tuple[str, str]] = {
    "ack": (ACK_TEXT, ACK_HTML),
    "update": (UPDATE_TEXT, UPDATE_HTML),
    "escalation": (ESCALATION_TEXT, ESCALATION_HTML),
    "nudge": (NUDGE_TEXT, NUDGE_HTML),
    "handover": (HANDOVER_TEXT, HANDOVER_HTML),
    "digest": (DIGEST_TEXT, DIGEST_HTML),
}
"""Each kind of mail and its (text, HTML) templates."""
MAX_SIGNATURE_LINES = 12
MAX_FAQ = 3


@dataclass(frozen=True)
class Branding:
    """How customer mail looks without editing a template: [support] accent_color and
    logo_file (`mailbridge.config.branding`)."""

    accent_color: str = DEFAULT_ACCENT
    logo: Image | None = None

    @classmethod
    def of(cls, support: SupportSettings) -> Branding:
        return cls(accent_color=support.accent_color, logo=support.logo_file)


class Renderer:
    """Renders our mail from the packaged templates or an operator's folder.

    Every template is loaded (and so syntax-checked) once, at construction; a
    TemplateError then names every template (and date words file) that cannot be
    loaded, one per line. `check-config` builds one and renders every template with
    sample values (`check`) to report a broken template before start.
    """

    def __init__(self, templates_dir: Path | None = None, *,
                 default_language: str = DEFAULT_LANGUAGE,
                 branding: Branding = Branding()) -> None:
        self.branding = branding
        found = {*template_languages(PACKAGE_TEMPLATES), DEFAULT_LANGUAGE}
        if templates_dir is not None:
            found |= set(template_languages(templates_dir))
        self.languages: tuple[str, ...] = tuple(sorted(found))
        """The languages customer mail can be written in."""
        self.default_language = match(default_language, self.languages) or DEFAULT_LANGUAGE
        self._templates: dict[str, dict[str, tuple[jinja2.Template, jinja2.Template]]] = {}
        self._phrases: dict[str, Phrases] = {}
        problems: list[str] = []
        for language in self.languages:
            env = templates.environment(templates_dir, language,
                                        top_level=language == self.default_language)
            loaded: dict[str, jinja2.Template] = {}
            for name in (name for pair in TEMPLATE_NAMES.values() for name in pair):
                try:
                    loaded[name] = templates.load(env, name)
                except TemplateError as exc:
                    problems.append(str(exc))
            self._templates[language] = {
                kind: (loaded[text], loaded[html])
                for kind, (text, html) in TEMPLATE_NAMES.items() if {text, html} <= set(loaded)
            }
            try:
                self._phrases[language] = templates.phrases(templates_dir, language)
            except TemplateError as exc:
                problems.append(str(exc))
        if problems:
            raise TemplateError("\n".join(dict.fromkeys(problems)))

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
        language, values = self._ack_values(ctx, original, now)
        pictures = self._branding(ctx, values, self.branding.logo)
        parent = original.message_id
        msg = customer_head(
            ctx, values["reply_subject"], message_id=message_id, date=date,
            in_reply_to=parent if parent and is_message_id(parent) else None,
            references=references_for(original),
        )  # fmt: skip
        return self._fill(msg, "ack", values, language, pictures)

    def _ack_values(self, ctx: AckContext, original: InboundMessage,
                    now: datetime) -> tuple[str, dict[str, Any]]:
        """The language of `ctx`'s acknowledgement, and what its templates may use."""
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
        values.update(_standing_values(ctx, language))
        extra = ctx.extra.items()
        values["extra"] = {clean(k, max_len=80): clean(v, max_len=500) for k, v in extra}
        return language, values

    def render_status_update(
        self, ctx: UpdateContext, *, message_id: str, date: datetime, now: datetime
    ) -> Rendered:
        """A status update to a waiting customer, signed by the same agent, ready for SMTP.

        It says we have not forgotten them and when they will hear from us
        (`ctx.due`). It threads under `ctx.in_reply_to` and `ctx.references`;
        malformed ids are dropped. Arguments and errors as for `render_ack`.
        """
        language, values = self._update_values(ctx, now)
        pictures = self._branding(ctx, values, self.branding.logo)
        parent = ctx.in_reply_to if ctx.in_reply_to and is_message_id(ctx.in_reply_to) else None
        references = reference_ids([*ctx.references, *([parent] if parent else [])])
        msg = customer_head(
            ctx, values["reply_subject"], message_id=message_id, date=date,
            in_reply_to=parent, references=references,
        )  # fmt: skip
        return self._fill(msg, "update", values, language, pictures)

    def _update_values(self, ctx: UpdateContext, now: datetime) -> tuple[str, dict[str, Any]]:
        """The language of `ctx`'s status update, and what its templates may use."""
        language = self._language(ctx.language)
        values = _customer_values(ctx, ctx.subject, now, self._phrases[language])
        values["reply_subject"] = reply_subject(ctx.subject, ctx.thread_ref)
        values["language"] = language
        values.update(_standing_values(ctx, language))
        return language, values

    def render_notice(
        self, ctx: NoticeContext, *, message_id: str, date: datetime, now: datetime
    ) -> Rendered:
        """An internal notice to `ctx.to_address`: an escalation or a nudge (`ctx.kind`).

        Raises ValueError for an unknown kind or an unusable address, and
        TemplateError when a template fails.
        """
        if ctx.kind not in ("escalation", "nudge", "handover"):
            raise ValueError(f"unknown notice kind {clean(ctx.kind, max_len=40)!r}")
        language = self.default_language
        values = notice_values(ctx, now, language, self._phrases[language])
        return self._staff_mail(ctx, values, ctx.kind, message_id=message_id, date=date)

    def render_digest(
        self, ctx: DigestContext, *, message_id: str, date: datetime, now: datetime
    ) -> Rendered:
        """An agent's digest of their open threads at the start of a shift; like a notice
        (Reply-To the support address), about no single thread."""
        language = self.default_language
        values = digest_values(ctx, now, language, self._phrases[language])
        return self._staff_mail(ctx, values, "digest", message_id=message_id, date=date)

    def _staff_mail(self, ctx: NoticeContext | DigestContext, values: dict[str, Any], kind: str,
                    *, message_id: str, date: datetime) -> Rendered:
        """Staff mail in the desk's language, from mailbridge, Reply-To the support address."""
        support = clean(ctx.support_name, max_len=80)
        msg = message_head(
            sender=(", ".join(p for p in ("mailbridge", support) if p), ctx.support_address),
            # Reply-To the support address: a reply is a note on the thread, and its
            # command lines run (`mailbridge.daemon.notices`).
            recipient=(ctx.to_name, ctx.to_address), reply_to=(support, ctx.support_address),
            subject=values["notice_subject"], message_id=message_id, date=date,
            auto_submitted="auto-generated", loop=ctx.support_address,
            thread_ref=values["thread_ref"],
        )  # fmt: skip
        return self._fill(msg, kind, values, self.default_language)

    def _branding(self, ctx: AckContext | UpdateContext, values: dict[str, Any],
                  logo: Image | None) -> list[Inline]:
        """Add the desk's colour and logo to customer mail's `values`, the agent's photo sent
        with the mail in place of their photo_url; the pictures to send with it.

        A picture sent with the mail is shown by a `cid:` URL naming its part, new for each
        mail (RFC 2392)."""
        values |= {"accent_color": self.branding.accent_color, "logo_url": ""}
        domain = ctx.support_address.rpartition("@")[2]
        pictures = []
        for key, picture in (("photo_url", ctx.agent.photo), ("logo_url", logo)):
            if picture is not None:
                inline = Inline(content_id(key.partition("_")[0], domain), picture)
                pictures.append(inline)
                values[key] = inline.url
        return pictures

    def _fill(self, head: Head, kind: str, values: dict[str, Any], language: str,
              pictures: Iterable[Inline] = ()) -> Rendered:
        """The mail: `head`'s header lines and the text and HTML alternatives of `kind`,
        with those of `pictures` its HTML shows."""
        text_template, html_template = self._templates[language][kind]
        text = templates.render(text_template, values)
        html = templates.render(html_template, values)
        rendered = assemble(head, text, html, [p for p in pictures if p.url in html])
        log.debug("rendered %s for thread %s", kind, values["thread_ref"])
        return rendered

    def check(self, samples: Samples) -> list[str]:
        """Every template in use rendered once with `samples`: the problems, one line each.

        The values come from the code that renders real mail, each template file taking
        those of the first language that uses it, so an unknown variable or a refused
        operation names its file and line here instead of failing a customer's mail.
        """
        problems: list[str] = []
        done: set[str] = set()
        for language in self.languages:
            try:
                values = self._sample_values(samples, language)
            except Exception as exc:  # an operator's date words can fail in any way
                problems.append(f"language {language}: its date words ({PHRASES_FILE}) cannot "
                                f"write the sample dates: {type(exc).__name__}: {exc}")
                continue
            for kind, pair in self._templates[language].items():
                for template in pair:
                    name = template.filename or template.name or ""
                    if name in done:
                        continue
                    done.add(name)
                    try:
                        templates.render(template, values[kind])
                    except TemplateError as exc:
                        problems.append(" ".join(str(exc).splitlines()))
        return list(dict.fromkeys(problems))  # a shared frame's problem once

    def _sample_values(self, samples: Samples, language: str) -> dict[str, dict[str, Any]]:
        """What each kind of mail's templates see in `language`, for `samples`."""
        _, ack = self._ack_values(replace(samples.ack, language=language), samples.original,
                                  samples.now)
        _, update = self._update_values(replace(samples.update, language=language), samples.now)
        # The sample logo stands in for a desk without one, so that its part renders too.
        for ctx, values in ((samples.ack, ack), (samples.update, update)):
            self._branding(ctx, values, self.branding.logo or samples.logo)
        return {"ack": ack, "update": update,
                **{kind: notice_values(sample, samples.now, language, self._phrases[language])
                   for kind, sample in (("escalation", samples.escalation),
                                        ("nudge", samples.nudge),
                                        ("handover", samples.handover))},
                "digest": digest_values(samples.digest, samples.now, language,
                                        self._phrases[language])}


def _customer_values(
    ctx: AckContext | UpdateContext, subject: str, now: datetime, words: Phrases
) -> dict[str, Any]:
    """What customer-facing templates may use: plain, cleaned strings."""
    ref = bare_ref(ctx.thread_ref)
    return {
        "greeting_name": greeting_name(clean(ctx.customer_name, max_len=80),
                                       ctx.customer_address),
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


def _standing_values(ctx: AckContext | UpdateContext, language: str) -> dict[str, Any]:
    """Where the request stands (`core.standing`): `queue_ahead` (a number, or None) and
    `queue_words`; for a status update also `opened` (True, False or None: not known) and
    `progress_words` (who has it, whether it was opened). Words are "" in a language
    without built-in ones, whose own templates can word the numbers."""
    words = words_for(language)
    ahead = ctx.queue_ahead
    values: dict[str, Any] = {
        "queue_ahead": ahead,
        "queue_words": describe_queue(ahead, words) if words and ahead is not None else ""}
    if isinstance(ctx, UpdateContext):
        agent = clean(ctx.agent.name, max_len=80)
        values["opened"] = ctx.opened
        values["progress_words"] = describe_progress(agent, ctx.opened, words) if words else ""
    return values


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
