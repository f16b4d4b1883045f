"""The acknowledgement in English and German, with signature, photo, FAQ and shift starts."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mailbridge.config.languages import shipped_languages
from mailbridge.core.model import AckContext, Agent, FaqLink, UpdateContext
from mailbridge.errors import TemplateError
from mailbridge.mail.render import ACK_TEXT, Renderer
from tests.mail.test_render import original, parts, render, render_update, update_context

NOW = datetime(2026, 11, 30, 9, 0, 5, tzinfo=UTC)  # Monday, 10:00 in Berlin
DANA = Agent("Dana Whitfield", "dana@acme.example", title="Customer Success",
             signature="Dana Whitfield\nCustomer Success, Acme Ltd\n+49 30 1234 5678",
             photo_url="https://acme.example/team/dana.jpg")
FAQ = (FaqLink("Resetting your password", "https://help.acme.example/password"),
       FaqLink("Invoices <and> receipts", "https://help.acme.example/invoices?a=1&b=2"))
DUTCH_PHRASES = """
today = "vandaag"
tomorrow = "morgen"
weekdays = ["maandag", "dinsdag", "woensdag", "donderdag", "vrijdag", "zaterdag", "zondag"]
months = ["januari", "februari", "maart", "april", "mei", "juni", "juli", "augustus",
          "september", "oktober", "november", "december"]
date = "{weekday} {day} {month}"
date_with_year = "{weekday} {day} {month} {year}"
due = "{day} vóór {time} ({zone})"
due_dated = "{day} vóór {time} ({zone})"
at = "{day} om {time} ({zone})"
at_dated = "{day} om {time} ({zone})"
your_time = "{ours}, bij u {time}"
your_time_relative = "{ours}, bij u {day} {time}"
your_time_dated = "{ours}, bij u {day} {time}"
closed = "We zijn nu gesloten en {when} weer open."
city_zone = "{city}-tijd"
[zones]
Berlin = "Berlijnse tijd"
"""
"""Date words for Dutch, which has no built-in phrases: an operator's nl/phrases.toml."""


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def context(**changes: object) -> AckContext:
    ctx = AckContext(
        support_name="Acme Support", support_address="support@acme.example",
        customer_name="Ana Souza", customer_address="ana@example.com",
        subject="Drucker brennt", thread_ref="MB-1042", agent=DANA,
        due=datetime(2026, 11, 30, 13, 30, tzinfo=UTC), timezone="Europe/Berlin", received=NOW,
    )  # fmt: skip
    return dataclasses.replace(ctx, **changes)  # type: ignore[arg-type]


def test_english_and_german_are_shipped() -> None:
    """Both languages have their own folder; the renderer knows them."""
    assert {"de", "en"} <= set(shipped_languages())
    assert {"de", "en"} <= set(Renderer().languages)


def test_the_german_ack_writes_german_dates(renderer: Renderer) -> None:
    """Greeting, promise, reference and closing in German, times as German writes them."""
    text, html = parts(render(renderer, context(language="de", agent=Agent("Dana Whitfield",
                                                                           "dana@acme.example"))))
    assert text.startswith(
        "Guten Tag Ana Souza,\n\nvielen Dank für Ihre Nachricht „Drucker brennt“.")
    assert ("Sie ist bei uns angekommen, und Dana Whitfield antwortet Ihnen persönlich "
            "heute bis 14:30 Uhr (Berliner Zeit).") in text
    assert "Ihre Referenz ist [#MB-1042]." in text
    assert text.rstrip().endswith("Viele Grüße\nDana Whitfield\nAcme Support")
    assert '<html lang="de">' in html
    assert "<strong>heute bis 14:30 Uhr (Berliner Zeit)</strong>" in html


def test_the_german_ack_spells_out_a_later_day(renderer: Renderer) -> None:
    """A promise two days ahead: "Mittwoch, 2. Dezember, bis 10:00 Uhr"."""
    ctx = context(language="de", due=datetime(2026, 12, 2, 9, 0, tzinfo=UTC),
                  customer_offset=timedelta(hours=-5))
    text, _ = parts(render(renderer, ctx))
    assert ("antwortet Ihnen persönlich Mittwoch, 2. Dezember, bis 10:00 Uhr (Berliner Zeit), "
            "bei Ihnen 04:00 Uhr.") in text


def test_a_language_variant_or_unknown_language_falls_back(renderer: Renderer) -> None:
    """"de-AT" uses the German folder; a language without templates the default (English)."""
    assert parts(render(renderer, context(language="de-AT")))[0].startswith("Guten Tag")
    assert parts(render(renderer, context(language="fr")))[0].startswith("Hello")


