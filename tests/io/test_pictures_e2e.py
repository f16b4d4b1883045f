"""The photo and logo travel with the acknowledgement, through the real daemon and SMTP.

`mailbridge run` with [[agents]] photo_file and [support] logo_file: a customer's mail
delivered to Dovecot is acknowledged, and the mail the SMTP peer receives holds both
pictures as inline parts that its HTML shows by cid:, byte for byte the files configured.
The customer's name, sent the way a directory writes it, is greeted as people say it.
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from pathlib import Path

from tests.daemon import Daemon, write_config
from tests.mails import customer_mail
from tests.pictures import png
from tests.servers import Dovecot, SmtpPeer

PHOTO = png(96, 96, (200, 30, 30))
LOGO = png(160, 48, (30, 30, 200))


def test_the_ack_carries_the_agents_photo_and_the_desks_logo(
        tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    folder = tmp_path / "mb"
    config = write_config(folder, dovecot, smtp_peer)
    (folder / "team").mkdir()
    for name in ("dana", "sam"):
        (folder / "team" / f"{name}.png").write_bytes(PHOTO)
    (folder / "logo.png").write_bytes(LOGO)
    text = config.read_text(encoding="utf-8")
    text = text.replace('timezone = "Europe/Berlin"\n', 'timezone = "Europe/Berlin"\n'
                        'logo_file = "logo.png"\naccent_color = "#0B7A75"\n', 1)
    for name in ("dana", "sam"):
        text = text.replace(f'email = "{name}@example.com"\n',
                            f'email = "{name}@example.com"\nphoto_file = "team/{name}.png"\n', 1)
    config.write_text(text, encoding="utf-8")

    with Daemon(config):
        dovecot.append(customer_mail(1, name='"Kumar, Rajesh"', addr="rajesh@example.org",
                                     subject="Invoice 2291 charged twice"))
        [ack] = smtp_peer.wait_for_count(1, timeout=15)

    msg = ack.message
    assert msg.get_content_type() == "multipart/alternative"
    plain, related = msg.iter_parts()
    assert isinstance(plain, EmailMessage) and isinstance(related, EmailMessage)
    assert plain.get_param("format") == "flowed"
    assert str(plain.get_content()).startswith("Hello Rajesh Kumar,\r\n")
    assert related.get_content_type() == "multipart/related"
    html_part, *pictures = related.iter_parts()
    html = str(html_part.get_content())
    by_data = {bytes(p.get_content()): p for p in pictures}
    assert set(by_data) == {PHOTO, LOGO}
    for data, alt in ((PHOTO, r"(Dana Whitfield|Sam Okafor)"), (LOGO, "Example Support")):
        part = by_data[data]
        cid = str(part["Content-ID"]).strip("<>")
        assert part.get_content_disposition() == "inline" and part.get_filename()
        assert re.search(rf'<img src="cid:{re.escape(cid)}" alt="{alt}"', html), html
    assert "#0b7a75" in html
