"""The acknowledgement as the customer receives it, and as hostile input tries to bend it."""

from __future__ import annotations

import dataclasses
import email
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbridge.core.model import AckContext, Agent, InboundMessage
from mailbridge.errors import TemplateError
from mailbridge.mail.parse import parse_message
from mailbridge.mail.render import ACK_HTML, ACK_TEXT, Renderer

NOW = datetime(2026, 11, 30, 9, 0, 5, tzinfo=UTC)
OUTLOOK_ID = "<AM0PR04MB6417D3A5B4E8C4A0B4F7E1B2C9A42@AM0PR04MB6417.eurprd04.prod.outlook.com>"
EXPECTED_HEADERS = {
    "from", "to", "reply-to", "subject", "date", "message-id", "in-reply-to", "references",
    "auto-submitted", "x-auto-response-suppress", "x-mailbridge-thread", "mime-version",
    "content-type", "x-loop",
}  # fmt: skip

HOSTILE = st.lists(
    st.one_of(
        st.text(max_size=20),
        st.sampled_from(
            ["\r\n", "\r", "\n", "\x00", "Bcc: evil@example.com", "{{ 7*7 }}", "<script>", '"', ","]
        ),
        st.just("=?utf-8?q?x=0D=0ABcc:_evil@example.com?="),
    ),
    max_size=12,
).map("".join)


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def original(subject: str = "Printer on fire", **changes: object) -> InboundMessage:
    msg = InboundMessage(
        message_id=OUTLOOK_ID, from_=(), sender=None, reply_to=(), to=(), cc=(),
        return_path=None, subject=subject, date=NOW, in_reply_to=("<a@x>",),
        references=("<a@x>",),
    )  # fmt: skip
    return dataclasses.replace(msg, **changes)  # type: ignore[arg-type]


def context(**changes: object) -> AckContext:
    ctx = AckContext(
        support_name="Acme Support",
        support_address="support@acme.example",
        customer_name="Ana Souza",
        customer_address="ana@example.com",
        subject="Printer on fire",
        thread_ref="MB-1042",
        agent=Agent(name="Dana Whitfield", email="dana@acme.example"),
        due=datetime(2026, 11, 30, 13, 30, tzinfo=UTC),
        timezone="Europe/Berlin",
        received=NOW,
    )
    return dataclasses.replace(ctx, **changes)  # type: ignore[arg-type]


def render(
    renderer: Renderer, ctx: AckContext | None = None, inbound: InboundMessage | None = None
) -> EmailMessage:
    return renderer.render_ack(
        ctx or context(),
        inbound or original(),
        message_id="<ack-1@acme.example>",
        date=NOW,
        now=NOW,
    )


def parts(msg: EmailMessage) -> tuple[str, str]:
    """The text and HTML parts as the customer's client decodes them, from the wire bytes."""
    wire = email.message_from_bytes(msg.as_bytes(), policy=default)
    assert isinstance(wire, EmailMessage)
    text, html = wire.get_body(("plain",)), wire.get_body(("html",))
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    return text.get_content().replace("\r\n", "\n"), html.get_content().replace("\r\n", "\n")


# --- what the customer reads --------------------------------------------------------


def test_text_part_names_customer_agent_time_and_ref(renderer: Renderer) -> None:
    """The text greets by name, names the agent and the time, and gives the ref."""
    text, _ = parts(render(renderer))
    assert text.startswith("Hello Ana Souza,\n")
    assert "“Printer on fire”" in text
    assert "Dana Whitfield will answer you personally today by 14:30 (Berlin time)." in text
    assert "[#MB-1042]" in text
    assert "keep it in the subject when you\nwrite again" in text
    assert text.rstrip().endswith("Dana Whitfield\nAcme Support")
    assert "do not reply" not in text.lower()


def test_html_part_says_the_same_without_links_or_images(renderer: Renderer) -> None:
    """The HTML alternative carries the same facts and no links, images or scripts."""
    _, html = parts(render(renderer))
    assert "<p>Hello Ana Souza,</p>" in html
    assert "<strong>Dana Whitfield</strong>" in html
    assert "today by 14:30 (Berlin time)" in html
    assert "[#MB-1042]" in html
    assert not re.search(r"<(a|img|script|link)\b", html)


def test_greeting_without_a_name_is_plain(renderer: Renderer) -> None:
    """No display name (or just an address as name) gives "Hello,"."""
    for name in ("", "ana@example.com", "  \r\n"):
        text, html = parts(render(renderer, context(customer_name=name)))
        assert text.startswith("Hello,\n"), name
        assert "<p>Hello,</p>" in html


