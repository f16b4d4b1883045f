"""Shift digests through the real ingest path and store (in-memory SQLite), on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

from mailbridge.clock import FakeClock
from mailbridge.config import load_config
from mailbridge.daemon.digests import Digests
from mailbridge.daemon.ingest import Ingestor, Source
from mailbridge.mail.parse import parse_message
from mailbridge.store.db import Store
from tests.mails import customer_mail

SHIFT_START = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
"""Monday 08:00 in Berlin, where every agent below starts."""
SUPPORT = '[support]\naddress = "support@example.com"\nname = "Example Support"\n'
NO_DIGEST = "digest = false\n"
WEEKDAYS = "".join(f'{day} = ["08:00-16:00"]\n' for day in ("mon", "tue", "wed", "thu", "fri"))


def _agent(name: str, email: str, extra: str = "") -> str:
    return (f'\n[[agents]]\nname = "{name}"\nemail = "{email}"\ntimezone = "Europe/Berlin"\n'
            f"{extra}[agents.shift]\n{WEEKDAYS}")


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "mailbridge.toml"
    agents = (_agent("Dana Whitfield", "dana@example.com")
              + _agent("Sam Okafor", "sam@example.com", NO_DIGEST)
              + _agent("Lee Park", "lee@example.com"))
    path.write_text(f'{SUPPORT}{agents}[daemon]\nstate_dir = "{tmp_path}"\n')
    return path


def _desk(tmp_path: Path, store: Store, at: datetime) -> Ingestor:
    return Ingestor.create(load_config(_config(tmp_path)), store, FakeClock(at))


def _open(ingestor: Ingestor, n: int, at: datetime, agent: str) -> str:
    outcome = ingestor.ingest(parse_message(customer_mail(n, subject=f"Question {n}")),
                              Source("INBOX", 1, n), received=at, now=at)
    assert outcome.thread is not None
    with ingestor.store.transaction() as tx:
        tx.update_thread(outcome.thread, agent_email=agent)
    return outcome.thread


def _digests(store: Store) -> list[tuple[str, EmailMessage]]:
    found = []
    for item in store.outbox():
        if item.kind.startswith("digest-"):
            assert item.thread_id == ""
            mail = message_from_bytes(item.body, policy=default)
            assert isinstance(mail, EmailMessage)
            found.append((item.recipient, mail))
    return found


def _opened_desk(tmp_path: Path) -> tuple[Store, dict[str, str]]:
    """Dana has three open threads (one waiting on the customer), Sam one, Lee none."""
    store = Store.open("sqlite://")
    before = SHIFT_START - timedelta(hours=10)
    ingestor = _desk(tmp_path, store, before)
    refs = {"late": _open(ingestor, 1, before + timedelta(minutes=30), "dana@example.com"),
            "early": _open(ingestor, 2, before, "dana@example.com"),
            "pending": _open(ingestor, 3, before, "dana@example.com"),
            "sams": _open(ingestor, 4, before, "sam@example.com")}
    with store.transaction() as tx:
        tx.update_thread(refs["pending"], state="awaiting_customer", response_due_at=None)
    return store, refs


def test_at_the_shift_start_each_agent_gets_one_digest_of_their_threads(tmp_path: Path) -> None:
    """Dana's digest lists her threads by deadline, the one awaiting the customer last;
    Lee (no threads) and Sam (digest = false) get none; the scheduler wakes next on Tuesday."""
    store, refs = _opened_desk(tmp_path)
    digests = _desk(tmp_path, store, SHIFT_START).deadlines.digests
    assert digests.next_time(SHIFT_START - timedelta(hours=1)) <= SHIFT_START
    assert digests.run_due(SHIFT_START) == 1
    [(recipient, mail)] = _digests(store)
    assert recipient == "dana@example.com"
    assert mail["Reply-To"].addresses[0].addr_spec == "support@example.com"
    text = mail.get_body(("plain",)).get_content()
    order = [text.index(f"[#{refs[key]}]") for key in ("early", "late", "pending")]
    assert order == sorted(order), text
    assert refs["sams"] not in text and "Question 1" in text
    assert "customer1@example.org" in text
    assert digests.next_time(SHIFT_START) == SHIFT_START + timedelta(days=1)
    assert digests.run_due(SHIFT_START + timedelta(minutes=5)) == 0
    store.close()


def test_a_restart_early_in_the_shift_sends_it_once_and_late_not_at_all(tmp_path: Path) -> None:
    """Down at the start: the first instance up within the hour sends it; a second instance
    (or a restart) on the same store sends no second one; two hours in, none is sent."""
    store, _refs = _opened_desk(tmp_path)
    late = _desk(tmp_path, store, SHIFT_START + timedelta(hours=2)).deadlines.digests
    assert late.run_due(SHIFT_START + timedelta(hours=2)) == 0
    first = _desk(tmp_path, store, SHIFT_START).deadlines.digests
    assert first.run_due(SHIFT_START + timedelta(minutes=30)) == 1
    again = _desk(tmp_path, store, SHIFT_START).deadlines.digests
    assert isinstance(again, Digests)
    assert again.run_due(SHIFT_START + timedelta(minutes=40)) == 0
    assert [r for r, _ in _digests(store)] == ["dana@example.com"]
    store.close()
