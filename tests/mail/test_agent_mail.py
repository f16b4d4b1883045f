"""What the relay sends on (command lines removed), and the reply to a wrong command."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

from mailbridge.core.model import Agent
from mailbridge.mail.agent_mail import command_error_mail, prepare_outgoing, strip_html_commands
from mailbridge.mail.flowed import unflowed

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
DANA = Agent("Dana Whitfield", "dana@example.com")


def reply(text: str, *, html: str | None = None, **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Dana Whitfield <dana@example.com>"
    msg["To"] = "ana@example.org"
    msg["Subject"] = "Re: Charged twice [#K7M2QD]"
    msg["Date"] = "Mon, 02 Mar 2026 10:30:00 +0100"
    msg["Message-ID"] = "<reply-1@example.com>"
    for key, value in headers.items():
        msg[key.replace("_", "-")] = value
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    return msg


def parsed(data: bytes) -> EmailMessage:
    msg = message_from_bytes(data, policy=default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(msg: EmailMessage, subtype: str = "plain") -> str:
    part = msg.get_body(preferencelist=(subtype,))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def test_a_message_without_commands_passes_byte_for_byte() -> None:
    """Nothing to change: the submitted bytes go on as they are."""
    raw = reply("Hello Ana,\nrefunded.\n").as_bytes()
    out = prepare_outgoing(raw, domain="example.com", now=NOW)
    assert out.data == raw and not out.changed and out.message_id == "<reply-1@example.com>"


def test_command_lines_are_removed_from_the_text() -> None:
    """The command block goes; the reply, its headers and its threading stay."""
    raw = reply("#pending\n#note asked for the invoice\n\nHello Ana,\nwhich invoice?\n").as_bytes()
    out = parsed(prepare_outgoing(raw, domain="example.com", now=NOW).data)
    assert text_of(out) == "Hello Ana,\nwhich invoice?\n"
    assert out["Message-ID"] == "<reply-1@example.com>"
    assert out["Subject"] == "Re: Charged twice [#K7M2QD]"


def test_html_alternative_loses_its_command_lines_too() -> None:
    """In the HTML part the commands' text goes and the markup stays."""
    html = ('<html><head><style>p{}</style></head><body><div>#pending</div>'
            '<div>#note called&nbsp;her</div><div><br></div><div>Hello <b>Ana</b>,</div>'
            '<div>#close stays: it is not at the top</div></body></html>\n')
    raw = reply("#pending\n#note called her\n\nHello Ana,\n", html=html).as_bytes()
    out = parsed(prepare_outgoing(raw, domain="example.com", now=NOW).data)
    assert text_of(out) == "Hello Ana,\n"
    body = text_of(out, "html")
    assert "#pending" not in body and "called" not in body
    assert "Hello <b>Ana</b>," in body and "#close stays" in body and "p{}" in body


def test_strip_html_handles_br_separated_lines() -> None:
    """Commands separated by <br> in one block are removed up to the first text."""
    assert strip_html_commands("<p>#pending<br>\n#priority high<br>Hi</p>") == \
        "<p><br><br>Hi</p>"
    assert strip_html_commands("<p>Hi #pending</p>") == "<p>Hi #pending</p>"


def test_missing_message_id_and_date_are_added_and_bcc_removed() -> None:
    """As a submission server does: Message-ID and Date when missing, never a Bcc header."""
    msg = reply("Hello", Bcc="lead@example.com")
    del msg["Message-ID"]
    del msg["Date"]
    out = prepare_outgoing(msg.as_bytes(), domain="example.com", now=NOW)
    sent = parsed(out.data)
    assert out.changed and out.message_id.endswith("@example.com>")
    assert sent["Message-ID"] == out.message_id
    assert sent["Date"] == "Mon, 02 Mar 2026 09:30:00 +0000"
    assert sent["Bcc"] is None


def test_format_flowed_is_kept() -> None:
    """A format=flowed part stays flowed after its commands are removed."""
    msg = reply("#close\n\nThanks, and goodbye. \nDana\n")
    msg.set_param("format", "flowed")
    out = parsed(prepare_outgoing(msg.as_bytes(), domain="example.com", now=NOW).data)
    assert out.get_param("format") == "flowed"
    assert text_of(out).startswith("Thanks, and goodbye.")


def test_command_error_mail_says_what_and_how() -> None:
    """The agent learns which commands were wrong, that nothing happened, and the syntax."""
    msg = command_error_mail(
        support_name="Example Support", support_address="support@example.com", agent=DANA,
        subject="Re: Charged\r\nBcc: evil@example.net", errors=("#snooze: unknown command",),
        in_reply_to="<reply-1@example.com>", relayed=True,
        message_id="<notice-1@example.com>", date=NOW)
    assert msg["To"] == "Dana Whitfield <dana@example.com>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["In-Reply-To"] == "<reply-1@example.com>"
    assert msg["Bcc"] is None and "\n" not in str(msg["Subject"])
    assert msg.get_params()[1:] == [("charset", "utf-8"), ("format", "flowed"), ("delsp", "no")]
    body = unflowed(msg.get_content())
    assert "#snooze: unknown command" in body and "was not sent on" in body
    assert "#assign NAME" in body


def test_a_german_desk_writes_command_errors_in_german() -> None:
    """The same mail with du, the error kept as data; English stays the default."""
    msg = command_error_mail(
        support_name="Beispiel Support", support_address="support@example.com", agent=DANA,
        subject="Re: {{ Rechnung }}", errors=("#snooze: unknown command",),
        in_reply_to=None, relayed=False, message_id="<notice-2@example.com>", date=NOW,
        language="de")
    assert str(msg["Subject"]) == "Befehle nicht ausgeführt: Re: {{ Rechnung }}"
    body = unflowed(msg.get_content())
    assert body.startswith("Hallo Dana Whitfield,\n")
    assert "deine Nachricht „Re: {{ Rechnung }}“ hat wegen ihrer Befehle nichts geändert" in body
    assert "  - #snooze: unknown command\n" in body and "Bitte korrigiere sie" in body
