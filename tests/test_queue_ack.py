"""The acknowledgement's queue position through the real ingest path: English and German
words, `replay`'s number, and one place per thread when two instances ingest at once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from io import StringIO
from pathlib import Path
from typing import Any

import pytest

from mailbridge.cli.replay import replay
from mailbridge.clock import SystemClock
from mailbridge.config import Config, load_config
from mailbridge.daemon.ingest import Ingestor, Outcome, Source
from mailbridge.mail.parse import parse_message
from mailbridge.store.db import Store
from tests.mails import customer_mail, reply_to

CONFIG = """
[support]
address = "support@example.com"
name = "Example Support"
timezone = "Europe/Berlin"
language = "{language}"

[[agents]]
name = "Dana Whitfield"
email = "dana@example.com"

[daemon]
state_dir = "{state}"
"""
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def desk_config(tmp_path: Path, language: str = "en") -> Config:
    path = tmp_path / f"mailbridge-{language}.toml"
    path.write_text(CONFIG.format(language=language, state=tmp_path))
    return load_config(path)


@pytest.fixture
def store() -> Iterator[Store]:
    opened = Store.open("sqlite://")
    yield opened
    opened.close()


def plain(body: bytes) -> str:
    """The decoded text part of mail we queued, its lines joined."""
    msg = message_from_bytes(body, policy=default)
    assert isinstance(msg, EmailMessage)
    part = msg.get_body(("plain",))
    assert part is not None
    return " ".join(part.get_content().split())


def text_part(store: Store, outcome: Outcome) -> str:
    [item] = [i for i in store.outbox() if i.message_id == outcome.ack_message_id]
    return plain(item.body)


def feed(ingestor: Ingestor, n: int, at: datetime) -> Outcome:
    raw = customer_mail(n, addr=f"c{n}@example.org", subject=f"Question {n}")
    return ingestor.ingest(parse_message(raw), Source("INBOX", 1, n), received=at, now=at)


@pytest.mark.parametrize(("language", "expected"), [
    ("en", ["Right now yours is next.", "Right now 1 request is ahead of yours.",
            "Right now 2 requests are ahead of yours."]),
    ("de", ["Ihre Anfrage ist als Nächste an der Reihe.",
            "Vor Ihrer Anfrage ist gerade noch eine andere an der Reihe.",
            "Vor Ihrer Anfrage sind gerade noch 2 andere an der Reihe."]),
])
def test_three_customers_of_one_agent_learn_their_place(
        tmp_path: Path, store: Store, language: str, expected: list[str]) -> None:
    """Each acknowledgement counts the requests due before it, in the customer's language."""
    ingestor = Ingestor.create(desk_config(tmp_path, language), store, SystemClock())
    outcomes = [feed(ingestor, n, T0 + timedelta(minutes=n)) for n in (1, 2, 3)]
    assert [o.queue_ahead for o in outcomes] == [0, 1, 2]
    for outcome, sentence in zip(outcomes, expected, strict=True):
        assert sentence in text_part(store, outcome)


def test_an_answered_thread_leaves_the_queue(tmp_path: Path, store: Store) -> None:
    """Once the agent has answered the first customer, the next one is first in line."""
    ingestor = Ingestor.create(desk_config(tmp_path), store, SystemClock())
    first = feed(ingestor, 1, T0)
    with store.transaction() as tx:
        assert first.thread is not None
        ingestor.deadlines.agent_replied(tx, first.thread, T0 + timedelta(minutes=5),
                                         "Dana Whitfield")
    second = feed(ingestor, 2, T0 + timedelta(minutes=10))
    assert second.queue_ahead == 0
    assert "Right now yours is next." in text_part(store, second)


def test_replay_shows_the_queue_position(tmp_path: Path) -> None:
    """`replay` prints ahead=N and, with --json, queue_ahead; a follow-up has none."""
    folder = tmp_path / "mail"
    folder.mkdir()
    for n in (1, 2):
        raw = customer_mail(n, addr=f"c{n}@example.org", subject=f"Question {n}")
        (folder / f"0{n}.eml").write_bytes(raw)
    config = desk_config(tmp_path)
    out = StringIO()
    replay(config, [folder], now=T0, out=out, json_lines=False)
    lines = [line for line in out.getvalue().splitlines() if "acknowledge" in line]
    assert [line.rsplit("ahead=", 1)[-1].split()[0] for line in lines] == ["0", "1"]
    out = StringIO()
    replay(config, [folder], now=T0, out=out, json_lines=True)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["queue_ahead"] for r in records if r["type"] == "message"] == [0, 1]


