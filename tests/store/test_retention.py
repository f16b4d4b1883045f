"""Retention on SQLite and PostgreSQL: resolved threads older than `[store] retention` go whole,
with mail no thread took; open and young threads stay. Filled through the real ingest path."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Table, func, select, text, update

from mailbridge.clock import FakeClock
from mailbridge.config import load_config
from mailbridge.daemon.ingest import Ingestor
from mailbridge.daemon.retention import Pruner
from mailbridge.metrics.families import Metrics
from mailbridge.store.db import Store
from mailbridge.store.migrations import MIGRATIONS
from mailbridge.store.retention import Pruned, prune_resolved, prune_step
from mailbridge.store.statements import KNOWN_IDS, MESSAGES, OUTBOX, THREADS
from mailbridge.store.tables import OutboxItem
from tests.configs import MAILBOX, MINIMAL
from tests.mails import TRUSTED_RULES, customer_mail
from tests.store.test_flow import Desk
from tests.test_staff import reply

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
YEAR = timedelta(days=365)


@pytest.fixture
def desk(store: Store, tmp_path: Path) -> Iterator[Desk]:
    config_file = tmp_path / "mailbridge.toml"
    config_file.write_text(f'{MINIMAL}{MAILBOX}{TRUSTED_RULES}[daemon]\nstate_dir = "{tmp_path}"\n')
    yield Desk(Ingestor.create(load_config(config_file), store, FakeClock(T0)), store)


def opened(desk: Desk, n: int, at: datetime) -> tuple[bytes, str]:
    original = customer_mail(n, addr=f"customer{n}@example.org", subject=f"Order {n} is late")
    outcome = desk.feed(original, at)
    assert outcome.thread is not None
    return original, outcome.thread


def closed(desk: Desk, n: int, at: datetime) -> str:
    """A thread opened at `at`, its ack sent, and closed by its agent ten minutes later."""
    original, thread = opened(desk, n, at)
    with desk.store.transaction() as tx:
        tx.session.connection().execute(update(OUTBOX).where(OUTBOX.c.thread_id == thread)
                                        .values(state="sent", sent_at=at))
    desk.feed(reply(original, "#close\nRefunded."), at + timedelta(minutes=10))
    return thread


def count(store: Store, table: Table, **where: object) -> int:
    query = select(func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with store.reading() as conn:
        return int(conn.execute(query).scalar_one())


def test_closing_sets_resolved_at_and_a_customer_s_return_clears_it(desk: Desk) -> None:
    """Retention counts from the resolution: set when the agent closes, kept while resolved,
    cleared when the customer writes again."""
    original, thread = opened(desk, 1, T0)
    closed_at = T0 + timedelta(minutes=10)
    desk.feed(reply(original, "#close\nDone."), closed_at)
    assert desk.thread(thread).resolved_at == closed_at
    desk.feed(reply(original, "#close\n"), closed_at + timedelta(hours=1))
    assert desk.thread(thread).resolved_at == closed_at, "a second #close keeps the time"
    follow = customer_mail(2, addr="customer1@example.org", subject="Re: Order 1 is late",
                           In_Reply_To=desk.store.outbox()[0].message_id)
    desk.feed(follow, closed_at + timedelta(days=1))
    row = desk.thread(thread)
    assert (row.state, row.resolved_at) == ("awaiting_agent", None)


def test_a_thread_resolved_by_quiet_gets_the_time_of_the_tick(desk: Desk) -> None:
    """The scheduler resolving a quiet thread records when it did."""
    original, thread = opened(desk, 1, T0)
    desk.feed(reply(original, "Here is your refund."), T0 + timedelta(minutes=5))
    late = T0 + timedelta(days=30)
    while desk.ingestor.deadlines.run_due(late):
        pass
    row = desk.thread(thread)
    assert (row.state, row.resolved_at) == ("resolved", late)


def test_expired_threads_go_whole_and_the_rest_stays(desk: Desk, store: Store) -> None:
    """Past the retention: the resolved thread, its messages, history, outbox rows and known
    ids, and mail of no thread. Kept: a younger resolved thread, an old open one, young mail
    of no thread, and a pending outbox row of no thread."""
    old = closed(desk, 1, T0)
    young = closed(desk, 2, T0 + timedelta(days=200))
    _, still_open = opened(desk, 3, T0)
    bulk = customer_mail(4, addr="news@example.org", Precedence="bulk")
    assert desk.feed(bulk, T0).thread is None
    assert desk.feed(customer_mail(5, addr="n2@example.org", Precedence="bulk"),
                     T0 + timedelta(days=300)).thread is None
    with store.transaction() as tx:
        for kind, state in (("relay-1-0", "sent"), ("relay-2-0", "pending")):
            tx.insert(OutboxItem, thread_id="", kind=kind, mailbox="relay", message_id="<r@x>",
                      envelope_from="dana@example.com", recipient="someone@example.org",
                      body=b"x", state=state, attempts=0, next_attempt_at=T0, created_at=T0,
                      arrived_at=T0, sent_at=None, last_error="")
    before = {thread: count(store, MESSAGES, thread_id=thread) for thread in (old, young)}
    assert before[old] == 2 and count(store, KNOWN_IDS, thread_id=old) >= 2

    now = T0 + YEAR + timedelta(days=1)
    total = Pruned()
    while step := prune_step(store, now - YEAR, limit=10):
        total += step
    assert (total.threads, total.messages, total.outbox) == (1, 2 + 1, 1 + 1)
    assert total.events >= 2 and total.known_ids >= 2
    for table in (MESSAGES, OUTBOX, KNOWN_IDS):
        assert count(store, table, thread_id=old) == 0
    assert count(store, THREADS, id=old) == 0
    assert count(store, THREADS, id=young) == 1 and count(store, MESSAGES, thread_id=young) == 2
    assert count(store, THREADS, id=still_open) == 1
    assert count(store, OUTBOX, kind="relay-2-0") == 1, "unsent mail is never pruned"
    with store.reading() as conn:
        unthreaded = conn.execute(select(MESSAGES.c.sender).where(
            MESSAGES.c.thread_id.is_(None))).scalars().all()
    assert unthreaded == ["n2@example.org"]
    assert not prune_step(store, now - YEAR), "a second run finds nothing"


def test_a_step_is_small(desk: Desk, store: Store) -> None:
    """Each step deletes at most `limit` threads, oldest resolution first."""
    threads = [closed(desk, n, T0 + timedelta(hours=n)) for n in range(1, 6)]
    cutoff = T0 + timedelta(days=10)
    assert prune_resolved(store, cutoff, limit=2).threads == 2
    assert count(store, THREADS, id=threads[0]) == 0 and count(store, THREADS, id=threads[2])
    assert prune_resolved(store, cutoff, limit=2).threads == 2
    assert prune_resolved(store, cutoff, limit=2).threads == 1
    assert not prune_resolved(store, cutoff, limit=2)


def test_two_instances_pruning_at_once_delete_each_thread_once(
        desk: Desk, store: Store, store_url: str, postgresql_only: None) -> None:
    """Two stores (instances) prune concurrently: no error, every thread deleted once."""
    for n in range(1, 41):
        closed(desk, n, T0 + timedelta(minutes=n))
    other = Store.open(store_url)
    results: list[Pruned] = [Pruned(), Pruned()]
    barrier = threading.Barrier(2)

    def run(index: int, target: Store) -> None:
        barrier.wait(timeout=10)
        while step := prune_resolved(target, T0 + timedelta(days=10), limit=3):
            results[index] += step

    workers = [threading.Thread(target=run, args=(i, s)) for i, s in enumerate((store, other))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    other.close()
    assert results[0].threads + results[1].threads == 40
    assert results[0].messages + results[1].messages == 80
    assert count(store, THREADS) == 0 and count(store, MESSAGES) == 0


def test_migration_8_takes_the_resolution_from_the_history(store_url: str) -> None:
    """A store at version 7 with a resolved thread: its resolved_at is its latest "resolved"
    event; an open thread's stays empty."""
    from mailbridge.store.engine import engine_for

    engine = engine_for(store_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, "
                          "description TEXT NOT NULL, applied_at TEXT NOT NULL)"))
    for number, description, step in MIGRATIONS[:7]:
        with engine.begin() as conn:
            step(conn)
            conn.execute(text("INSERT INTO schema_version VALUES (:v, :d, 'then')"),
                         {"v": number, "d": description})
    resolved_at = T0 + timedelta(hours=3)
    engine.dispose()
    store = Store(engine_for(store_url))
    with store.transaction() as tx:
        for ref, state in (("RESOLV", "resolved"), ("OPENED", "awaiting_agent")):
            tx.session.connection().execute(THREADS.insert().values(
                id=ref, created_at=T0, customer="a@x", subject="s", agent_name="D",
                agent_email="d@x", state=state, first_response_due=T0))
        event_times = (T0 + timedelta(hours=1), resolved_at)
        for at in event_times:
            tx.event("RESOLV", at, "resolved", "closed by D")
        tx.event("RESOLV", T0 + timedelta(hours=2), "reopened", "by D")
    store.close()
    store = Store.open(store_url)
    try:
        with store.transaction() as tx:
            resolved, still_open = tx.thread("RESOLV"), tx.thread("OPENED")
            assert resolved is not None and resolved.resolved_at == resolved_at
            assert still_open is not None and still_open.resolved_at is None
    finally:
        store.close()


