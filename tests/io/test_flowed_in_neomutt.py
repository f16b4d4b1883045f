"""Our plain text as a real mail client reads it: neomutt, in a tmux window of 110 columns.

A format=flowed text part is rewrapped by the reader to its window: the acknowledgement's
paragraphs, sent as lines of at most 72 columns, fill neomutt's wider pager; the FAQ link
stays whole on its line, the space-stuffing is gone, and lines that are not paragraphs
(the signature, the list) keep their breaks.

neomutt reads a copy of the mail in an mbox file; a tmux server on a socket of the test's
own runs it, and its screen is read with capture-pane.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from mailbridge.core.model import Agent, FaqLink
from mailbridge.mail.render import Renderer
from tests.mail.test_render import NOW, context, original

WIDTH = 110
SUBJECT = "Invoice 2291 was charged twice and the second charge is still pending on my card"
URL = "https://help.example.com/articles/2291-refunds-and-double-charges-explained-step-by-step"


class Tmux:
    """A tmux server of our own (its own socket), stopped by its own kill-server."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.socket, self.env = folder / "tmux.sock", env

    def run(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-S", str(self.socket), *args], env=self.env,
                              capture_output=True, text=True, timeout=20, check=True)
        return done.stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "mail")

    def wait_for(self, text: str, deadline: float = 20.0) -> str:
        """The screen once it shows `text`; fails with the screen after `deadline` seconds."""
        end = time.monotonic() + deadline
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            assert time.monotonic() < end, f"{text!r} never showed:\n{screen}"
            time.sleep(0.1)  # polling the screen, bounded by the deadline above


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    for program in ("tmux", "neomutt"):
        if shutil.which(program) is None:
            pytest.fail(f"{program} is missing: run the project's test command, "
                        "`./scripts/test`, which installs it", pytrace=False)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "TERM": "xterm-256color", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    server = Tmux(tmp_path, env)
    try:
        yield server
    finally:
        subprocess.run(["tmux", "-S", str(server.socket), "kill-server"], env=env,
                       capture_output=True, timeout=20, check=False)


def test_neomutt_reflows_the_acknowledgement_to_its_window(tmp_path: Path, tmux: Tmux) -> None:
    agent = Agent(name="Dana Whitfield", email="dana@acme.example", title="Customer Success")
    ctx = context(agent=agent, subject=SUBJECT, customer_offset=timedelta(hours=-5),
                  faq=(FaqLink("Refunds and double charges", URL),))
    mail = Renderer().render_ack(ctx, original(subject=SUBJECT), message_id="<a1@acme.example>",
                                 date=NOW, now=NOW)
    text = mail.message.get_body(("plain",))
    assert text is not None
    wire = str(text.get_content()).splitlines()
    assert max(len(line) for line in wire if URL not in line) <= 72
    assert any(line.endswith(" ") for line in wire)  # the paragraphs were wrapped
    joined = "It has reached us, and Dana Whitfield will answer you personally"
    assert not any(joined in line for line in wire)

    mbox = tmp_path / "mbox"
    body = mail.as_bytes().replace(b"\r\n", b"\n")
    mbox.write_bytes(b"From support@acme.example Mon Nov 30 09:00:05 2026\n" + body + b"\n")
    rc = tmp_path / "muttrc"
    rc.write_text("\n".join([
        f"set folder={tmp_path}", f"set spool_file={mbox}", "set mbox_type=mbox",
        "set reflow_text=yes", "set reflow_wrap=0", "set markers=no",
        "set help=no", "set pager_index_lines=0", "set pager_stop=yes", "set wait_key=no",
        'set header_cache=""', "set implicit_autoview=no",
        "alternative_order text/plain", "ignore *", "unignore from: subject:",
    ]) + "\n", encoding="utf-8")
    tmux.run("new-session", "-d", "-s", "mail", "-x", str(WIDTH), "-y", "60",
             f"neomutt -n -F {rc} -R -f {mbox}")
    tmux.wait_for("Invoice 2291")
    tmux.run("send-keys", "-t", "mail", "Enter")
    screen = tmux.wait_for("Kind regards,")
    lines = [line.rstrip() for line in screen.splitlines()]

    # The first paragraph fills the wider window: wrapped at 72 on the wire, joined again.
    assert any(len(line) > 80 for line in lines), screen
    assert any(joined in line for line in lines), screen
    assert not any(line.startswith("   ") for line in lines), screen  # no stuffing shows
    assert URL in [line.strip() for line in lines], screen  # the link: whole, on its own line
    assert "- Refunds and double charges" in lines
    signature = lines.index("Kind regards,")
    assert lines[signature + 1:signature + 3] == ["Dana Whitfield, Customer Success",
                                                  "Acme Support"], screen
