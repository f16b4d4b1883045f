"""Staff notices and the digest in the desk's language, from the shipped templates."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

from mailbridge.mail.render import Renderer
from mailbridge.mail.samples import samples
from mailbridge.mail.staff_values import span

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _text(raw: bytes) -> tuple[str, str]:
    msg = message_from_bytes(raw, policy=default)
    assert isinstance(msg, EmailMessage)
    body = msg.get_body(("plain",))
    assert body is not None
    return str(msg["Subject"]), str(body.get_content())


def test_a_german_desk_writes_its_staff_notices_in_german() -> None:
    """Nudge, escalation, hand-over and digest: German words, "du", German dates."""
    renderer = Renderer(default_language="de")
    sample = samples(NOW, timezone="Europe/Berlin")
    assert renderer.check(sample) == []
    subject, text = _text(renderer.render_notice(sample.nudge, message_id="<n@example.com>",
                                                 date=NOW, now=NOW).as_bytes())
    assert subject.startswith("[#K7QX2M] Erstantwort fällig in 30 Min.")
    assert "läuft die Frist „Erstantwort“ in 30 Min. ab" in text and "Uhr" in text
    _, text = _text(renderer.render_notice(sample.handover, message_id="<h@example.com>",
                                           date=NOW, now=NOW).as_bytes())
    assert "liegt jetzt bei dir" in text and "> Hello, my card" in text
    subject, text = _text(renderer.render_digest(sample.digest, message_id="<d@example.com>",
                                                 date=NOW, now=NOW).as_bytes())
    assert subject == "Deine offenen Anfragen: 2" and "wartet auf dich" in text


def test_an_english_nudge_is_unchanged_and_spans_read_as_before() -> None:
    """The English subject and durations keep their words."""
    renderer = Renderer()
    sample = samples(NOW)
    subject, _ = _text(renderer.render_notice(sample.nudge, message_id="<n@example.com>",
                                              date=NOW, now=NOW).as_bytes())
    assert subject.startswith("[#K7QX2M] first response due in 30 min: ")
    assert span(NOW - NOW) == "under 1 min"
    assert span(datetime(2026, 11, 25, 12, 5, tzinfo=UTC) - NOW) == "2 d 3 h"
    assert span(datetime(2026, 11, 23, 13, 5, tzinfo=UTC) - NOW, "de") == "4 Std. 5 Min."
