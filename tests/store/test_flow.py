"""The store contract through the real ingest and scheduler paths, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

import pytest
from sqlmodel import col, select

from mailbridge.clock import FakeClock
from mailbridge.config import load_config
from mailbridge.daemon.ingest import Ingestor, Outcome, Source
from mailbridge.mail.parse import parse_message
from mailbridge.store.db import Store
from mailbridge.store.tables import Thread, ThreadEvent
from mailbridge.store.tx import Tx
from tests.configs import MINIMAL
from tests.mails import TRUSTED_RULES, VOUCHED, customer_mail, reply_to

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday


class Desk:
    """An ingestor and its deadlines on the store under test, fed raw mail at chosen times."""

    def __init__(self, ingestor: Ingestor, store: Store) -> None:
        self.ingestor = ingestor
        self.store = store
        self.uid = 0

    def feed(self, raw: bytes, at: datetime = T0, mailbox: str = "INBOX") -> Outcome:
        self.uid += 1
        return self.ingestor.ingest(parse_message(raw), Source(mailbox, 7, self.uid),
                                    received=at, now=at)

    def thread(self, thread_id: str | None) -> Thread:
        assert thread_id is not None
        with self.store.transaction() as tx:
            found = tx.thread(thread_id)
        assert found is not None
        return found

    def events(self, thread_id: str | None) -> list[str]:
        with self.store.transaction() as tx:
            rows = tx.session.exec(select(ThreadEvent).where(ThreadEvent.thread_id == thread_id)
                                   .order_by(col(ThreadEvent.id))).all()
            return [row.kind for row in rows]


@pytest.fixture
def desk(store: Store, tmp_path: Path) -> Iterator[Desk]:
    config_file = tmp_path / "mailbridge.toml"
    config_file.write_text(f"""
{MINIMAL}[[agents]]
name = "Sam Okafor"
email = "sam@example.com"
[sla]
first_response = "4h"
escalate_to = "lead@example.com"
{TRUSTED_RULES}[imap]
host = "127.0.0.1"
username = "support@example.com"
password = "x"
sent_folders = ["Sent"]
[daemon]
state_dir = "{tmp_path}"
""")
    config = load_config(config_file)
    yield Desk(Ingestor.create(config, store, FakeClock(T0)), store)


def agent_answer(original: bytes, at: datetime) -> bytes:
    msg = EmailMessage()
    msg["Authentication-Results"] = VOUCHED
    msg["From"] = "Dana Whitfield <dana@example.com>"
    msg["To"] = "ana@example.org"
    msg["Subject"] = "Re: Invoice"
    msg["Date"] = format_datetime(at)
    msg["Message-ID"] = "<answer-1@example.com>"
    msg["In-Reply-To"] = parse_message(original).message_id or ""
    msg.set_content("Refunded.")
    return msg.as_bytes()


def test_new_mail_opens_a_thread_with_one_ack_and_a_follow_up_joins(desk: Desk) -> None:
    """A thread, its ack in the outbox and its known ids are written in one go."""
    original = customer_mail(1, addr="ana@example.org", subject="Invoice")
    first = desk.feed(original)
    assert first.verdict.rule == "new_thread" and first.ack_message_id is not None
    follow = desk.feed(reply_to(original), T0 + timedelta(minutes=30))
    assert (follow.verdict.rule, follow.thread) == ("follow_up", first.thread)
    [ack] = desk.store.outbox()
    assert (ack.thread_id, ack.kind, ack.state) == (first.thread, "ack", "pending")
    thread = desk.thread(first.thread)
    assert thread.next_due_at is not None and thread.next_due_at.tzinfo == UTC
    assert [m.rule for m in desk.store.messages()] == ["new_thread", "follow_up"]
    second = desk.feed(customer_mail(2, addr="bo@example.org"))
    assert {first.agent, second.agent} == {desk.ingestor.agents[0], desk.ingestor.agents[1]}


def test_an_agent_reply_records_the_first_response(desk: Desk) -> None:
    """Booleans, floats and times of the first response survive the round trip."""
    original = customer_mail(1, addr="ana@example.org", subject="Invoice")
    first = desk.feed(original)
    answered_at = T0 + timedelta(hours=1)
    reply = desk.feed(agent_answer(original, answered_at), answered_at, mailbox="Sent")
    assert reply.verdict.rule == "agent_reply"
    thread = desk.thread(first.thread)
    assert thread.state == "awaiting_customer"
    assert thread.first_response_met is True
    assert thread.first_response_at == answered_at
    assert thread.first_response_seconds == pytest.approx(3600.0)
    with desk.store.transaction() as tx:
        assert tx.recent_first_responses("default", T0) == [pytest.approx(3600.0)]


def test_a_deadline_fires_once(desk: Desk) -> None:
    """A passed deadline escalates and breaches once; running the scheduler again does nothing."""
    first = desk.feed(customer_mail(1, addr="ana@example.org", subject="Invoice"))
    deadlines = desk.ingestor.deadlines
    assert deadlines.run_due(T0 + timedelta(minutes=1)) == 0
    late = T0 + timedelta(hours=5)
    while deadlines.run_due(late):
        pass
    assert desk.events(first.thread).count("breach") == 1
    assert deadlines.run_due(late) == 0
    kinds = sorted(item.kind for item in desk.store.outbox())
    assert kinds[0] == "ack" and any(k.startswith("escalation-") for k in kinds)
    assert len(kinds) == len(set(kinds))


def test_hostile_text_and_large_uids_are_stored(desk: Desk, store: Store) -> None:
    """NUL bytes, astral characters and 32-bit UIDs are recorded, not refused by the database."""
    raw = customer_mail(1, addr="ana@example.org", subject="caf\u00e9 \U0001f600 end")
    raw = raw.replace(b"Subject: ", b"Subject: nul\x00byte ", 1)
    raw = raw.replace(b"Hello", b"He\x00llo", 1)
    message = parse_message(raw)
    outcome = desk.ingestor.ingest(message, Source("INBOX", 4294967295, 4294967295),
                                   received=T0, now=T0)
    assert outcome.recorded and outcome.verdict.rule == "new_thread"
    [row] = store.messages()
    assert (row.uidvalidity, row.uid) == (4294967295, 4294967295)
    assert "\U0001f600" in row.subject and "\x00" not in row.subject
    assert store.cursor("", "INBOX") == (4294967295, 4294967295)


def _race(desk: Desk, store_url: str, monkeypatch: pytest.MonkeyPatch,
          messages: list[tuple[bytes, Source]]) -> list[Outcome]:
    """Ingest each (raw, source) on its own instance at once, both past the "already
    recorded?" check before either commits; return the outcomes."""
    gate = threading.Barrier(len(messages), timeout=20)
    first_look = threading.local()
    original = Tx.source_recorded

    def source_recorded(tx: Tx, account: str, mailbox: str, uidvalidity: int | None,
                        uid: int | None) -> bool:
        found = original(tx, account, mailbox, uidvalidity, uid)
        if not getattr(first_look, "done", False):
            first_look.done = True
            gate.wait()
        return found

    monkeypatch.setattr(Tx, "source_recorded", source_recorded)
    stores = [Store.open(store_url) for _ in messages]
    ingestors = [Ingestor.create(desk.ingestor.config, s, FakeClock(T0)) for s in stores]
    outcomes: list[Outcome | BaseException] = [RuntimeError("not run")] * len(messages)

    def run(index: int) -> None:
        raw, source = messages[index]
        try:
            outcomes[index] = ingestors[index].ingest(parse_message(raw), source, received=T0,
                                                      now=T0)
        except BaseException as exc:  # reported below, in the test's thread
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(messages))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    for opened in stores:
        opened.close()
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return [o for o in outcomes if isinstance(o, Outcome)]


