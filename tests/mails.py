"""Realistic mail for integration tests and benchmarks.

Public API: `customer_mail(...) -> bytes`, `reply_to(original, ...) -> bytes`, and for
agents' mail in the INBOX `OUR_MX`, `VOUCHED`, `TRUSTED_RULES`, `mta_headers(...)`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

OUR_MX = "mx.example.com"
"""The authserv-id of our own mail server in test configs (`TRUSTED_RULES`)."""
VOUCHED = f"{OUR_MX}; dkim=pass (2048-bit key) header.d=example.com header.s=2024"
"""Our mail server's Authentication-Results value vouching for the agents' domain: staff mail
in the INBOX counts only with it (`mailbridge.core.trust`)."""
TRUSTED_RULES = f'[rules]\ntrusted_authserv_id = "{OUR_MX}"\n'
"""The [rules] table of a config that believes `OUR_MX`."""


def mta_headers(raw: bytes, *, authserv_id: str = OUR_MX, results: str | None,
                client: str = "relay.example.net (relay.example.net [203.0.113.9])") -> bytes:
    """`raw` as our MTA `authserv_id` passes it on for delivery (`Dovecot.deliver`): its
    Received field on top, then its Authentication-Results field with `results` (none when
    None). Fields the sender wrote, look-alikes included, stay below."""
    received = (f"Received: from {client}\n\tby {authserv_id} (Postfix) with ESMTPS id 4Q7Xb2\n"
                f"\tfor <support@example.com>; {format_datetime(datetime.now(UTC))}\n")
    verdict = "" if results is None else f"Authentication-Results: {authserv_id};\n\t{results}\n"
    return (received + verdict).encode() + raw


def customer_mail(n: int = 1, *, name: str = "Ana Souza", addr: str | None = None,
                  subject: str | None = None, body: str = "Hello, can you help me?",
                  to: str = "support@example.com", **headers: str) -> bytes:
    """A message like Thunderbird sends: From with a name, Return-Path, plain text."""
    addr = addr or f"customer{n}@example.org"
    msg = EmailMessage()
    msg["Return-Path"] = f"<{addr}>"
    msg["From"] = f"{name} <{addr}>"
    msg["To"] = f"Example Support <{to}>"
    msg["Subject"] = subject if subject is not None else f"Question number {n}"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(idstring=f"q{n}", domain="example.org")
    for key, value in headers.items():
        msg[key.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()


def reply_to(original: bytes, *, body: str = "One more detail.", **headers: str) -> bytes:
    """The customer's follow-up to `original`, threaded with In-Reply-To and References."""
    from email import message_from_bytes
    from email.policy import default

    parent = message_from_bytes(original, policy=default)
    msg = EmailMessage()
    msg["Return-Path"] = str(parent["Return-Path"])
    msg["From"] = str(parent["From"])
    msg["To"] = str(parent["To"])
    msg["Subject"] = "Re: " + str(parent["Subject"])
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg["In-Reply-To"] = str(parent["Message-ID"])
    msg["References"] = str(parent["Message-ID"])
    for key, value in headers.items():
        msg[key.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()
