"""Our mail (ack, status update, staff notices) as received, and as hostile input bends it."""

from __future__ import annotations

import dataclasses
import email
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailbridge.core.model import AckContext, Agent, InboundMessage, NoticeContext, UpdateContext
from mailbridge.errors import TemplateError
from mailbridge.mail.flowed import unflowed
from mailbridge.mail.headers import is_message_id
from mailbridge.mail.parse import parse_message
from mailbridge.mail.render import (
    ACK_HTML,
    ACK_TEXT,
    NUDGE_TEXT,
    TEMPLATE_NAMES,
    UPDATE_HTML,
    UPDATE_TEXT,
    Rendered,
    Renderer,
)

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


THREAD: dict[str, Any] = {
    "support_name": "Acme Support", "support_address": "support@acme.example",
    "customer_name": "Ana Souza", "customer_address": "ana@example.com",
    "subject": "Printer on fire", "thread_ref": "MB-1042",
    "agent": Agent(name="Dana Whitfield", email="dana@acme.example"),
    "timezone": "Europe/Berlin",
}
"""What an acknowledgement and a status update of one thread have in common."""


def context(**changes: object) -> AckContext:
    ctx = AckContext(**THREAD, due=datetime(2026, 11, 30, 13, 30, tzinfo=UTC), received=NOW)
    return dataclasses.replace(ctx, **changes)  # type: ignore[arg-type]


def render(
    renderer: Renderer, ctx: AckContext | None = None, inbound: InboundMessage | None = None
) -> Rendered:
    return renderer.render_ack(
        ctx or context(),
        inbound or original(),
        message_id="<ack-1@acme.example>",
        date=NOW,
        now=NOW,
    )


def parts(msg: Rendered) -> tuple[str, str]:
    """The text and HTML parts as the customer's client decodes them, from the wire bytes."""
    wire = email.message_from_bytes(msg.as_bytes(), policy=default)
    assert isinstance(wire, EmailMessage)
    text, html = wire.get_body(("plain",)), wire.get_body(("html",))
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    assert text.get_param("format") == "flowed"
    return unflowed(text.get_content()), html.get_content().replace("\r\n", "\n")


# --- what the customer reads --------------------------------------------------------


def test_text_part_names_customer_agent_time_and_ref(renderer: Renderer) -> None:
    """The text greets by name, names the agent and the time, and gives the ref."""
    text, _ = parts(render(renderer))
    assert text.startswith("Hello Ana Souza,\n")
    assert "“Printer on fire”" in text
    assert "Dana Whitfield will answer you personally today by 14:30 (Berlin time)." in text
    assert "[#MB-1042]" in text
    assert "keep it in the subject when you write again" in text
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
    msg = render(renderer).message
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


# --- the acknowledgement: the customer's clock and a closed desk ---------------------


def test_ack_adds_the_customers_clock_when_their_offset_differs(renderer: Renderer) -> None:
    """A customer writing from New York also reads the promise on their own clock."""
    text, html = parts(render(renderer, context(customer_offset=timedelta(hours=-5))))
    promise = "today by 14:30 (Berlin time), that is 08:30 your time"
    assert f"Dana Whitfield will answer you personally {promise}." in text
    assert f"<strong>{promise}</strong>" in html


def test_ack_says_when_a_closed_desk_opens_before_the_promise(renderer: Renderer) -> None:
    """With `opens_at` ahead, the opening sentence comes right before the promise."""
    ctx = context(
        opens_at=datetime(2026, 11, 30, 12, 0, tzinfo=UTC),
        due=datetime(2026, 11, 30, 15, 0, tzinfo=UTC),
        customer_offset=timedelta(hours=5, minutes=30),
    )
    text, html = parts(render(renderer, ctx))
    opening = "We are closed right now and open again today at 13:00 (Berlin time)."
    assert (
        f"It has reached us. {opening} Dana Whitfield will answer you personally "
        "today by 16:00 (Berlin time), that is 20:30 your time."
    ) in text
    assert opening in html
    assert html.index(opening) < html.index("will answer you personally")


def test_ack_does_not_say_closed_once_the_desk_has_opened(renderer: Renderer) -> None:
    """An `opens_at` already past at render time adds no "closed" sentence."""
    text, html = parts(render(renderer, context(opens_at=NOW - timedelta(minutes=1))))
    assert "closed" not in text and "closed" not in html
    assert "It has reached us, and Dana Whitfield will answer you personally" in text