@pytest.mark.usefixtures("postgresql_only")
def test_two_instances_racing_on_one_message_send_one_ack(
        desk: Desk, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same UID recorded by two instances at once: one records it, the other sees that."""
    desk.feed(customer_mail(99, addr="warm@example.org"))  # the round-robin row exists
    raw = customer_mail(1, addr="ana@example.org", subject="Invoice")
    source = Source("INBOX", 7, 1000)
    outcomes = _race(desk, store_url, monkeypatch, [(raw, source), (raw, source)])
    rules = sorted(o.verdict.rule for o in outcomes)
    assert rules == ["already_recorded", "new_thread"]
    acks = [i for i in desk.store.outbox() if i.recipient == "ana@example.org"]
    assert len(acks) == 1
    assert [m.uid for m in desk.store.messages()].count(1000) == 1


@pytest.mark.usefixtures("postgresql_only")
def test_one_message_id_under_two_uids_at_once_gets_one_ack(
        desk: Desk, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A message filed twice (two UIDs), taken by two instances at once: one ack, one duplicate."""
    desk.feed(customer_mail(99, addr="warm@example.org"))  # the round-robin row exists
    raw = customer_mail(1, addr="ana@example.org", subject="Invoice")
    outcomes = _race(desk, store_url, monkeypatch,
                     [(raw, Source("INBOX", 7, 2000)), (raw, Source("INBOX", 7, 2001))])
    assert sorted(o.verdict.rule for o in outcomes) == ["duplicate", "new_thread"]
    assert len([i for i in desk.store.outbox() if i.recipient == "ana@example.org"]) == 1
    assert len(desk.store.messages()) == 3, "both copies are recorded"


@pytest.mark.usefixtures("postgresql_only")
def test_two_schedulers_at_once_act_on_each_due_thread_once(desk: Desk, store_url: str) -> None:
    """Two instances' schedulers claim due threads with SKIP LOCKED: each breach fires once."""
    opened = [desk.feed(customer_mail(n, addr=f"c{n}@example.org")) for n in range(60)]
    late = T0 + timedelta(hours=5)
    stores = [Store.open(store_url) for _ in range(2)]
    deadlines = [Ingestor.create(desk.ingestor.config, s, FakeClock(late)).deadlines
                 for s in stores]
    acted = [0, 0]
    errors: list[BaseException] = []
    start = threading.Barrier(2, timeout=20)

    def run(index: int) -> None:
        try:
            start.wait()
            while done := deadlines[index].run_due(late, limit=5):
                acted[index] += done
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for s in stores:
        s.close()
    assert not errors
    assert all(acted), f"both schedulers took part: {acted}"
    for outcome in opened:
        assert desk.events(outcome.thread).count("breach") == 1
    escalations = [i for i in desk.store.outbox() if i.kind.startswith("escalation-")]
    assert len(escalations) == len(opened)


@pytest.mark.usefixtures("postgresql_only")
def test_a_thread_being_ticked_is_read_only_after_the_tick_commits(
        desk: Desk, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ingest waits for the scheduler's lock on a thread, so neither overwrites the other."""
    first = desk.feed(customer_mail(1, addr="ana@example.org"))
    assert first.thread is not None
    deadlines = desk.ingestor.deadlines
    ticked, release = threading.Event(), threading.Event()
    original = type(deadlines)._tick

    def slow_tick(self: object, tx: Tx, thread: Thread, now: datetime,
                  opened: Mapping[str, bool]) -> None:
        original(deadlines, tx, thread, now, opened)
        ticked.set()
        release.wait(10)  # hold the transaction, and its lock, open

    monkeypatch.setattr(deadlines, "_tick", slow_tick.__get__(deadlines))
    scheduler = threading.Thread(target=deadlines.run_due, args=(T0 + timedelta(hours=5),))
    scheduler.start()
    assert ticked.wait(10)
    other = Store.open(store_url)
    seen: list[str] = []

    def read_for_update() -> None:
        with other.transaction() as tx:
            thread = tx.thread(str(first.thread))
            assert thread is not None
            seen.append(thread.clock)

    reader = threading.Thread(target=read_for_update)
    reader.start()
    try:
        reader.join(0.5)
        waited = reader.is_alive()
    finally:
        release.set()
        scheduler.join(10)
        reader.join(10)
        other.close()
    assert waited, "the reader waits while the scheduler holds the thread"
    assert seen == [desk.thread(first.thread).clock], "it read the clock the tick wrote"
    assert "first_response" in seen[0] and "breached" in seen[0]