def test_signature_title_and_photo(renderer: Renderer) -> None:
    """The signature replaces the plain closing; the photo is an https <img> with alt text."""
    text, html = parts(render(renderer, context()))
    assert text.rstrip().endswith(
        "Kind regards,\nDana Whitfield\nCustomer Success, Acme Ltd\n+49 30 1234 5678")
    assert ("<strong>Dana Whitfield</strong><br>\nCustomer Success, Acme Ltd<br>\n"
            "+49 30 1234 5678</div>") in html
    [img] = re.findall(r"<img [^>]*>", html)
    assert 'src="https://acme.example/team/dana.jpg"' in img
    assert 'alt="Dana Whitfield"' in img
    assert "<img" not in text
    titled = Agent("Dana Whitfield", "dana@acme.example", title="Customer Success")
    text, html = parts(render(renderer, context(agent=titled)))
    assert text.rstrip().endswith("Dana Whitfield, Customer Success\nAcme Support")
    assert "<img" not in html
    german = parts(render(renderer, context(language="de")))[1]
    assert 'alt="Dana Whitfield"' in german


def test_a_photo_that_is_not_https_is_left_out(renderer: Renderer) -> None:
    """Only an https URL becomes an image; anything else is dropped, not shown."""
    for url in ("http://acme.example/dana.jpg", "javascript:alert(1)",
                'https://x.example/a.jpg" onerror="alert(1)', "https://x.example/a b.jpg"):
        agent = dataclasses.replace(DANA, photo_url=url)
        _, html = parts(render(renderer, context(agent=agent)))
        assert "<img" not in html, url


def test_hostile_signature_is_data(renderer: Renderer) -> None:
    """Markup and template syntax in a signature are printed, never run."""
    agent = dataclasses.replace(DANA, signature="<b>Dana</b>\n{{ 7*7 }}\x00")
    text, html = parts(render(renderer, context(agent=agent)))
    assert "<b>Dana</b>\n{{ 7*7 }}" in text
    assert "&lt;b&gt;Dana&lt;/b&gt;</strong><br>\n{{ 7*7 }}" in html and "49" not in html


def test_faq_articles_are_listed_while_they_wait(renderer: Renderer) -> None:
    """Matching articles follow a short line, as text and as links; none, no line."""
    text, html = parts(render(renderer, context(faq=FAQ)))
    assert ("While you wait, these may help:\n- Resetting your password\n"
            "  https://help.acme.example/password\n- Invoices <and> receipts\n"
            "  https://help.acme.example/invoices?a=1&b=2\n") in text
    assert ('<li><a href="https://help.acme.example/invoices?a=1&amp;b=2" style="color:#1a73e8;">'
            "Invoices &lt;and&gt; receipts</a></li>") in html
    german, _ = parts(render(renderer, context(faq=FAQ[:1], language="de")))
    assert "Während Sie warten, hilft Ihnen vielleicht das hier:\n- Resetting" in german
    plain, html = parts(render(renderer, context()))
    assert "While you wait" not in plain and "<a " not in html


def test_only_https_faq_links_and_at_most_three(renderer: Renderer) -> None:
    """A non-https link is dropped; more than three are cut to three."""
    links = (FaqLink("Bad", "http://x.example/"), *(FaqLink(f"A{n}", f"https://x.example/{n}")
                                                    for n in range(5)))
    text, _ = parts(render(renderer, context(faq=links)))
    assert "Bad" not in text
    assert re.findall(r"^- (A\d)$", text, re.MULTILINE) == ["A0", "A1", "A2"]


def test_when_nobody_is_on_shift_the_ack_says_when_the_agent_starts(renderer: Renderer) -> None:
    """The agent's start is named before the promise, in the customer's language."""
    saturday = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    ctx = context(agent=Agent("Dana Whitfield", "dana@acme.example"),
                  agent_starts_at=datetime(2026, 11, 30, 8, 0, tzinfo=UTC),
                  due=datetime(2026, 11, 30, 12, 0, tzinfo=UTC), received=saturday)
    msg = renderer.render_ack(ctx, original(), message_id="<a@acme.example>", date=saturday,
                              now=saturday)
    text, html = parts(msg)
    assert ("It has reached us. Dana Whitfield is back on duty Monday 30 November at 09:00 "
            "(Berlin time) and will answer you personally Monday 30 November by 13:00 "
            "(Berlin time).") in text
    assert "is back on duty Monday 30 November at 09:00 (Berlin time)" in html
    msg = renderer.render_ack(dataclasses.replace(ctx, language="de"), original(),
                              message_id="<a@acme.example>", date=saturday, now=saturday)
    text, _ = parts(msg)
    assert ("Sie ist bei uns angekommen. Dana Whitfield ist am Montag, 30. November, um 09:00 "
            "Uhr (Berliner Zeit) wieder im Dienst und antwortet Ihnen persönlich Montag, "
            "30. November, bis 13:00 Uhr (Berliner Zeit).") in text