# --- the status update --------------------------------------------------------------

UPDATE_HEADERS = EXPECTED_HEADERS
NOTICE_HEADERS = {
    "from", "to", "reply-to", "subject", "date", "message-id", "auto-submitted",
    "x-auto-response-suppress", "x-loop", "x-mailbridge-thread", "mime-version", "content-type",
}  # fmt: skip
CUSTOMER_ID = "<first@example.com>"
CUSTOMER_REPLY_ID = "<second@example.com>"


def update_context(**changes: object) -> UpdateContext:
    ctx = UpdateContext(
        **THREAD,
        due=datetime(2026, 12, 1, 11, 0, tzinfo=UTC),
        received=datetime(2026, 11, 30, 8, 0, tzinfo=UTC),
        in_reply_to=CUSTOMER_REPLY_ID,
        references=(CUSTOMER_ID, "<ack-1@acme.example>", CUSTOMER_REPLY_ID),
    )
    return dataclasses.replace(ctx, **changes)  # type: ignore[arg-type]


def render_update(renderer: Renderer, ctx: UpdateContext | None = None) -> Rendered:
    return renderer.render_status_update(
        ctx or update_context(), message_id="<update-1@acme.example>", date=NOW, now=NOW
    )


def test_update_says_we_have_not_forgotten_and_when(renderer: Renderer) -> None:
    """The update says who has the request, whether it was opened, its place in the queue
    and when the customer hears back, in the desk's zone and theirs."""
    ctx = update_context(customer_offset=timedelta(hours=-5), queue_ahead=1, opened=False)
    text, html = parts(render_update(renderer, ctx))
    assert text.startswith("Hello Ana Souza,\n")
    assert ("“Printer on fire” [#MB-1042]: we have not forgotten you.\n"
            "Your request is with Dana Whitfield. It has not been opened yet.\n"
            "Right now 1 request is ahead of yours.\n"
            "You will hear from us tomorrow by 12:00 (Berlin time), that is 06:00 your time.\n"
            ) in text
    assert "still on it" not in text
    assert text.rstrip().endswith("Dana Whitfield\nAcme Support")
    assert "do not reply" not in text.lower()
    assert "<p>Your request is with Dana Whitfield. It has not been opened yet.</p>" in html
    assert "<p>Right now 1 request is ahead of yours.</p>" in html
    assert "<strong>tomorrow by 12:00 (Berlin time), that is 06:00 your time</strong>" in html
    assert not re.search(r"<(a|img|script|link)\b", html)


def test_update_says_nothing_it_does_not_know(renderer: Renderer) -> None:
    """Without the mailbox's word on opening, and without a queue count, neither is said."""
    text, _html = parts(render_update(renderer, update_context(opened=None)))
    assert "we have not forgotten you.\nYour request is with Dana Whitfield.\nYou will hear" \
        in text
    assert "opened" not in text and "ahead" not in text and "next" not in text
    opened, _ = parts(render_update(renderer, update_context(opened=True, queue_ahead=0)))
    assert ("Your request is with Dana Whitfield. It has been opened but not answered yet.\n"
            "Right now yours is next.\n") in opened


def test_update_headers_thread_under_the_customers_message(renderer: Renderer) -> None:
    """From the agent at the desk, to the customer, threaded, marked as an auto-reply."""
    wire = email.message_from_bytes(render_update(renderer).as_bytes(), policy=default)
    assert str(wire["From"]) == '"Dana Whitfield, Acme Support" <support@acme.example>'
    assert str(wire["To"]) == "Ana Souza <ana@example.com>"
    assert str(wire["Reply-To"]) == "Acme Support <support@acme.example>"
    assert str(wire["Subject"]) == "Re: Printer on fire [#MB-1042]"
    assert str(wire["Message-ID"]) == "<update-1@acme.example>"
    assert str(wire["In-Reply-To"]) == CUSTOMER_REPLY_ID
    assert str(wire["References"]).split() == [
        CUSTOMER_ID, "<ack-1@acme.example>", CUSTOMER_REPLY_ID,
    ]  # fmt: skip
    assert str(wire["Auto-Submitted"]) == "auto-replied"
    assert str(wire["X-Auto-Response-Suppress"]) == "All"
    assert str(wire["X-Loop"]) == "support@acme.example"
    assert str(wire["X-Mailbridge-Thread"]) == "MB-1042"
    assert {k.lower() for k in wire} == UPDATE_HEADERS