def test_empty_subject_is_not_quoted(renderer: Renderer) -> None:
    """Without a subject the text says "your message" without empty quotes."""
    msg = render(renderer, context(subject=""), original(subject=""))
    text, _ = parts(msg)
    assert "Thank you for your message. It has reached us" in text
    assert msg["Subject"] == "Re: your message [#MB-1042]"


def test_due_on_a_later_day_spells_out_the_date(renderer: Renderer) -> None:
    """A due time beyond tomorrow names weekday and date in the desk's zone."""
    ctx = context(due=datetime(2026, 12, 3, 8, 0, tzinfo=UTC), timezone="America/New_York")
    text, _ = parts(render(renderer, ctx))
    assert "will answer you personally Thursday 3 December by 03:00 (New York time)." in text


# --- headers ------------------------------------------------------------------------


def test_headers_make_a_threaded_auto_reply(renderer: Renderer) -> None:
    """From, To, Reply-To, threading and RFC 3834 headers are all set."""
    wire = email.message_from_bytes(render(renderer).as_bytes(), policy=default)
    assert str(wire["From"]) == '"Dana Whitfield, Acme Support" <support@acme.example>'
    assert str(wire["To"]) == "Ana Souza <ana@example.com>"
    assert str(wire["Reply-To"]) == "Acme Support <support@acme.example>"
    assert str(wire["Subject"]) == "Re: Printer on fire [#MB-1042]"
    assert wire["Date"].datetime == NOW.replace(microsecond=0)
    assert str(wire["Message-ID"]) == "<ack-1@acme.example>"
    assert str(wire["In-Reply-To"]) == OUTLOOK_ID
    assert str(wire["References"]).split() == ["<a@x>", OUTLOOK_ID]
    assert str(wire["Auto-Submitted"]) == "auto-replied"
    assert str(wire["X-Auto-Response-Suppress"]) == "All"
    assert str(wire["X-Mailbridge-Thread"]) == "MB-1042"
    assert str(wire["X-Loop"]) == "support@acme.example"
    assert {k.lower() for k in wire} == EXPECTED_HEADERS


def test_body_is_multipart_alternative_text_then_html_in_utf8(renderer: Renderer) -> None:
    """The body is text/plain then text/html, both UTF-8."""
    msg = render(renderer)
    assert msg.get_content_type() == "multipart/alternative"
    kinds = [(p.get_content_type(), p.get_content_charset()) for p in msg.iter_parts()]
    assert kinds == [("text/plain", "utf-8"), ("text/html", "utf-8")]


def test_without_parent_ids_there_is_no_threading_header(renderer: Renderer) -> None:
    """A message without Message-ID gets no In-Reply-To and no References."""
    msg = render(renderer, inbound=original(message_id=None, in_reply_to=(), references=()))
    assert msg["In-Reply-To"] is None
    assert msg["References"] is None


def test_non_ascii_names_and_subject_are_rfc2047_encoded(renderer: Renderer) -> None:
    """Non-ASCII names and subjects go out encoded, as ASCII headers, and read back intact."""
    ctx = context(customer_name="Zoë Ångström", support_name="Süd-Support", subject="Grüße")
    msg = render(renderer, ctx, original(subject="Grüße aus Köln"))
    wire = msg.as_bytes()
    head = wire.split(b"\r\n\r\n")[0]
    assert head.isascii()
    assert b"=?utf-8?" in head
    back = parse_message(wire)
    assert back.to[0].name == "Zoë Ångström"
    assert back.from_[0].name == "Dana Whitfield, Süd-Support"
    assert back.subject == "Re: Grüße aus Köln [#MB-1042]"
    assert "Hello Zoë Ångström," in back.text


def test_smtputf8_customer_address_is_kept(renderer: Renderer) -> None:
    """A non-ASCII customer address gives an SMTPUTF8 message addressed to exactly it."""
    msg = render(renderer, context(customer_name="José", customer_address="josé@exämple.com"))
    back = parse_message(msg.as_bytes())
    assert [(a.name, a.addr) for a in back.to] == [("José", "josé@exämple.com")]


# --- message text is data -----------------------------------------------------------


def test_template_syntax_in_message_text_reaches_the_customer_literally(renderer: Renderer) -> None:
    """`{{ 7*7 }}` in a name or subject is printed, never evaluated."""
    ctx = context(customer_name="{{ 7*7 }}", subject="{% raw %}{{ 7*7 }}")
    msg = render(renderer, ctx, original(subject="{{ 7*7 }}"))
    text, html = parts(msg)
    assert "Hello {{ 7*7 }}," in text
    assert "“{% raw %}{{ 7*7 }}”" in text
    assert "{{ 7*7 }}" in html
    assert "49" not in text and "49" not in html
    assert str(msg["Subject"]) == "Re: {{ 7*7 }} [#MB-1042]"


