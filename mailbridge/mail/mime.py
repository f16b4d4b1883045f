"""The mail we send as bytes: its header block and its text and HTML alternatives.

This module owns the shape of every outgoing mail, whatever wrote its words: the headers
every mail of ours has (From, To, Reply-To, Subject, Date, Message-ID, threading, RFC 3834
Auto-Submitted, loop protection), and the multipart/alternative body in quoted-printable
UTF-8: text (format=flowed) and HTML, the HTML with its pictures when it shows any. Every
header value goes through the field writers of `mailbridge.mail.headers`; no value may hold
a line break. `mailbridge.mail.render` fills in the words.

Public API: `Rendered` (one complete mail: its wire bytes, and the message read back on
demand); `Head` (the folded header lines); `message_head(...)`, the one place header values
are set; `customer_head(ctx, subject, ...)`, the headers of mail to a customer;
`assemble(head, text, html, pictures=()) -> Rendered`, with `Inline` pictures (each named by
a `content_id(role, domain)`) in a multipart/related beside the HTML; `set_flowed_text(msg,
text)`, the body of a text-only mail; `reference_ids(ids)`, the References we keep;
`bare_ref(thread_ref)`, a thread reference without its brackets. Every text part is
format=flowed (`mailbridge.mail.flowed`).
"""

from __future__ import annotations

import base64
import binascii
import email
import functools
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

from mailbridge.core.model import AckContext, Image, UpdateContext
from mailbridge.mail.flowed import flowed
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
    text_field,
)


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


@dataclass(frozen=True)
class Head:
    lines: tuple[str, ...]
    """Complete header lines, folded, each ending in CRLF."""
    utf8: bool
    """An address needs SMTPUTF8 (RFC 6531/6532): header values are raw UTF-8."""


@dataclass(frozen=True)
class Inline:
    """A picture sent inside the mail, shown by the HTML part as `cid:<content_id>`."""

    content_id: str
    """A msg-id without its angle brackets, new for each mail (`content_id`)."""
    image: Image

    @property
    def url(self) -> str:
        return f"cid:{self.content_id}"


def content_id(role: str, domain: str) -> str:
    """A Content-ID for a picture of ours, unique to one mail: `role.<random>@domain`."""
    right = domain.lower() if _DOMAIN.fullmatch(domain) else "mailbridge.invalid"
    return f"{_safe(role, 'image')}.{secrets.token_hex(8)}@{right}"


def assemble(head: Head, text: str, html: str, pictures: Sequence[Inline] = ()) -> Rendered:
    """The mail: `head`'s header lines, and the text (format=flowed, `flowed`) and HTML
    alternatives; with `pictures`, the HTML and they are one multipart/related (RFC 2387)."""
    lines = [*head.lines, "MIME-Version: 1.0\r\n"]
    outer = _boundary()
    lines += [f'Content-Type: multipart/alternative; boundary="{outer}"\r\n', "\r\n",
              f"--{outer}\r\n", *_text_part("plain", flowed(text), flowed_params=True),
              f"--{outer}\r\n"]
    if pictures:
        inner = _boundary()
        lines += [f'Content-Type: multipart/related; boundary="{inner}"; type="text/html"\r\n',
                  "\r\n", f"--{inner}\r\n", *_text_part("html", html)]
        for picture in pictures:
            lines += [f"--{inner}\r\n", *_picture_part(picture)]
        lines.append(f"--{inner}--\r\n")
    else:
        lines += _text_part("html", html)
    lines.append(f"--{outer}--\r\n")
    return Rendered("".join(lines).encode("utf-8"), utf8=head.utf8)


def set_flowed_text(msg: EmailMessage, text: str) -> None:
    """Make `text` the body of `msg`: one text/plain part, format=flowed, quoted-printable
    (so a soft break's trailing space survives any relay)."""
    msg.set_content(flowed(text), cte="quoted-printable",
                    params={"format": "flowed", "delsp": "no"})


def _boundary() -> str:
    return f"=_{secrets.token_hex(16)}"  # "=_" never occurs in quoted-printable or base64


def _text_part(subtype: str, body: str, *, flowed_params: bool = False) -> list[str]:
    params = "; format=flowed; delsp=no" if flowed_params else ""
    return [f'Content-Type: text/{subtype}; charset="utf-8"{params}\r\n',
            "Content-Transfer-Encoding: quoted-printable\r\n", "\r\n",
            quoted_printable(body), "\r\n"]


def _picture_part(picture: Inline) -> list[str]:
    image = picture.image
    subtype = image.content_type.partition("/")[2]
    name = _safe(image.filename.rsplit(".", 1)[0], "picture") + "." + (
        "jpg" if subtype == "jpeg" else subtype)
    data = base64.encodebytes(image.data).decode("ascii").replace("\n", "\r\n")
    return [f'Content-Type: {image.content_type}; name="{name}"\r\n',
            "Content-Transfer-Encoding: base64\r\n",
            f"Content-ID: <{picture.content_id}>\r\n",
            f'Content-Disposition: inline; filename="{name}"\r\n', "\r\n", data]


def _safe(text: str, default: str) -> str:
    """`text` as a token fit for a header parameter: ASCII letters, digits, "-" and "_"."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:40] or default


_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def quoted_printable(text: str) -> str:
    """`text` as quoted-printable lines ending in CRLF (RFC 2045 6.7)."""
    body = text.replace("\r\n", "\n").replace("\r", "\n")
    if not body.endswith("\n"):
        body += "\n"
    encoded = binascii.b2a_qp(body.encode("utf-8"), istext=True).decode("ascii")
    return encoded.replace("\n", "\r\n")


def bare_ref(thread_ref: str) -> str:
    return clean(thread_ref, max_len=40).strip("[]# ")


def reference_ids(ids: Iterable[str]) -> tuple[str, ...]:
    """Well-formed ids only, each once (its last place), the last `MAX_REFERENCES` kept."""
    kept: list[str] = []
    for token in reversed(list(ids)):
        if is_message_id(token) and token not in kept:
            kept.append(token)
    return tuple(reversed(kept[:MAX_REFERENCES]))


def customer_head(
    ctx: AckContext | UpdateContext,
    subject: str,
    *,
    message_id: str,
    date: datetime,
    in_reply_to: str | None,
    references: tuple[str, ...],
) -> Head:
    """Headers of mail to the customer: from the agent at the desk, an RFC 3834 auto-reply."""
    agent, support = clean(ctx.agent.name, max_len=80), clean(ctx.support_name, max_len=80)
    signature = ", ".join(part for part in (agent, support) if part)  # "Dana W, Acme Support"
    # Replies still go to the tracked support mailbox, whichever address it comes from.
    return message_head(
        sender=(signature, ctx.agent.from_address or ctx.support_address),
        recipient=(ctx.customer_name, ctx.customer_address),
        reply_to=(support, ctx.support_address),
        subject=subject, message_id=message_id, date=date,
        in_reply_to=in_reply_to, references=references,
        auto_submitted="auto-replied", loop=ctx.support_address, thread_ref=ctx.thread_ref,
    )  # fmt: skip


def message_head(
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
) -> Head:
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
              text_field("X-Mailbridge-Thread", bare_ref(thread_ref), utf8=utf8)]
    return Head(tuple(lines), utf8)
