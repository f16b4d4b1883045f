"""The acknowledgement mail: jinja2 templates in, a complete `EmailMessage` out.

Text from the customer's message is data, never template code: it reaches the
templates only as values (never through `from_string`), the HTML template is
autoescaped, and every header value goes through `mailbridge.mail.headers`.
Operator-supplied template folders run in jinja2's sandbox, with the packaged
templates as fallback for any file the operator did not override.

Public API: `Renderer(templates_dir=None)` and `Renderer.render_ack(...)`;
`ACK_TEXT` and `ACK_HTML`, the template names an operator folder may override.
"""

from __future__ import annotations

import logging
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mailbridge.core.eta import describe_due, format_iso
from mailbridge.core.model import AckContext, InboundMessage
from mailbridge.errors import TemplateError
from mailbridge.mail.headers import (
    clean,
    format_address,
    is_message_id,
    policy_for,
    references_for,
    reply_subject,
)

log = logging.getLogger(__name__)

ACK_TEXT = "ack.txt.j2"
ACK_HTML = "ack.html.j2"
PACKAGE_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


class Renderer:
    """Renders acknowledgements from the packaged templates or an operator's folder.

    Both templates are loaded (and so syntax-checked) once, at construction;
    `check-config` builds one to report a broken template before start.
    """

    def __init__(self, templates_dir: Path | None = None) -> None:
        self._env = _environment(templates_dir)
        self._text = _load(self._env, ACK_TEXT)
        self._html = _load(self._env, ACK_HTML)

    def render_ack(
        self,
        ctx: AckContext,
        original: InboundMessage,
        *,
        message_id: str,
        date: datetime,
        now: datetime,
    ) -> EmailMessage:
        """The complete acknowledgement for `original`, ready for SMTP.

        `message_id` is ours (see `headers.make_message_id`); `date` is the
        Date header and `now` the moment the answer time is described from,
        both timezone-aware. Raises TemplateError when a template fails, and
        ValueError for an unusable customer or support address.
        """
        values = _ack_values(ctx, original, now)
        text = _render(self._text, values)
        html = _render(self._html, values)
        msg = _headers(ctx, original, message_id=message_id, date=date)
        msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
        msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
        for part in msg.iter_parts():
            del part["MIME-Version"]  # set_content adds it to parts too; only the top needs it
        log.debug("rendered ack %s for thread %s", message_id, values["thread_ref"])
        return msg


def _environment(templates_dir: Path | None) -> jinja2.Environment:
    if templates_dir is None:
        return jinja2.Environment(
            loader=jinja2.FileSystemLoader(PACKAGE_TEMPLATES),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(["html", "html.j2"]),
            keep_trailing_newline=True,
        )
    loader = jinja2.ChoiceLoader(
        [jinja2.FileSystemLoader(templates_dir), jinja2.FileSystemLoader(PACKAGE_TEMPLATES)]
    )
    return ImmutableSandboxedEnvironment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(["html", "html.j2"]),
        keep_trailing_newline=True,
    )


def _load(env: jinja2.Environment, name: str) -> jinja2.Template:
    try:
        return env.get_template(name)
    except jinja2.TemplateSyntaxError as exc:
        where = exc.filename or exc.name or name
        raise TemplateError(f"{where}, line {exc.lineno}: {exc.message}") from exc
    except jinja2.TemplateNotFound as exc:
        raise TemplateError(f"template {name} not found") from exc
    except (jinja2.TemplateError, OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"template {name} cannot be loaded: {exc}") from exc


def _render(template: jinja2.Template, values: dict[str, Any]) -> str:
    try:
        return template.render(values)
    except Exception as exc:  # an operator's template can fail in any way
        line = _template_line(exc, template)
        where = f"{template.filename or template.name}, line {line}" if line else template.name
        raise TemplateError(f"{where}: {type(exc).__name__}: {exc}") from exc


def _template_line(exc: BaseException, template: jinja2.Template) -> int | None:
    """The template line being rendered when `exc` was raised (jinja2 rewrites frames)."""
    line, trace = None, exc.__traceback__
    while trace is not None:
        if template.filename and trace.tb_frame.f_code.co_filename == template.filename:
            line = trace.tb_lineno
        trace = trace.tb_next
    return line


def _greeting_name(name: str, address: str) -> str:
    """The name to greet with; "" when it is missing or just an address again."""
    text = clean(name, max_len=80)
    if "@" in text or text.lower() == address.lower():
        return ""
    return text


def _ack_values(ctx: AckContext, original: InboundMessage, now: datetime) -> dict[str, Any]:
    """Everything the templates may use: plain, cleaned strings."""
    ref = clean(ctx.thread_ref, max_len=40).strip("[]# ")
    return {
        "greeting_name": _greeting_name(ctx.customer_name, ctx.customer_address),
        "customer_name": clean(ctx.customer_name, max_len=80),
        "customer_address": clean(ctx.customer_address, max_len=320),
        "subject": clean(ctx.subject or original.subject, max_len=200),
        "reply_subject": reply_subject(original.subject, ctx.thread_ref),
        "agent_name": clean(ctx.agent.name, max_len=80),
        "agent_email": clean(ctx.agent.email, max_len=320),
        "support_name": clean(ctx.support_name, max_len=80),
        "support_address": clean(ctx.support_address, max_len=320),
        "thread_ref": ref,
        "ref_tag": f"[#{ref}]",
        "due_words": describe_due(ctx.due, timezone=ctx.timezone, now=now),
        "due_iso": format_iso(ctx.due, timezone=ctx.timezone),
        "timezone": ctx.timezone,
        "extra": {clean(k, max_len=80): clean(v, max_len=500) for k, v in ctx.extra.items()},
    }


def _headers(
    ctx: AckContext, original: InboundMessage, *, message_id: str, date: datetime
) -> EmailMessage:
    if date.tzinfo is None or date.utcoffset() is None:
        raise ValueError("the Date of an acknowledgement must be timezone-aware")
    if not is_message_id(message_id):
        raise ValueError(f"not a usable Message-ID: {clean(message_id, max_len=80)!r}")
    agent, support = clean(ctx.agent.name, max_len=80), clean(ctx.support_name, max_len=80)
    signature = ", ".join(part for part in (agent, support) if part)  # "Dana W, Acme Support"
    sender = format_address(signature, ctx.support_address)
    recipient = format_address(ctx.customer_name, ctx.customer_address)
    reply_to = format_address(support, ctx.support_address)
    msg = EmailMessage(policy=policy_for(sender, recipient, reply_to))
    msg["From"] = sender
    msg["To"] = recipient
    msg["Reply-To"] = reply_to
    msg["Subject"] = reply_subject(original.subject, ctx.thread_ref)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    if original.message_id and is_message_id(original.message_id):
        msg["In-Reply-To"] = original.message_id
    references = references_for(original)
    if references:
        msg["References"] = " ".join(references)
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    # Loop protection other responders understand (Sieve, procmail, many helpdesks).
    msg["X-Loop"] = ctx.support_address
    msg["X-Mailbridge-Thread"] = clean(ctx.thread_ref, max_len=40).strip("[]# ")
    _refuse_line_breaks(msg)
    return msg


def _refuse_line_breaks(msg: EmailMessage) -> None:
    """Last guard against header injection: no stored value may hold CR or LF.

    Python 3.11 before 3.11.10 lacks `policy.verify_generated_headers`.
    """
    for name, value in msg.items():
        if "\r" in str(value) or "\n" in str(value):
            raise ValueError(f"header {name} would contain a line break")