def test_instances_count_each_others_threads_once_written_and_never_wait(
        tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL, two instances: while one is still writing a customer's acknowledgement,
    the other records its own new thread for the same agent without waiting for it (no lock
    is shared between their transactions), so neither counts the other's unwritten thread;
    a thread recorded after both counts both."""
    config = desk_config(tmp_path)
    stores = [Store.open(postgres_url) for _ in range(2)]
    first, second = (Ingestor.create(config, s, SystemClock()) for s in stores)
    rendering, release = threading.Event(), threading.Event()
    render_ack = first.renderer.render_ack

    def paused_render(*args: Any, **kwargs: Any) -> Any:
        rendering.set()
        release.wait(30)
        return render_ack(*args, **kwargs)

    monkeypatch.setattr(first.renderer, "render_ack", paused_render)
    results: dict[str, Outcome] = {}
    early = threading.Thread(target=lambda: results.update(a=feed(first, 1, T0)))
    try:
        feed(second, 9, T0 - timedelta(days=1))  # one thread ahead of all the others
        early.start()
        assert rendering.wait(30), "the first instance never reached its acknowledgement"
        results["b"] = feed(second, 2, T0 + timedelta(minutes=1))  # while the first writes
        assert early.is_alive(), "the first instance finished before the second recorded"
    finally:
        release.set()
        early.join(30)
    try:
        results["c"] = feed(second, 3, T0 + timedelta(minutes=2))
    finally:
        for opened in stores:
            opened.close()
    ahead = {name: outcome.queue_ahead for name, outcome in results.items()}
    assert ahead == {"a": 1, "b": 1, "c": 3}


def test_an_agents_note_tells_the_update_it_was_opened(tmp_path: Path, store: Store) -> None:
    """Without a mailbox to ask, an agent's note since the customer wrote is what says a
    person opened it; with neither, the update says nothing about opening."""
    ingestor = Ingestor.create(desk_config(tmp_path), store, SystemClock())
    noted, quiet = feed(ingestor, 1, T0), feed(ingestor, 2, T0 + timedelta(minutes=1))
    assert noted.thread is not None
    with store.transaction() as tx:
        tx.event(noted.thread, T0 + timedelta(minutes=30), "note", "Dana Whitfield: on it")
    assert ingestor.deadlines.run_due(T0 + timedelta(hours=3, minutes=31)) == 2
    texts = {i.thread_id: plain(i.body) for i in store.outbox() if i.kind == "update-1"}
    assert "Your request is with Dana Whitfield. It has been opened but not answered yet." \
        in texts[noted.thread]
    assert "Your request is with Dana Whitfield. Right now 1 request is ahead of yours." \
        in texts[str(quiet.thread)]
    assert "Hello Ana Souza," in texts[noted.thread]


def dated(raw: bytes, date: str) -> bytes:
    """The mail with its Date field replaced, as a client in another zone writes it."""
    head, _, body = raw.partition(b"\n\n")
    lines = [line for line in head.split(b"\n") if not line.startswith(b"Date:")]
    return b"\n".join([*lines, b"Date: " + date.encode()]) + b"\n\n" + body


def test_an_update_gives_the_time_on_the_customers_clock_as_it_is_now(
        tmp_path: Path, store: Store) -> None:
    """Acknowledged in Tokyo, the customer writes again from New York: the update gives
    the time at the desk and in New York."""
    ingestor = Ingestor.create(desk_config(tmp_path), store, SystemClock())
    first = customer_mail(1, addr="kei@example.org")
    ack = ingestor.ingest(parse_message(dated(first, "Mon, 30 Nov 2026 18:00:00 +0900")),
                          Source("INBOX", 1, 1), received=T0, now=T0)
    assert "today by 14:00 (Berlin time), that is 22:00 your time." in text_part(store, ack)
    later = T0 + timedelta(minutes=20)
    again = dated(reply_to(first), "Mon, 30 Nov 2026 04:20:00 -0500")
    ingestor.ingest(parse_message(again), Source("INBOX", 1, 2), received=later, now=later)
    assert ingestor.deadlines.run_due(T0 + timedelta(hours=3, minutes=31)) == 1
    [update] = [plain(i.body) for i in store.outbox() if i.kind == "update-1"]
    assert "today by 14:00 (Berlin time), that is 08:00 your time." in update
