"""A mailbox catching up: a fetched batch recorded in one transaction decides exactly as
one message at a time would, and a batch that fails leaves nothing half recorded."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from mailbridge.daemon.ingest import Incoming, Outcome, Source
from mailbridge.mail.parse import parse_message
from mailbridge.store.db import Store
from mailbridge.store.tables import Message
from tests.mails import VOUCHED, customer_mail
from tests.test_ingest_team import MONDAY, Desk, berlin

START = berlin(*MONDAY, 14)  # Dana and Sam are both on shift


def backlog() -> list[Incoming]:
    """New customers, a second message of the first (same subject, minutes later), an
    auto-reply, a repeated Message-ID and a message that could not be parsed."""
    raws = [customer_mail(n, addr=f"c{n}@example.org", subject=f"Order {n}") for n in range(5)]
    raws.append(customer_mail(10, addr="c0@example.org", subject="Re: Order 0"))
    raws.append(customer_mail(11, addr="ooo@example.org", Auto_Submitted="auto-replied"))
    raws.append(raws[1])
    first_id = parse_message(raws[0]).message_id
    raws.append(customer_mail(12, addr="dana@example.com", subject="Re: Order 0",
                              In_Reply_To=first_id, References=first_id,
                              Authentication_Results=VOUCHED))
    raws.append(customer_mail(13, addr="c0@example.org", subject="Re: Order 0",
                              In_Reply_To=first_id, References=first_id))
    items = [Incoming(Source("INBOX", 7, uid), parse_message(raw),
                      START + timedelta(minutes=uid), len(raw))
             for uid, raw in enumerate(raws, 1)]
    items.append(Incoming(Source("INBOX", 7, len(items) + 1), None, START, 123,
                          error="ValueError: no header block"))
    return items


def shape(outcomes: list[Outcome]) -> list[tuple[str, str | None, int | None, bool]]:
    """What a person checks, without the random thread references: each message's rule,
    its agent, which message started its thread, and whether an ack was queued."""
    first: dict[str, int] = {}
    rows = []
    for index, outcome in enumerate(outcomes):
        if outcome.thread is not None:
            first.setdefault(outcome.thread, index)
        rows.append((outcome.verdict.rule, outcome.agent.name if outcome.agent else None,
                     first.get(outcome.thread) if outcome.thread else None,
                     outcome.ack_message_id is not None))
    return rows


@pytest.fixture(params=["sqlite", "postgresql"])
def batch_store_url(request: pytest.FixtureRequest) -> str:
    """Where the batch is recorded: SQLite in memory, or a fresh PostgreSQL database (where
    the batch's reads and its held-back writes take other paths: `store.batch_reads`,
    psycopg's pipeline)."""
    if request.param == "sqlite":
        return "sqlite://"
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_a_batch_decides_as_one_message_at_a_time_does(tmp_path: Path,
                                                       batch_store_url: str) -> None:
    """Same rules, same threads, same spread over the agents, the cursor past the last UID."""
    alone, batched = Store.open("sqlite://"), Store.open(batch_store_url)
    try:
        one, many = Desk(tmp_path, alone), Desk(tmp_path, batched)
        expected = []
        for item in backlog():
            if item.message is None:
                expected.append(one.ingestor.record_failure(
                    item.source, item.error, size=item.size, received=item.received,
                    now=item.received))
            else:
                expected.append(one.ingestor.ingest(item.message, item.source,
                                                    received=item.received, now=item.received))
        got = many.ingestor.ingest_many(backlog(), now=START)
        assert shape(got) == shape(expected)
        rules = [row[0] for row in shape(got)]
        assert rules[:8] == ["new_thread"] * 5 + ["follow_up", "auto_submitted", "duplicate"]
        assert rules[10] == "internal_error"
        assert shape(got)[8][2] == shape(got)[9][2] == 0, "the agent's reply and the "\
            "customer's answer to it joined the first thread"
        agents = [row[1] for row in shape(got)[:5]]
        assert {agents.count("Dana Whitfield"), agents.count("Sam Okafor")} == {2, 3}
        assert len(batched.outbox()) == 5
        assert batched.cursor("", "INBOX") == (7, 11)
        assert len(batched.messages()) == 11
        with batched.transaction() as tx:
            thread = tx.thread(got[0].thread or "")
            assert thread is not None and thread.state == "awaiting_agent", \
                "the agent answered, then the customer wrote again"
    finally:
        alone.close()
        batched.close()


def test_a_batch_fetched_again_records_only_what_is_new(tmp_path: Path) -> None:
    """UIDs recorded by an earlier batch, or twice in one batch, are recorded once."""
    store = Store.open("sqlite://")
    try:
        desk = Desk(tmp_path, store)
        items = [item for item in backlog() if item.message is not None]
        desk.ingestor.ingest_many(items[:3], now=START)
        again = desk.ingestor.ingest_many([*items, items[4]], now=START)
        assert [o.recorded for o in again] == [False] * 3 + [True] * (len(items) - 3) + [False]
        assert {o.verdict.rule for o in again if not o.recorded} == {"already_recorded"}
        assert len(store.messages()) == len(items)
        assert store.cursor("", "INBOX") == (7, len(items))
    finally:
        store.close()


def test_a_batch_that_fails_records_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            ) -> None:
    """A bug in the fourth message rolls the whole batch back: no message, no ack, no cursor
    move; the caller then records them one at a time (`Service._deliver_chunk`)."""
    store = Store.open("sqlite://")
    try:
        desk = Desk(tmp_path, store)
        render = desk.ingestor.renderer.render_ack
        calls = []

        def failing(*args: object, **kwargs: object) -> object:
            calls.append(1)
            if len(calls) == 4:
                raise RuntimeError("a template bug")
            return render(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(desk.ingestor.renderer, "render_ack", failing)
        with pytest.raises(RuntimeError):
            desk.ingestor.ingest_many(backlog(), now=START)
        with store.transaction() as tx:
            assert tx.session.exec(select(Message)).all() == []
        assert store.outbox() == [] and store.cursor("", "INBOX") is None
    finally:
        store.close()