def test_a_closed_desk_and_a_later_agent_both_say_so(renderer: Renderer) -> None:
    """Desk opens at 09:00, the agent at 11:00: both sentences; same time: only the desk's."""
    saturday = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    ctx = context(agent=Agent("Sam", "sam@acme.example"), received=saturday,
                  opens_at=datetime(2026, 11, 30, 8, 0, tzinfo=UTC),
                  agent_starts_at=datetime(2026, 11, 30, 10, 0, tzinfo=UTC),
                  due=datetime(2026, 11, 30, 14, 0, tzinfo=UTC))
    text, _ = parts(renderer.render_ack(ctx, original(), message_id="<a@acme.example>",
                                        date=saturday, now=saturday))
    assert ("open again Monday 30 November at 09:00 (Berlin time). Sam is back on duty "
            "Monday 30 November at 11:00 (Berlin time) ") in text
    same = dataclasses.replace(ctx, agent_starts_at=ctx.opens_at)
    text, _ = parts(renderer.render_ack(same, original(), message_id="<a@acme.example>",
                                        date=saturday, now=saturday))
    assert "back on duty" not in text
    assert "(Berlin time). Sam will answer you personally Monday 30 November by 15:00" in text


def test_the_status_update_in_german(renderer: Renderer) -> None:
    """A status update to a German thread is German, signed with the agent's signature."""
    ctx: UpdateContext = update_context(language="de", agent=DANA, queue_ahead=2, opened=True)
    text, html = parts(render_update(renderer, ctx))
    assert text.startswith("Guten Tag Ana Souza,\n")
    assert ("Wir haben Sie nicht vergessen.\n"
            "Ihre Anfrage liegt bei Dana Whitfield. Sie wurde bereits geöffnet, aber noch "
            "nicht beantwortet.\n"
            "Vor Ihrer Anfrage sind gerade noch 2 andere an der Reihe.\n"
            "Sie hören morgen bis 12:00 Uhr (Berliner Zeit) von uns.") in text
    assert text.rstrip().endswith("Viele Grüße\nDana Whitfield\nCustomer Success, Acme Ltd\n"
                                  "+49 30 1234 5678")
    assert 'alt="Dana Whitfield"' in html


def test_adding_a_language_is_one_folder(tmp_path: Path) -> None:
    """An operator folder nl/ with templates and phrases.toml makes Dutch acks."""
    folder = tmp_path / "nl"
    folder.mkdir()
    (folder / "ack.txt.j2").write_text("Hallo {{ greeting_name }}, {{ due_words }}.\n")
    (folder / "phrases.toml").write_text(DUTCH_PHRASES)
    custom = Renderer(tmp_path)
    assert "nl" in custom.languages
    text, html = parts(render(custom, context(language="nl")))
    assert text == "Hallo Ana Souza, vandaag vóór 14:30 (Berlijnse tijd).\n"
    assert "Thank you for your message" in html  # what nl/ leaves out comes from English


def test_a_new_language_without_phrases_is_refused(tmp_path: Path) -> None:
    """A language folder needs its date words when none are built in."""
    (tmp_path / "nl").mkdir()
    (tmp_path / "nl" / ACK_TEXT).write_text("Hallo\n")
    with pytest.raises(TemplateError, match=r"language nl: no phrases\.toml"):
        Renderer(tmp_path)


def test_top_level_operator_templates_are_the_default_languages(tmp_path: Path) -> None:
    """The old layout (templates at the top) overrides the default language only."""
    (tmp_path / ACK_TEXT).write_text("Custom {{ ref_tag }}\n", encoding="utf-8")
    custom = Renderer(tmp_path)
    assert parts(render(custom, context()))[0] == "Custom [#MB-1042]\n"
    assert parts(render(custom, context(language="de")))[0].startswith("Guten Tag")
    german_desk = Renderer(tmp_path, default_language="de")
    assert parts(render(german_desk, context(language="de")))[0] == "Custom [#MB-1042]\n"
    assert parts(render(german_desk, context(language="en")))[0].startswith("Hello")
