"""An agent's own mail: what the relay sends on, and the reply when a command is wrong.

Public API:

- `prepare_outgoing(raw, *, domain, now) -> Outgoing`: the relayed message as it goes
  upstream. The command block (`mailbridge.core.commands`) is removed from the top of every
  text part (plain and HTML), a missing Message-ID or Date is added as a submission server
  does (RFC 6409 section 8), Bcc is removed, and Reply-To the support address is added when
  the client set none (`[relay] reply_to`). A message that needs none of this is passed
  on byte for byte.
- `command_error_mail(..., language)`: the short mail that tells an agent their commands
  were not understood, and what to write instead, in the desk's language (the packaged
  template `COMMAND_ERROR_TEXT`; the errors themselves come from `core.commands`).

Only an authenticated agent's mail comes here, so the full `email` parser is used (a
customer's mail goes through `mailbridge.mail.parse`, which is built for hostile input).
"""

from __future__ import annotations

import email
import email.policy
import functools
import html
import re
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

import jinja2

from mailbridge.config.languages import DEFAULT_LANGUAGE
from mailbridge.core import commands
from mailbridge.core.model import Agent
from mailbridge.errors import PermanentError
from mailbridge.mail import templates
from mailbridge.mail.headers import (
    HEADER_REGISTRY,
    MAX_SUBJECT,
    clean,
    format_address,
    is_message_id,
    make_message_id,
    policy_for,
)
from mailbridge.mail.mime import set_flowed_text

_PARSE_POLICY = email.policy.default.clone(header_factory=HEADER_REGISTRY)
_TOKENS = re.compile(r"(<[^>]*>)|([^<]+)")
_BODY_TAG = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_COMMAND_LIKE = re.compile(r"#[A-Za-z]")
COMMAND_ERROR_TEXT = "command_error.txt.j2"


@dataclass(frozen=True)
class Outgoing:
    data: bytes
    message_id: str
    changed: bool
    """False when `data` is the submitted message unchanged."""


def prepare_outgoing(raw: bytes, *, domain: str, now: datetime,
                     reply_to: str | None = None) -> Outgoing:
    """The relayed message without its command lines, with Message-ID and Date, and
    `reply_to` (an address field value) as Reply-To when the message has none.

    Raises PermanentError when a text part cannot be decoded to remove the commands.
    """
    msg = email.message_from_bytes(raw, policy=_PARSE_POLICY)
    assert isinstance(msg, EmailMessage)
    changed = False
    message_id = str(msg.get("Message-ID", "")).strip()
    if not is_message_id(message_id):
        message_id = make_message_id(domain)
        del msg["Message-ID"]
        msg["Message-ID"] = message_id
        changed = True
    if msg.get("Date") is None:
        msg["Date"] = format_datetime(now)
        changed = True
    if msg.get("Bcc") is not None:
        del msg["Bcc"]
        changed = True
    if reply_to and msg.get("Reply-To") is None:
        msg["Reply-To"] = reply_to
        changed = True
    for part in msg.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        if part.get_content_type() in ("text/plain", "text/html"):
            changed = _strip_part(part) or changed
    if not changed:
        return Outgoing(raw, message_id, changed=False)
    return Outgoing(msg.as_bytes(policy=_PARSE_POLICY.clone(linesep="\r\n")), message_id,
                    changed=True)


def _strip_part(part: EmailMessage) -> bool:
    """Remove the command block from one text part; True when it had one."""
    try:
        text = part.get_content()
    except (LookupError, ValueError) as exc:
        raise PermanentError(f"a text part could not be decoded ({exc})") from exc
    assert isinstance(text, str)
    subtype = part.get_content_subtype()
    if subtype == "plain":
        parsed = commands.parse(text)
        if not parsed.found:
            return False
        stripped = parsed.rest
    else:
        stripped = strip_html_commands(text)
        if stripped == text:
            return False
    params = {key: value for key, value in part.get_params() or [] if key in ("format", "delsp")}
    charset = part.get_content_charset() or "utf-8"
    try:
        part.set_content(stripped, subtype=subtype, charset=charset)
    except (LookupError, UnicodeError):
        part.set_content(stripped, subtype=subtype, charset="utf-8")
    for key, value in params.items():
        part.set_param(key, value)
    return True


def strip_html_commands(markup: str) -> str:
    """The HTML without the command lines its visible text starts with.

    Tags stay (an empty `<p></p>` is harmless); text is removed up to the first line that
    is not blank and does not start with "#" and a letter.
    """
    body = _BODY_TAG.search(markup)
    start = body.end() if body else 0
    out = [markup[:start]]
    pos = start
    done = False
    for match in _TOKENS.finditer(markup, start):
        token = match.group(0)
        pos = match.end()
        if done or match.group(1) is not None:
            out.append(token)
            continue
        pieces = token.split("\n")
        kept = 0
        while kept < len(pieces):
            line = html.unescape(pieces[kept]).strip()
            if line and not _COMMAND_LIKE.match(line):
                done = True
                break
            kept += 1
        out.append("\n".join(pieces[kept:]))
    out.append(markup[pos:])
    return "".join(out)


def command_error_mail(*, support_name: str, support_address: str, agent: Agent,
                       subject: str, errors: tuple[str, ...], in_reply_to: str | None,
                       relayed: bool, message_id: str, date: datetime,
                       language: str = DEFAULT_LANGUAGE) -> EmailMessage:
    """Tell `agent` their commands were not applied, why, and how to write them, in the
    desk's `language` (the packaged `command_error.txt.j2`; English where it has none)."""
    sender = format_address(clean(support_name, max_len=80), support_address)
    recipient = format_address(agent.name, agent.email)
    msg = EmailMessage(policy=policy_for(sender, recipient))
    msg["From"] = sender
    msg["To"] = recipient
    msg["Reply-To"] = sender  # a reply is a note on the thread (`mailbridge.daemon.notices`)
    words = _SUBJECTS.get(language, _SUBJECTS[DEFAULT_LANGUAGE])
    about = clean(subject, max_len=MAX_SUBJECT - 40) or words["your_message"]
    msg["Subject"] = words["subject"].format(about=about)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    if in_reply_to and is_message_id(in_reply_to):
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    # Names, subjects and errors are data for the template, never template code.
    text = templates.render(_error_template(language), {
        "agent_name": clean(agent.name, max_len=80), "about": about, "relayed": relayed,
        "errors": [clean(error, max_len=400) for error in errors],
        "usage": commands.USAGE, "support_name": clean(support_name, max_len=80)})
    set_flowed_text(msg, text.rstrip("\n") + "\n")
    return msg


_SUBJECTS = {
    "en": {"subject": "Commands not applied: {about}", "your_message": "your message"},
    "de": {"subject": "Befehle nicht ausgeführt: {about}", "your_message": "deine Nachricht"},
}
"""The words Python writes into the subject, per language."""


@functools.cache  # one per language
def _error_template(language: str) -> jinja2.Template:
    env = templates.environment(None, language, top_level=False)
    return templates.load(env, COMMAND_ERROR_TEXT)