def test_update_references_are_capped_cleaned_and_end_with_the_parent(renderer: Renderer) -> None:
    """Malformed ids are dropped, at most 20 are kept, and the In-Reply-To id comes last."""
    many = tuple(f"<r{n}@example.com>" for n in range(30))
    ctx = update_context(references=("bad id", "<x=?y@z>", *many), in_reply_to="<p@example.com>")
    refs = str(render_update(renderer, ctx)["References"]).split()
    assert len(refs) == 20
    assert refs[-1] == "<p@example.com>" and refs[0] == "<r11@example.com>"


def test_update_without_a_parent_has_no_in_reply_to(renderer: Renderer) -> None:
    """No (or a malformed) In-Reply-To id gives no In-Reply-To header; References stay."""
    for parent in (None, "not-an-id"):
        msg = render_update(renderer, update_context(in_reply_to=parent))
        assert msg["In-Reply-To"] is None
        assert str(msg["References"]).split()[-1] == CUSTOMER_REPLY_ID
    msg = render_update(renderer, update_context(in_reply_to=None, references=()))
    assert msg["References"] is None


# --- staff notices ------------------------------------------------------------------


def notice_context(**changes: object) -> NoticeContext:
    ctx = NoticeContext(
        kind="escalation",
        to_name="Lee Lead",
        to_address="lee@acme.example",
        support_name="Acme Support",
        support_address="support@acme.example",
        thread_ref="MB-1042",
        subject="Printer on fire",
        customer_address="ana@example.com",
        agent=Agent(name="Dana Whitfield", email="dana@acme.example"),
        policy="standard",
        priority="high",
        deadline="first_response",
        due=NOW - timedelta(minutes=12),
        received=datetime(2026, 11, 30, 5, 18, tzinfo=UTC),
        timezone="Europe/Berlin",
    )
    return dataclasses.replace(ctx, **changes)  # type: ignore[arg-type]


def render_notice(renderer: Renderer, ctx: NoticeContext | None = None) -> Rendered:
    return renderer.render_notice(
        ctx or notice_context(), message_id="<notice-1@acme.example>", date=NOW, now=NOW
    )


def test_escalation_headers_are_internal_and_automatic(renderer: Renderer) -> None:
    """To the lead, from mailbridge at the desk, auto-generated, with the thread header."""
    wire = email.message_from_bytes(render_notice(renderer).as_bytes(), policy=default)
    assert str(wire["From"]) == '"mailbridge, Acme Support" <support@acme.example>'
    assert str(wire["To"]) == "Lee Lead <lee@acme.example>"
    assert str(wire["Subject"]) == "[#MB-1042] first response overdue: Printer on fire"
    assert str(wire["Message-ID"]) == "<notice-1@acme.example>"
    assert str(wire["Auto-Submitted"]) == "auto-generated"
    assert str(wire["X-Auto-Response-Suppress"]) == "All"
    assert str(wire["X-Mailbridge-Thread"]) == "MB-1042"
    assert str(wire["Reply-To"]) == "Acme Support <support@acme.example>", \
        "a reply reaches the watched mailbox"
    assert {k.lower() for k in wire} == NOTICE_HEADERS


def test_escalation_gives_the_facts(renderer: Renderer) -> None:
    """Thread, customer, policy, which deadline and when (words and ISO), arrival, agent."""
    text, html = parts(render_notice(renderer))
    assert text.startswith("Hello Lee Lead,\n")
    assert "The first response for [#MB-1042] is overdue by 12 min." in text
    assert "Thread:    [#MB-1042] “Printer on fire”" in text
    assert "Customer:  ana@example.com" in text
    assert "Policy:    standard, priority high" in text
    assert "Deadline:  first response, due today by 09:48 (Berlin time)" in text
    assert "(2026-11-30T09:48:05+01:00)" in text
    assert "Arrived:   today at 06:18 (Berlin time), 3 h 42 min ago" in text
    assert "Agent:     Dana Whitfield <dana@acme.example>" in text
    assert "overdue by 12 min" in html
    assert '<time datetime="2026-11-30T09:48:05+01:00">' in html
    assert "Dana Whitfield &lt;dana@acme.example&gt;" in html


