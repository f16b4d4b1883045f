"""The mail that tells an agent a command was wrong, on a German desk (in-memory SQLite)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import pytest

from mailbridge.clock import SystemClock
from mailbridge.config import load_config
from mailbridge.daemon.ingest import Ingestor
from mailbridge.store.db import Store
from tests.configs import MINIMAL
from tests.mails import TRUSTED_RULES
from tests.test_staff import T0, Desk, opened, reply


@pytest.fixture
def german_desk(tmp_path: Path) -> Iterator[Desk]:
    config_file = tmp_path / "mailbridge.toml"
    support = MINIMAL.replace('name = "Example Support"\n',
                              'name = "Example Support"\nlanguage = "de"\n')
    config_file.write_text(f'{support}{TRUSTED_RULES}[daemon]\nstate_dir = "{tmp_path}"\n')
    store = Store.open("sqlite://")
    yield Desk(Ingestor.create(load_config(config_file), store, SystemClock()), store)
    store.close()


def test_a_german_desk_tells_an_agent_of_a_wrong_command_in_german(german_desk: Desk) -> None:
    """#pendng in a reply: Dana is told in German, with du, what was wrong."""
    original, _thread = opened(german_desk)
    german_desk.feed(reply(original, "#pendng\nBin dran."), at=T0 + timedelta(minutes=5))
    [item] = [i for i in german_desk.store.outbox() if i.kind.startswith("command-error-")]
    mail = message_from_bytes(item.body, policy=default)
    assert isinstance(mail, EmailMessage)
    assert str(mail["Subject"]).startswith("Befehle nicht ausgeführt: ")
    text = mail.get_content()
    assert text.startswith("Hallo Dana Whitfield,") and "deine Nachricht" in text
    assert "#pendng" in text
