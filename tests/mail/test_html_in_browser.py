"""The HTML part of customer mail as a browser draws it: headless Chromium, screenshots read
back pixel by pixel. The photo and the logo are the mail's own inline parts (cid: URLs
resolved to the files of those parts), so a picture shows only if the mail carries it."""

from __future__ import annotations

import re
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailbridge.core.model import Agent, Image
from mailbridge.mail.render import Branding, Rendered, Renderer
from tests.mail.test_render import context, render, render_update, update_context
from tests.pictures import Picture, chromium_screenshot, png

MAGENTA, GREEN, ACCENT = (255, 0, 255), (0, 150, 80), (224, 90, 0)
PHOTO = Image(png(128, 128, MAGENTA), "image/png", "dana.png")
LOGO = Image(png(240, 80, GREEN), "image/png", "acme-logo.png")
DANA = Agent(name="Dana Whitfield", email="dana@acme.example", title="Customer Success",
             photo=PHOTO)
RENDERER = Renderer(branding=Branding(accent_color="#e05a00", logo=LOGO))


def page(mail: Rendered, folder: Path) -> Path:
    """The mail's HTML part as a file, each cid: URL pointing at a file of its part."""
    folder.mkdir(parents=True, exist_ok=True)
    html_part = mail.message.get_body(("html",))
    assert isinstance(html_part, EmailMessage)
    html = str(html_part.get_content())
    for part in mail.message.walk():
        cid = part["Content-ID"]
        if cid is None:
            continue
        file = folder / part.get_filename("picture")
        file.write_bytes(part.get_content())
        html = html.replace(f"cid:{str(cid).strip('<>')}", file.name)
    assert "cid:" not in html, "a picture the HTML shows is not in the mail"
    file = folder / "mail.html"
    file.write_text(html, encoding="utf-8")
    return file


def looks_drawn(picture: Picture) -> None:
    """Not blank: many colours (text is anti-aliased), none covering nearly everything."""
    colours = picture.colours()
    assert len(colours) > 20, colours.most_common(5)
    assert colours.most_common(1)[0][1] < 0.97 * picture.width * picture.height


def brightness(rgb: tuple[int, int, int]) -> int:
    return sum(rgb) // 3


MAILS = {
    "ack": lambda: render(RENDERER, context(agent=DANA)),
    "update": lambda: render_update(RENDERER, update_context(agent=DANA)),
}


@pytest.mark.parametrize("kind", MAILS)
def test_the_mail_shows_its_photo_logo_and_colour(tmp_path: Path, kind: str) -> None:
    """Drawn light: text, the 64 px photo, the 40 px logo and the accent rule."""
    shot = chromium_screenshot(page(MAILS[kind](), tmp_path / kind), tmp_path)
    looks_drawn(shot)
    assert brightness(shot.at(2, 2)) > 230  # the page is light
    assert 0.95 * 64 * 64 < shot.count(MAGENTA) <= 64 * 64  # 64 x 64 however large the file
    assert 0.9 * 120 * 40 < shot.count(GREEN) <= 120 * 40  # 40 px high, its shape kept
    assert shot.count(ACCENT, tolerance=4) > 500  # the rule atop and beside the signature


@pytest.mark.parametrize("kind", MAILS)
def test_dark_mode_is_dark_and_readable(tmp_path: Path, kind: str) -> None:
    """With the reader's dark theme the page turns dark and its text light: no white box,
    no dark text on dark."""
    shot = chromium_screenshot(page(MAILS[kind](), tmp_path / kind), tmp_path, dark=True)
    looks_drawn(shot)
    assert brightness(shot.at(2, 2)) < 60
    light_text = sum(n for rgb, n in shot.colours().items() if brightness(rgb) > 200)
    assert light_text > 1000
    assert shot.count(MAGENTA) > 0.95 * 64 * 64


def test_with_images_off_the_words_still_show(tmp_path: Path) -> None:
    """A client that blocks images shows no picture, and the mail still reads (alt text)."""
    mail = render(RENDERER, context(agent=DANA))
    html = str(mail.message.get_body(("html",)).get_content())  # type: ignore[union-attr]
    assert re.search(r'<img [^>]*alt="Dana Whitfield"', html)
    assert re.search(r'<img [^>]*alt="Acme Support"', html)
    shot = chromium_screenshot(page(mail, tmp_path / "ack"), tmp_path, images=False)
    looks_drawn(shot)
    assert shot.count(MAGENTA) == 0 and shot.count(GREEN) == 0