def test_nudge_says_how_long_is_left(renderer: Renderer) -> None:
    """A nudge before the deadline says "due in 25 min" (rounded down) in subject and text."""
    ctx = notice_context(
        kind="nudge", to_name="Dana Whitfield", to_address="dana@acme.example",
        due=NOW + timedelta(minutes=25, seconds=50),
    )  # fmt: skip
    msg = render_notice(renderer, ctx)
    assert str(msg["Subject"]) == "[#MB-1042] first response due in 25 min: Printer on fire"
    assert str(msg["To"]) == "Dana Whitfield <dana@acme.example>"
    text, html = parts(msg)
    assert "The first response for [#MB-1042] is due in 25 min." in text
    assert "Deadline:  first response, due today by 10:25 (Berlin time)" in text
    assert "<strong>25 min</strong>" in html


def test_a_nudge_sent_late_does_not_claim_time_is_left(renderer: Renderer) -> None:
    """A nudge rendered after the deadline says overdue, in the subject and the text."""
    ctx = notice_context(kind="nudge", deadline="periodic_update", due=NOW - timedelta(hours=2))
    msg = render_notice(renderer, ctx)
    assert str(msg["Subject"]) == "[#MB-1042] status update overdue: Printer on fire"
    text, _ = parts(msg)
    assert "The status update for [#MB-1042] was due 2 h ago." in text


def test_notice_subject_without_a_customer_subject(renderer: Renderer) -> None:
    """An empty customer subject reads "(no subject)" and a long one is cut to fit."""
    msg = render_notice(renderer, notice_context(subject=""))
    assert str(msg["Subject"]) == "[#MB-1042] first response overdue: (no subject)"
    long_subject = "word " * 100
    subject = str(render_notice(renderer, notice_context(subject=long_subject))["Subject"])
    assert len(subject) <= 200 and subject.endswith("…")


def test_unknown_notice_kind_is_refused(renderer: Renderer) -> None:
    """Only "escalation" and "nudge" exist."""
    with pytest.raises(ValueError, match="unknown notice kind"):
        render_notice(renderer, notice_context(kind="praise"))


# --- message text is data, in the new mail too ---------------------------------------


def test_update_prints_template_syntax_and_escapes_markup(renderer: Renderer) -> None:
    """{{ 7*7 }} stays literal and <script> is escaped in the update's HTML."""
    ctx = update_context(customer_name="<script>alert(1)</script>", subject="{{ 7*7 }}")
    msg = render_update(renderer, ctx)
    text, html = parts(msg)
    assert "“{{ 7*7 }}”" in text and "“{{ 7*7 }}”" in html
    assert "49" not in text and "49" not in html
    assert "Hello <script>alert(1)</script>," in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
    assert str(msg["Subject"]) == "Re: {{ 7*7 }} [#MB-1042]"


@pytest.mark.parametrize("kind", ["escalation", "nudge"])
def test_notice_prints_template_syntax_and_escapes_markup(renderer: Renderer, kind: str) -> None:
    """Customer text in a notice is printed literally and escaped in HTML."""
    ctx = notice_context(
        kind=kind, subject="{{ 7*7 }} <script>x</script>", customer_address='"<b>"@example.com',
        policy="{% if 1 %}", priority="<i>",
    )  # fmt: skip
    msg = render_notice(renderer, ctx)
    text, html = parts(msg)
    assert "“{{ 7*7 }} <script>x</script>”" in text
    assert "{{ 7*7 }} &lt;script&gt;x&lt;/script&gt;" in html and "<script>" not in html
    assert "49" not in text and "49" not in html
    assert "&#34;&lt;b&gt;&#34;@example.com" in html and "<b>" not in html
    assert "{% if 1 %}, priority &lt;i&gt;" in html
    assert str(msg["Subject"]).endswith(": {{ 7*7 }} <script>x</script>")


@settings(max_examples=100, deadline=None)
@given(name=HOSTILE, subject=HOSTILE, agent=HOSTILE, reference=HOSTILE)
def test_any_update_input_gives_one_safe_message(
    renderer: Renderer, name: str, subject: str, agent: str, reference: str
) -> None:
    """Hostile names, subject and ids give one To, a one-line Subject, no extra header."""
    ctx = update_context(
        customer_name=name, subject=subject, agent=Agent(name=agent, email="dana@acme.example"),
        in_reply_to=reference, references=(reference, CUSTOMER_ID),
    )  # fmt: skip
    wire_bytes = render_update(renderer, ctx).as_bytes()
    wire = email.message_from_bytes(wire_bytes, policy=default)
    assert [a.addr_spec for a in wire["To"].addresses] == ["ana@example.com"]
    assert [a.addr_spec for a in wire["From"].addresses] == ["support@acme.example"]
    raw_subject = str(wire["Subject"])
    assert "\r" not in raw_subject and "\n" not in raw_subject
    assert "[#MB-1042]" in raw_subject
    expected = UPDATE_HEADERS if is_message_id(reference) else UPDATE_HEADERS - {"in-reply-to"}
    assert {k.lower() for k in wire} == expected
    assert sorted(header_names(wire_bytes)) == sorted(expected)


