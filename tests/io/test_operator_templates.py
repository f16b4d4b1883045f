"""An operator's [templates] dir end to end: Dovecot in, the daemon, aiosmtpd out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailbridge.mail.flowed import unflowed
from mailbridge.mail.render import ACK_TEXT
from tests.daemon import Daemon, write_config
from tests.mail.test_render_languages import DUTCH_PHRASES
from tests.mails import customer_mail
from tests.servers import Dovecot, Received, SmtpPeer

pytestmark = pytest.mark.slow

OWN_ACK = """Hi {{ greeting_name }}, {{ agent_name }} of {{ support_name }} here.
You will hear from me {{ due_words }}. Your reference: {{ ref_tag }}
"""
DUTCH_ACK = "Hallo {{ greeting_name }}, {{ agent_name }} antwoordt {{ due_words }}. {{ ref_tag }}\n"


def parts(received: Received) -> tuple[str, str, str]:
    """The subject's reference, the text part and the HTML part of a received ack."""
    msg = received.message
    ref = re.search(r"\[#([A-Z2-9]{6})\]", str(msg["Subject"]))
    assert ref, msg["Subject"]
    text, html = (msg.get_body(preferencelist=(kind,)).get_content().replace("\r\n", "\n")
                  for kind in ("plain", "html"))
    return ref[1], unflowed(text), html


def test_the_operators_text_template_and_the_shipped_html_go_out_together(
        tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """An ack's text part comes from the operator's folder, its HTML part from the shipped set."""
    own = tmp_path / "mb" / "templates"
    (own / "en").mkdir(parents=True)
    (own / "en" / ACK_TEXT).write_text(OWN_ACK, encoding="utf-8")
    (own / "nl").mkdir()
    (own / "nl" / ACK_TEXT).write_text(DUTCH_ACK, encoding="utf-8")
    (own / "nl" / "phrases.toml").write_text(DUTCH_PHRASES, encoding="utf-8")
    config = write_config(tmp_path / "mb", dovecot, smtp_peer,
                          extra='\n[templates]\ndir = "templates"\n')
    with Daemon(config):
        dovecot.append(customer_mail(1, name="Ana Souza", addr="ana@example.org",
                                     subject="Invoice 2291 charged twice"))
        [english] = smtp_peer.wait_for_count(1, timeout=10)
        # Prepended: EmailMessage.set_content drops a Content-Language given before it.
        dovecot.append(b"Content-Language: nl\n" + customer_mail(
            2, name="Piet de Vries", addr="piet@example.nl", subject="Factuur"))
        dutch = smtp_peer.wait_for_count(2, timeout=10)[1]

    ref, text, html = parts(english)
    agent = english.message["From"].addresses[0].display_name.split(",")[0]
    assert text.startswith(f"Hi Ana Souza, {agent} of Example Support here.\n"
                           "You will hear from me "), text
    assert text.endswith(f"Your reference: [#{ref}]\n"), text
    assert "Thank you for your message" not in text
    assert html.startswith("<!DOCTYPE html>\n<html lang=\"en\">"), html
    assert "<p>Hello Ana Souza,</p>" in html and "Thank you for your message" in html
    assert f"<strong>[#{ref}]</strong>" in html

    ref, text, html = parts(dutch)
    assert dutch.rcpt_tos == ["piet@example.nl"]
    assert re.fullmatch(rf"Hallo Piet de Vries, \w[\w ]* antwoordt \S.* \[#{ref}\]\n", text), text
    assert " vóór " in text, "the Dutch date words of nl/phrases.toml"
    assert "Thank you for your message" in html, "what nl/ leaves out comes from English"
