"""The store contract: migrations, aware times, the outbox and cursors (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from mailbridge.store.db import Store
from mailbridge.store.migrations import MIGRATIONS, current_version, migrate
from mailbridge.store.outbox import Finished
from mailbridge.store.tables import KnownId, OutboxItem, Thread
from tests.outbox import T0, outbox_item


def test_migrations_are_versioned_and_idempotent(store: Store) -> None:
    """A new store is at the latest version, and migrating again changes nothing."""
    latest = MIGRATIONS[-1][0]
    assert migrate(store.engine) == latest
    with store.engine.connect() as conn:
        assert current_version(conn) == latest


def test_models_match_the_migrated_schema(store: Store) -> None:
    """Every model column exists in the migrated database, and no table lacks a model."""
    inspector = inspect(store.engine)
    for table in SQLModel.metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name


def test_times_come_back_aware_utc(store: Store) -> None:
    """A time stored with any offset is read back as the same instant in UTC."""
    berlin = datetime(2026, 3, 29, 3, 30, tzinfo=UTC).astimezone()
    with store.transaction() as tx:
        tx.add(Thread(id="ABCDEF", created_at=berlin, customer="a@x", agent_name="D",
                      agent_email="d@x", first_response_due=berlin))
    with store.transaction() as tx:
        thread = tx.thread("ABCDEF")
        assert thread is not None
        assert thread.first_response_due == berlin
        assert thread.first_response_due.tzinfo == UTC


def test_the_per_message_path_writes_what_the_models_read(store: Store) -> None:
    """`Tx.insert` (direct on SQLite's cursor) stores aware times as UTC, fills in the
    columns' defaults, and is refused by the same constraints."""
    berlin = datetime(2026, 3, 29, 3, 30, tzinfo=UTC).astimezone(ZoneInfo("Europe/Berlin"))
    with store.transaction() as tx:
        tx.insert(Thread, id="ABCDEF", created_at=berlin, customer="a@x", subject="Help",
                  agent_name="D", agent_email="d@x",
                  first_response_due=berlin + timedelta(hours=4))
        tx.insert(OutboxItem, **outbox_item("ABCDEF").model_dump(exclude={"id"}))
        assert tx.threads_started(berlin) == 1
        assert tx.threads_started(berlin + timedelta(microseconds=1)) == 0
    with store.transaction() as tx:
        thread = tx.thread("ABCDEF")
        assert thread is not None
        assert thread.created_at == berlin and thread.created_at.tzinfo == UTC
        assert (thread.state, thread.policy, thread.priority) == (
            "awaiting_agent", "default", "normal")
        assert tx.thread_customer("ABCDEF") == "a@x" and tx.thread_customer("NOSUCH") is None
        [recent] = tx.recent_threads("a@x", berlin)
        assert recent.created_at == berlin and recent.created_at.tzinfo == UTC
        last = tx.last_agent("a@x")
        assert last == ("d@x", berlin) and last[1].tzinfo == UTC
    with pytest.raises(IntegrityError), store.transaction() as tx:
        tx.insert(OutboxItem, **outbox_item("ABCDEF").model_dump(exclude={"id"}))
    assert len(store.outbox()) == 1


def test_known_ids_read_for_a_batch_answer_as_the_table_does(store: Store) -> None:
    """Keys read at once for a batch (`Tx.read_known_ids`) answer like the table: ids stored
    before, ids the batch stores itself, ids nobody stored; keys not read are asked."""
    with store.transaction() as tx:
        tx.insert(KnownId, message_id="<a@x>", thread_id="AAAAAA", direction="in")
    with store.transaction() as tx:
        tx.read_known_ids(["<a@x>", "<b@x>", "<c@x>", "<a@x>"])
        assert tx.known_ids(["<a@x>", "<b@x>"]) == {"<a@x>": ("AAAAAA", "in")}
        tx.insert(KnownId, message_id="<b@x>", thread_id="BBBBBB", direction="out")
        assert tx.known_ids(["<b@x>", "<c@x>"]) == {"<b@x>": ("BBBBBB", "out")}
        assert tx.known_ids(["<d@x>", "<a@x>"]) == {"<a@x>": ("AAAAAA", "in")}
    with store.transaction() as tx:
        assert tx.known_ids(["<b@x>", "<c@x>"]) == {"<b@x>": ("BBBBBB", "out")}


def test_the_next_due_time_is_the_earliest_aware_time(store: Store) -> None:
    """The scheduler's indexed MIN comes back as an aware UTC time, or None."""
    assert store.next_due_time() is None
    for ref, due in (("LATERR", T0 + timedelta(hours=2)), ("FIRSTT", T0 + timedelta(hours=1))):
        with store.transaction() as tx:
            tx.add(Thread(id=ref, created_at=T0, customer="a@x", agent_name="D",
                          agent_email="d@x", first_response_due=due, next_due_at=due))
    found = store.next_due_time()
    assert found == T0 + timedelta(hours=1) and found.tzinfo == UTC


def test_a_thread_can_have_only_one_ack(store: Store) -> None:
    """The schema itself refuses a second acknowledgement for a thread."""
    with store.transaction() as tx:
        tx.add(outbox_item("ABCDEF"))
    with pytest.raises(IntegrityError), store.transaction() as tx:
        tx.add(outbox_item("ABCDEF"))
    assert len(store.outbox()) == 1


def test_claim_takes_due_items_in_order_and_marks_them_sending(store: Store) -> None:
    """Only due items are claimed, oldest first, each once."""
    with store.transaction() as tx:
        tx.add(outbox_item("LATERR", due=T0 + timedelta(minutes=5)))
        tx.add(outbox_item("FIRSTT", due=T0))
    first = store.claim_outbox(T0)
    assert first is not None and first.thread_id == "FIRSTT" and first.attempts == 1
    assert store.claim_outbox(T0) is None
    assert store.next_outbox_time() == T0 + timedelta(minutes=5)
    later = store.claim_outbox(T0 + timedelta(minutes=5))
    assert later is not None and later.thread_id == "LATERR"


def test_interrupted_sends_are_failed_not_repeated(store: Store) -> None:
    """An item left `sending` by a crash is recorded as failed and never claimed again."""
    with store.transaction() as tx:
        tx.add(outbox_item("ABCDEF"))
    assert store.claim_outbox(T0) is not None
    assert store.recover_interrupted(T0) == 1
    assert store.claim_outbox(T0 + timedelta(days=1)) is None
    [item] = store.outbox()
    assert item.state == "failed" and "interrupted" in item.last_error


def test_retry_puts_an_item_back_for_later(store: Store) -> None:
    """A temporary failure makes the item due again at the retry time, with its error."""
    with store.transaction() as tx:
        tx.add(outbox_item("ABCDEF"))
    item = store.claim_outbox(T0)
    assert item is not None
    store.finish_outbox(Finished(item.id, "pending", T0, "SMTP 451 busy",
                                 T0 + timedelta(seconds=30)))
    assert store.claim_outbox(T0 + timedelta(seconds=29)) is None
    again = store.claim_outbox(T0 + timedelta(seconds=30))
    assert again is not None and again.attempts == 2


def test_a_batch_of_outcomes_records_each_on_its_own_item(store: Store) -> None:
    """Sent, retried, failed and unknown outcomes recorded together each land on their item."""
    with store.transaction() as tx:
        for thread in ("SENT01", "SENT02", "RETRY1", "FAILED", "UNKNWN"):
            tx.add(outbox_item(thread))
    items = {i.thread_id: i.id for i in store.claim_outbox_batch(T0, limit=10)}
    later = T0 + timedelta(seconds=30)
    store.finish_outbox_batch([
        Finished(items["SENT01"], "sent", T0), Finished(items["RETRY1"], "pending", T0,
                                                       "SMTP 451 busy", later),
        Finished(items["FAILED"], "failed", T0, "SMTP 550 no such user"),
        Finished(items["SENT02"], "sent", T0), Finished(items["UNKNWN"], "unknown", T0, "lost")])
    by_thread = {i.thread_id: i for i in store.outbox()}
    assert {t: i.state for t, i in by_thread.items()} == {
        "SENT01": "sent", "SENT02": "sent", "RETRY1": "pending", "FAILED": "failed",
        "UNKNWN": "unknown"}
    assert by_thread["SENT01"].sent_at == T0 and by_thread["RETRY1"].sent_at is None
    assert by_thread["FAILED"].last_error == "SMTP 550 no such user"
    assert by_thread["RETRY1"].next_attempt_at == later


def test_round_robin_counter_is_durable(store: Store) -> None:
    """Turns keep counting across transactions."""
    turns = []
    for _ in range(3):
        with store.transaction() as tx:
            turns.append(tx.take_turn("round_robin"))
    assert turns == [0, 1, 2]


def test_round_robin_turns_count_on_within_and_across_transactions(store: Store) -> None:
    """Round-robin turns run on inside a transaction, and from one commit to the next."""
    turns = []
    for _ in range(2):
        with store.transaction() as tx:
            turns += [tx.round_robin_turn(), tx.round_robin_turn()]
    with pytest.raises(RuntimeError), store.transaction() as tx:
        tx.round_robin_turn()
        raise RuntimeError("rolled back: its turn is not counted")
    with store.transaction() as tx:
        turns.append(tx.round_robin_turn())
    assert turns == [0, 1, 2, 3, 4]


@pytest.mark.usefixtures("postgresql_only")
def test_instances_taking_turns_do_not_wait_for_each_other(store_url: str) -> None:
    """An open transaction that took a round-robin turn does not hold up another instance's."""
    first, second = Store.open(store_url), Store.open(store_url)
    try:
        with first.transaction() as tx:
            tx.round_robin_turn()
        other: list[int] = []
        with first.transaction() as tx:
            assert tx.round_robin_turn() == 1
            worker = threading.Thread(target=lambda: other.append(_one_turn(second)))
            worker.start()
            worker.join(timeout=20)
            assert other, "the other instance waited for this transaction's commit"
        with first.transaction() as tx:
            assert tx.round_robin_turn() == 3, "both turns were counted"
    finally:
        first.close()
        second.close()


def _one_turn(store: Store) -> int:
    with store.transaction() as tx:
        return tx.round_robin_turn()


def test_claiming_the_next_item_records_the_previous_outcome(store: Store) -> None:
    """The outcome passed to claim_outbox is committed with the next claim."""
    with store.transaction() as tx:
        tx.add(outbox_item("FIRSTT"))
        tx.add(outbox_item("SECOND"))
    first = store.claim_outbox(T0)
    assert first is not None
    second = store.claim_outbox(T0, finished=Finished(first.id, "sent", T0))
    assert second is not None and second.thread_id == "SECOND"
    states = {i.thread_id: (i.state, i.sent_at) for i in store.outbox()}
    assert states == {"FIRSTT": ("sent", T0), "SECOND": ("sending", None)}


def test_a_batch_claim_takes_due_items_oldest_first_up_to_its_limit(store: Store) -> None:
    """Up to `limit` due items at once, each marked sending with one more attempt; the
    outcomes handed in are recorded in the same transaction."""
    with store.transaction() as tx:
        for n, minutes in enumerate((3, 1, 2, 0, 60)):
            tx.add(outbox_item(f"ITEM{n:02d}", due=T0 + timedelta(minutes=minutes)))
    first = store.claim_outbox_batch(T0 + timedelta(minutes=5), limit=3, claimer="me")
    assert [i.thread_id for i in first] == ["ITEM03", "ITEM01", "ITEM02"]
    assert all(i.attempts == 1 for i in first)
    finished = [Finished(i.id, "sent", T0) for i in first]
    rest = store.claim_outbox_batch(T0 + timedelta(minutes=5), finished=finished, limit=3)
    assert [i.thread_id for i in rest] == ["ITEM00"], "the item due in an hour waits"
    states = {i.thread_id: (i.state, i.claimed_by) for i in store.outbox()}
    assert states == {"ITEM03": ("sent", "me"), "ITEM01": ("sent", "me"),
                      "ITEM02": ("sent", "me"), "ITEM00": ("sending", None),
                      "ITEM04": ("pending", None)}