@settings(max_examples=100, deadline=None)
@given(kind=st.sampled_from(["escalation", "nudge"]), subject=HOSTILE, to_name=HOSTILE,
       customer=HOSTILE, policy=HOSTILE)  # fmt: skip
def test_any_notice_input_gives_one_safe_message(
    renderer: Renderer, kind: str, subject: str, to_name: str, customer: str, policy: str
) -> None:
    """Hostile subject, names, customer address and policy give one To and no extra header."""
    ctx = notice_context(
        kind=kind, subject=subject, to_name=to_name, customer_address=customer, policy=policy
    )
    wire_bytes = render_notice(renderer, ctx).as_bytes()
    wire = email.message_from_bytes(wire_bytes, policy=default)
    assert [a.addr_spec for a in wire["To"].addresses] == ["lee@acme.example"]
    raw_subject = str(wire["Subject"])
    assert "\r" not in raw_subject and "\n" not in raw_subject
    # strip(): Python 3.11 may fold right after "Subject:", which reads back with a space.
    assert raw_subject.strip().startswith("[#MB-1042] first response ")
    assert {k.lower() for k in wire} == NOTICE_HEADERS
    assert sorted(header_names(wire_bytes)) == sorted(NOTICE_HEADERS)


def header_names(wire_bytes: bytes) -> list[str]:
    """The names of the top-level header lines as they are on the wire."""
    head = wire_bytes.split(b"\r\n\r\n")[0]
    lines = [line for line in head.split(b"\r\n") if line[:1] not in (b" ", b"\t")]
    return [line.split(b":")[0].lower().decode() for line in lines]


# --- operator templates for the new mail --------------------------------------------


def test_every_kind_has_packaged_templates() -> None:
    """Each kind of mail has a text and an HTML template in the package."""
    assert set(TEMPLATE_NAMES) == {"ack", "update", "escalation", "nudge", "handover", "digest"}


def test_operator_may_override_the_update_alone(tmp_path: Path) -> None:
    """An operator's update.txt.j2 is used; its HTML and every other template fall back."""
    (tmp_path / UPDATE_TEXT).write_text("Still on it: {{ due_words }}\n", encoding="utf-8")
    custom = Renderer(tmp_path)
    text, html = parts(render_update(custom))
    assert text == "Still on it: tomorrow by 12:00 (Berlin time)\n"
    assert "we have not forgotten you" in html
    assert "The first response for [#MB-1042]" in parts(render_notice(custom))[0]


def test_broken_new_templates_fail_at_construction(tmp_path: Path) -> None:
    """A syntax error in an update or notice template is reported before any mail is sent."""
    (tmp_path / UPDATE_HTML).write_text("{% for %}\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"update\.html\.j2, line 1: "):
        Renderer(tmp_path)


def test_operator_notice_templates_are_sandboxed(tmp_path: Path) -> None:
    """Python internals stay out of reach from an operator's notice template."""
    (tmp_path / NUDGE_TEXT).write_text("{{ to_name.__class__.__mro__ }}\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"nudge\.txt\.j2, line 1: SecurityError"):
        render_notice(Renderer(tmp_path), notice_context(kind="nudge"))


def test_a_personal_alias_sends_the_ack_and_replies_still_reach_the_desk(
        renderer: Renderer) -> None:
    """With a configured alias the ack comes from the agent's own address, Reply-To stays."""
    dana = Agent(name="Dana Whitfield", email="dana@acme.example",
                 from_address="dana@support.acme.example")
    wire = email.message_from_bytes(render(renderer, context(agent=dana)).as_bytes(),
                                    policy=default)
    assert str(wire["From"]) == '"Dana Whitfield, Acme Support" <dana@support.acme.example>'
    assert str(wire["Reply-To"]) == "Acme Support <support@acme.example>"
