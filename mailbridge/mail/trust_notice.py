"""The notice that tells staff their mail did not count, because nothing proved it theirs.

Public API: `unverified_notice(...) -> EmailMessage`.

Mail in the support INBOX whose From is an agent's (or a lead's) address counts as theirs
only when our mail server vouches for it (`mailbridge.core.trust`). Otherwise it is recorded
and changes nothing, and the person whose address it names gets this short notice, at most
once an hour (`mailbridge.daemon.unverified`): what happened, and how to send so that it
counts. The subject of their message is quoted, cleaned; nothing else of it is.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

from mailbridge.mail.headers import MAX_SUBJECT, clean, format_address, policy_for
from mailbridge.mail.mime import set_flowed_text


def _ways(*, relay: str, sent_folders: tuple[str, ...], support_address: str,
          authenticated: bool) -> list[str]:
    ways = []
    if relay:
        ways.append(f"  - send it through the support relay, {relay}, logged in with your "
                    "relay password (SMTP submission with STARTTLS or TLS);")
    if sent_folders:
        folders = ", ".join(clean(f, max_len=80) for f in sent_folders)
        ways.append(f"  - or send it from the {support_address} mailbox, so that a copy is "
                    f"filed in its Sent folder ({folders});")
    if authenticated:
        ways.append("  - or send it from your own account through your domain's mail server, "
                    "which signs it (DKIM), so that our mail server can verify it.")
    if not ways:
        ways.append("  - ask the administrator to enable the support relay: no way to send "
                    "as staff is set up yet.")
    return ways


def unverified_notice(*, support_name: str, support_address: str, name: str, address: str,
                      subject: str, relay: str, sent_folders: tuple[str, ...],
                      authenticated: bool, message_id: str, date: datetime) -> EmailMessage:
    """Tell `name` <`address`> that mail from their address was not authenticated and so did
    not count; `relay` ("host:port", or "" when the relay is off), `sent_folders` and
    `authenticated` (our server's verdicts are read) say which ways to send do count."""
    sender = format_address(clean(support_name, max_len=80), support_address)
    recipient = format_address(clean(name, max_len=80), address)
    msg = EmailMessage(policy=policy_for(sender, recipient))
    msg["From"] = sender
    msg["To"] = recipient
    about = clean(subject, max_len=MAX_SUBJECT - 40) or "your message"
    msg["Subject"] = f"Not counted: {about}"
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    lines = [f"Hello {clean(name, max_len=80)},", "",
             f'a message from your address to {support_address} ("{about}") arrived without '
             "proof that you sent it: our mail server did not authenticate it. It was "
             "recorded, but it did not count as yours: it answered no customer, stopped no "
             "clock, and its commands did not run.", "",
             "To make your mail count:"]
    lines += _ways(relay=relay, sent_folders=sent_folders, support_address=support_address,
                   authenticated=authenticated)
    lines += ["", "If you did not send it, someone used your address; nothing was changed. "
                  "This notice is sent at most once an hour.", "",
              f"-- {clean(support_name, max_len=80)}"]
    set_flowed_text(msg, "\n".join(lines) + "\n")
    return msg
