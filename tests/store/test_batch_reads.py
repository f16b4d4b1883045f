"""A batch of new customers is decided from reads asked once for the whole batch
(`store.batch_reads`): the caps, the queue places the acknowledgements promise and the
agent a returning customer gets are those of one message at a time, on both backends."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from mailbridge.clock import SystemClock
from mailbridge.config import load_config
from mailbridge.core.standing import QUEUE_CAP
from mailbridge.daemon.ingest import Incoming, Ingestor, Outcome, Source
from mailbridge.daemon.recording import MESSAGES_PER_TRANSACTION
from mailbridge.mail.parse import parse_message
from mailbridge.store.db import Store
from tests.mails import TRUSTED_RULES, customer_mail
from tests.test_ingest_team import CONFIG, MONDAY, berlin, hours

START = berlin(*MONDAY, 14)  # Dana and Sam are both on shift


def desk(tmp_path: Path, store: Store, rules: str = "") -> Ingestor:
    path = tmp_path / "mailbridge.toml"
    path.write_text(CONFIG.format(dana="", dana_hours=hours("09:00-17:00"),
                                  sam_hours=hours("13:00-21:00"))
                    + TRUSTED_RULES + rules + f'[daemon]\nstate_dir = "{tmp_path}"\n')
    return Ingestor.create(load_config(path), store, SystemClock())


def mail(uid: int, addr: str, subject: str, at: datetime) -> Incoming:
    raw = customer_mail(uid, addr=addr, subject=subject)
    return Incoming(Source("INBOX", 7, uid), parse_message(raw), at, len(raw))


def one_by_one(ingestor: Ingestor, items: list[Incoming]) -> list[Outcome]:
    return [ingestor.ingest(item.message, item.source, received=item.received, now=item.received)
            for item in items if item.message is not None]


def test_the_caps_count_the_batch_itself(tmp_path: Path, store: Store) -> None:
    """Four acknowledgements a minute at most, two per customer a day: a batch of a flood
    acknowledges the first four, as mail arriving one by one would, and the window
    moves on with the batch."""
    ingestor = desk(tmp_path, store, "global_cap_per_minute = 4\nsender_cap = 2\n")
    one_by_one(ingestor, [mail(1, "repeat@example.org", "First", START - timedelta(hours=2))])
    items = [mail(2, "repeat@example.org", "Second", START),
             *[mail(3 + n, f"c{n}@example.org", f"Order {n}", START + timedelta(seconds=10 + n))
               for n in range(4)],
             mail(7, "late@example.org", "Later", START + timedelta(seconds=70)),
             mail(8, "repeat@example.org", "Third", START + timedelta(minutes=5))]
    got = ingestor.ingest_many(items, now=START)
    assert [o.verdict.rule for o in got] == [
        "new_thread", "new_thread", "new_thread", "new_thread", "global_cap", "new_thread",
        "sender_cap"]
    assert "4 acknowledgements in the last minute" in got[4].verdict.detail
    assert "2 acknowledgements" in got[6].verdict.detail
    assert len(store.outbox()) == 1 + 5


def test_queue_places_and_returning_customers(tmp_path: Path, store: Store) -> None:
    """Each acknowledgement of a batch names the requests ahead of it in its agent's queue,
    counting those already waiting and those of the batch before it; a customer who wrote
    before goes to the same agent."""
    ingestor = desk(tmp_path, store)
    earlier = one_by_one(ingestor, [
        mail(1, "back@example.org", "Printer", START - timedelta(days=3)),
        mail(2, "w1@example.org", "Waiting 1", START - timedelta(minutes=30)),
        mail(3, "w2@example.org", "Waiting 2", START - timedelta(minutes=20))])
    returning = earlier[0].agent
    assert returning is not None
    items = [mail(4 + n, f"c{n}@example.org", f"Order {n}", START + timedelta(minutes=n))
             for n in range(6)]
    items.insert(3, mail(20, "back@example.org", "Scanner", START + timedelta(seconds=150)))
    got = ingestor.ingest_many(items, now=START + timedelta(minutes=6))
    assert all(o.verdict.rule == "new_thread" for o in got)
    assert got[3].agent == returning, "the returning customer keeps their agent"
    places: dict[str, list[int | None]] = {}
    for outcome in [*earlier, *got]:
        assert outcome.agent is not None
        places.setdefault(outcome.agent.email, []).append(outcome.queue_ahead)
    for agent, seen in places.items():
        # The printer thread of three days ago is still waiting too: it is first in line.
        assert seen == list(range(len(seen))), agent
    assert sum(len(seen) for seen in places.values()) == 10


def test_a_batch_decides_as_one_at_a_time(tmp_path: Path) -> None:
    """The same mail on a second store, one message at a time: the same rules, agents and
    queue places, returning customers and the sender cap among them."""
    items = [mail(1 + n, f"c{n % 5}@example.org", f"Order {n}", START + timedelta(seconds=45 * n))
             for n in range(12)]
    alone = Store.open(f"sqlite:///{tmp_path}/alone.sqlite3")
    many = Store.open(f"sqlite:///{tmp_path}/many.sqlite3")
    try:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        expected = one_by_one(desk(tmp_path / "a", alone, "sender_cap = 2\n"), items)
        got = desk(tmp_path / "b", many, "sender_cap = 2\n").ingest_many(items, now=START)
        assert [(o.verdict.rule, o.agent, o.queue_ahead) for o in got] == \
            [(o.verdict.rule, o.agent, o.queue_ahead) for o in expected]
        assert {o.verdict.rule for o in got} == {"new_thread", "sender_cap"}
    finally:
        alone.close()
        many.close()


def test_a_long_queue_is_counted_to_its_cap(tmp_path: Path) -> None:
    """Past `QUEUE_CAP` requests ahead, acknowledgements say "that many or more": batches of
    a long backlog promise the same places as one message at a time, up to the cap."""
    items = [mail(1 + n, f"c{n}@example.org", f"Order {n}", START + timedelta(seconds=n))
             for n in range(2 * QUEUE_CAP + 30)]
    alone = Store.open(f"sqlite:///{tmp_path}/alone.sqlite3")
    many = Store.open(f"sqlite:///{tmp_path}/many.sqlite3")
    try:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        expected = one_by_one(desk(tmp_path / "a", alone), items)
        batched = desk(tmp_path / "b", many)
        got = [outcome for start in range(0, len(items), MESSAGES_PER_TRANSACTION)
               for outcome in batched.ingest_many(items[start:start + MESSAGES_PER_TRANSACTION],
                                                  now=START)]
        assert [(o.agent, o.queue_ahead) for o in got] == \
            [(o.agent, o.queue_ahead) for o in expected]
        assert got[-1].queue_ahead == QUEUE_CAP
        assert sorted({o.queue_ahead for o in got}) == list(range(QUEUE_CAP + 1))
    finally:
        alone.close()
        many.close()
