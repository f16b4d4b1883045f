"""Customer mail's HTML part: the photo and logo travel inside the mail, the desk's colour."""

from __future__ import annotations

import dataclasses
import re
from email.message import EmailMessage
from pathlib import Path

from mailbridge.config.languages import TEMPLATES
from mailbridge.core.model import Agent, Image
from mailbridge.mail.render import ACK_HTML, Branding, Rendered, Renderer
from mailbridge.mail.samples import SAMPLE_PICTURE
from tests.mail.test_render import (
    NOW,
    context,
    original,
    parts,
    render,
    render_update,
    update_context,
)

PHOTO = dataclasses.replace(SAMPLE_PICTURE, filename="dana whitfield (2).png")
LOGO = Image(data=b"\xff\xd8\xff" + b"\x01" * 64, content_type="image/jpeg", filename="acme.jpeg")
DANA = Agent(name="Dana Whitfield", email="dana@acme.example", photo=PHOTO)
BRANDED = Renderer(branding=Branding(accent_color="#b0006e", logo=LOGO))


def pictures(mail: Rendered) -> dict[str, EmailMessage]:
    """The inline pictures of `mail`, by the URL the HTML shows them with."""
    related = mail.message.get_payload()[1]
    assert isinstance(related, EmailMessage)
    assert related.get_content_type() == "multipart/related"
    assert related.get_param("type") == "text/html"
    html, *images = related.iter_parts()
    assert html.get_content_type() == "text/html"
    return {f"cid:{str(part['Content-ID']).strip('<>')}": part for part in images}


def test_the_photo_and_logo_are_inline_parts_the_html_shows() -> None:
    """multipart/alternative > (text, related > (html, photo, logo)); each picture has a
    Content-ID the HTML refers to by cid:, inline disposition and a filename."""
    mail = render(BRANDED, context(agent=DANA))
    assert mail.message.get_content_type() == "multipart/alternative"
    text, html = parts(mail)
    found = pictures(mail)
    assert len(found) == 2
    for url, part in found.items():
        assert f'src="{url}"' in html
        assert part.get_content_disposition() == "inline"
        assert "@acme.example" in url
    by_type = {part.get_content_type(): part for part in found.values()}
    photo, logo = by_type["image/png"], by_type["image/jpeg"]
    assert photo.get_content() == PHOTO.data and logo.get_content() == LOGO.data
    assert photo.get_filename() == "dana-whitfield-2.png" and logo.get_filename() == "acme.jpg"
    [photo_img] = re.findall(r'<img [^>]*alt="Dana Whitfield"[^>]*>', html)
    [logo_img] = re.findall(r'<img [^>]*alt="Acme Support"[^>]*>', html)
    assert "cid:" in photo_img and "cid:" in logo_img
    assert "cid:" not in text and "<img" not in text


def test_each_mail_has_its_own_content_ids() -> None:
    """Two mails with the same photo name it by different Content-IDs."""
    first, second = (set(pictures(render(BRANDED, context(agent=DANA)))) for _ in range(2))
    assert first.isdisjoint(second)


def test_the_status_update_carries_them_too() -> None:
    mail = render_update(BRANDED, update_context(agent=DANA))
    assert len(pictures(mail)) == 2


def test_a_photo_file_wins_over_its_url_and_no_pictures_means_no_related_part() -> None:
    """With only a photo_url, the HTML links it and nothing is attached."""
    agent = dataclasses.replace(DANA, photo=None, photo_url="https://acme.example/dana.jpg")
    mail = render(Renderer(), context(agent=agent))
    assert [p.get_content_type() for p in mail.message.iter_parts()] == [
        "text/plain", "text/html"]
    assert 'src="https://acme.example/dana.jpg"' in parts(mail)[1]
    both = dataclasses.replace(DANA, photo_url="https://acme.example/dana.jpg")
    assert "https://acme.example/dana.jpg" not in parts(render(Renderer(),
                                                               context(agent=both)))[1]


def test_an_operator_template_without_the_photo_sends_no_picture(tmp_path: Path) -> None:
    """A picture the HTML does not show is not sent."""
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / ACK_HTML).write_text("<p>Hello {{ greeting_name }}</p>\n")
    mail = Renderer(tmp_path, branding=Branding(logo=LOGO)).render_ack(
        context(agent=DANA), original(), message_id="<a@acme.example>", date=NOW, now=NOW)
    assert [p.get_content_type() for p in mail.message.iter_parts()] == [
        "text/plain", "text/html"]


def test_the_accent_colour_and_dark_mode() -> None:
    """The accent colour is used; the page declares light and dark, and sets no text or
    background colour that a dark theme would leave unreadable."""
    _, html = parts(render(BRANDED, context(agent=DANA)))
    assert "#b0006e" in html
    assert '<meta name="color-scheme" content="light dark">' in html
    assert not re.search(r"background(-color)?\s*:", html)
    assert not re.search(r"[^-]color\s*:\s*#(?!b0006e)", html)
    _, default = parts(render(Renderer(), context()))
    assert "#1a73e8" in default


def test_without_a_logo_the_desk_name_heads_the_mail() -> None:
    _, html = parts(render(Renderer(), context()))
    assert "<img" not in html
    assert ('<p style="margin:8px 0 16px; font-size:18px; font-weight:bold;">Acme Support</p>'
            in html)


def test_no_shipped_html_fixes_a_colour_a_dark_theme_cannot_change() -> None:
    """Every shipped HTML template, staff notices too, declares light and dark and sets no
    text or background colour of its own (only the desk's accent, by its variable)."""
    pages = sorted(TEMPLATES.glob("*/*.html.j2"))
    frames = {"customer.html.j2"}
    assert len(pages) >= 12
    for page in pages:
        text = re.sub(r"\{#.*?#\}", "", page.read_text(encoding="utf-8"), flags=re.S)
        if page.name in frames or "{% extends" not in text:
            assert '<meta name="color-scheme" content="light dark">' in text, page
        assert not re.search(r"background(-color)?\s*:|color\s*:\s*(#|black|white|rgb)", text,
                             re.IGNORECASE), page