def test_markup_in_a_name_is_escaped_in_html_and_plain_in_text(renderer: Renderer) -> None:
    """`<script>` in a name is escaped in the HTML part and plain text in the text part."""
    ctx = context(customer_name="<script>alert(1)</script>", subject="<b>bold</b> & more")
    text, html = parts(render(renderer, ctx))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; more" in html
    assert "Hello <script>alert(1)</script>," in text


def test_subject_with_crlf_cannot_add_a_bcc(renderer: Renderer) -> None:
    """A subject "x\\r\\nBcc: evil@example.com" stays inside the Subject header."""
    msg = render(renderer, inbound=original(subject="x\r\nBcc: evil@example.com"))
    wire = msg.as_bytes()
    assert b"\r\nBcc:" not in wire
    assert str(msg["Subject"]) == "Re: x Bcc: evil@example.com [#MB-1042]"


def test_encoded_word_subject_cannot_add_a_bcc(renderer: Renderer) -> None:
    """An RFC 2047 word hiding CR LF does not become a header (Python 3.11 decodes it on set)."""
    evil = "=?utf-8?q?x=0D=0ABcc:_evil@example.com?="
    msg = render(renderer, context(customer_name=evil), original(subject=evil))
    wire = email.message_from_bytes(msg.as_bytes(), policy=default)
    assert wire["Bcc"] is None
    assert len(wire["To"].addresses) == 1
    assert {k.lower() for k in wire} == EXPECTED_HEADERS


@settings(max_examples=150, deadline=None)
@given(name=HOSTILE, subject=HOSTILE)
def test_any_name_and_subject_give_one_safe_message(
    renderer: Renderer, name: str, subject: str
) -> None:
    """Any name and subject give one To, a one-line Subject with the ref, no extra header."""
    ctx = context(customer_name=name, subject=subject)
    wire_bytes = render(renderer, ctx, original(subject=subject)).as_bytes()
    wire = email.message_from_bytes(wire_bytes, policy=default)
    assert [a.addr_spec for a in wire["To"].addresses] == ["ana@example.com"]
    raw_subject = str(wire["Subject"])
    assert "\r" not in raw_subject and "\n" not in raw_subject
    assert "[#MB-1042]" in raw_subject
    assert {k.lower() for k in wire} == EXPECTED_HEADERS
    head = wire_bytes.split(b"\r\n\r\n")[0]
    names = [
        line.split(b":")[0].lower() for line in head.split(b"\r\n") if line[:1] not in (b" ", b"\t")
    ]
    assert sorted(names) == sorted(n.encode() for n in EXPECTED_HEADERS)


# --- operator templates -------------------------------------------------------------


def test_operator_template_overrides_and_falls_back(tmp_path: Path) -> None:
    """An operator folder may override one template; the other comes from the package."""
    (tmp_path / ACK_TEXT).write_text(
        "Hi {{ greeting_name }}, ref {{ ref_tag }}.\n", encoding="utf-8"
    )
    text, html = parts(render(Renderer(tmp_path)))
    assert text == "Hi Ana Souza, ref [#MB-1042].\n"
    assert "<strong>Dana Whitfield</strong>" in html


def test_operator_templates_are_sandboxed(tmp_path: Path) -> None:
    """Reaching for Python internals from an operator template is refused."""
    (tmp_path / ACK_TEXT).write_text(
        "{{ ''.__class__.__mro__[1].__subclasses__() }}\n", encoding="utf-8"
    )
    with pytest.raises(TemplateError, match=r"ack\.txt\.j2, line 1: SecurityError"):
        render(Renderer(tmp_path))


def test_template_syntax_error_names_template_and_line(tmp_path: Path) -> None:
    """A broken template fails at construction, naming file and line."""
    (tmp_path / ACK_HTML).write_text("<p>ok</p>\n<p>{% if %}</p>\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"ack\.html\.j2, line 2: "):
        Renderer(tmp_path)


def test_unknown_variable_is_an_error_not_a_blank(tmp_path: Path) -> None:
    """StrictUndefined: a misspelt variable fails loudly with its line."""
    (tmp_path / ACK_TEXT).write_text("Hello\n{{ agnet_name }}\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"line 2: UndefinedError: 'agnet_name' is undefined"):
        render(Renderer(tmp_path))


def test_bad_inputs_are_refused(renderer: Renderer) -> None:
    """A naive date, a malformed Message-ID or an unusable address raise ValueError."""
    with pytest.raises(ValueError, match="timezone-aware"):
        renderer.render_ack(
            context(), original(), message_id="<a@b>", date=NOW.replace(tzinfo=None), now=NOW
        )
    with pytest.raises(ValueError, match="Message-ID"):
        renderer.render_ack(context(), original(), message_id="a@b", date=NOW, now=NOW)
    with pytest.raises(ValueError, match="not a usable"):
        render(renderer, context(customer_address="not-an-address"))
