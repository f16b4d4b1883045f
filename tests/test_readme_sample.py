"""The acknowledgement the README shows is the one the shipped templates write today.

The README block between the `sample-ack` markers is this module's output: the real
`Renderer` with the shipped English templates, for one customer of a desk in Berlin,
shown as a mail client shows it (a few headers, the text part). After a change to the
templates, write it anew with `.venv/bin/python -m tests.test_readme_sample`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mailbridge.core.model import AckContext, Address, Agent, FaqLink, InboundMessage
from mailbridge.mail.render import Renderer

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(<!-- sample-ack: .*? -->\n```text\n)(.*?)(```\n)", re.S)
NOW = datetime(2026, 12, 7, 9, 12, tzinfo=UTC)  # a Monday, 10:12 in Berlin


def sample_ack() -> str:
    """Headers and the text part of one acknowledgement, each line as the client shows it."""
    customer = Address("Kumar, Rajesh", "rajesh.kumar@example.org")
    original = InboundMessage(
        message_id="<CAF8e1x@mail.example.org>", from_=(customer,), sender=None, reply_to=(),
        to=(Address("Example Support", "support@example.com"),), cc=(), return_path=None,
        subject="Invoice 2291 charged twice", date=NOW, in_reply_to=(), references=())
    agent = Agent(name="Dana Whitfield", email="dana@example.com", title="Customer Success")
    ctx = AckContext(
        support_name="Example Support", support_address="support@example.com",
        customer_name=customer.name, customer_address=customer.addr,
        subject=original.subject, thread_ref="K7QX2M", agent=agent,
        due=datetime(2026, 12, 7, 13, 0, tzinfo=UTC), timezone="Europe/Berlin", received=NOW,
        customer_offset=timedelta(hours=5, minutes=30), queue_ahead=2,
        faq=(FaqLink("Refunds and double charges", "https://example.com/help/refunds"),))
    mail = Renderer().render_ack(ctx, original, message_id="<ack-K7QX2M@example.com>",
                                 date=NOW, now=NOW)
    text = mail.message.get_body(("plain",))
    assert text is not None and text.get_param("format") == "flowed"
    head = [f"{name}: {mail[name]}" for name in ("From", "To", "Subject")]
    # Each line as sent, its space-stuffing and the space of a soft break not shown.
    body = [line.removeprefix(" ").rstrip(" ") for line in str(text.get_content()).splitlines()]
    return "\n".join([*head, "", *body]) + "\n"


def test_the_readme_shows_the_acknowledgement_as_rendered() -> None:
    """The README's sample acknowledgement is the renderer's output, letter for letter."""
    found = BLOCK.search(README.read_text(encoding="utf-8"))
    assert found, "README.md has no sample-ack block"
    assert found[2] == sample_ack(), (
        "the README's sample acknowledgement is out of date: run "
        ".venv/bin/python -m tests.test_readme_sample")


def write() -> None:
    text = README.read_text(encoding="utf-8")
    README.write_text(BLOCK.sub(lambda m: m[1] + sample_ack() + m[3], text, count=1),
                      encoding="utf-8")


if __name__ == "__main__":
    write()