def test_the_daemon_s_pruner_counts_what_it_deleted(desk: Desk, store: Store) -> None:
    """The daily task prunes as of its clock and counts threads and messages in the metrics;
    it stops when asked while it sleeps until the next day."""
    for n in (1, 2):
        closed(desk, n, T0)
    registry = CollectorRegistry()
    metrics = Metrics(registry, ["INBOX"])
    clock = FakeClock(T0 + YEAR + timedelta(days=2))
    pruner = Pruner(store, clock, retention=YEAR, metrics=metrics, first_run=timedelta(0),
                    limit=1)

    async def scenario() -> None:
        stopping = asyncio.Event()
        task = asyncio.create_task(pruner.run(stopping))
        deadline = asyncio.get_running_loop().time() + 20
        while registry.get_sample_value("mailbridge_retention_last_run_timestamp_seconds") \
                != clock.now().timestamp():
            assert asyncio.get_running_loop().time() < deadline, "no pruning run"
            await asyncio.sleep(0.01)
        stopping.set()
        await asyncio.wait_for(task, timeout=5)

    asyncio.run(scenario())
    assert registry.get_sample_value("mailbridge_pruned_threads_total") == 2
    assert registry.get_sample_value("mailbridge_pruned_messages_total") == 4
    assert count(store, THREADS) == 0

