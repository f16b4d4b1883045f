"""An agent's queue on SQLite and PostgreSQL: how many waiting threads come before one, by
deadline, then arrival, then id, from the index alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from mailbridge.core.standing import QUEUE_CAP
from mailbridge.store.db import Store
from mailbridge.store.tables import Thread

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
DUE = T0 + timedelta(hours=4)


def add(store: Store, thread_id: str, agent: str, due: datetime, *, since: datetime = T0,
        state: str = "awaiting_agent") -> None:
    with store.transaction() as tx:
        tx.insert(Thread, id=thread_id, created_at=since, customer=f"{thread_id}@example.org",
                  subject="", agent_name="", agent_email=agent, state=state,
                  first_response_due=due, subject_key="", language="en", assignment="",
                  waiting_since=since if state == "awaiting_agent" else None,
                  response_due_at=due if state == "awaiting_agent" else None,
                  response_kind="first_response" if state == "awaiting_agent" else None)


def ahead(store: Store, agent: str, thread_id: str, due: datetime = DUE,
          since: datetime = T0) -> int:
    with store.transaction() as tx:
        return tx.queue_ahead(agent, due=due, since=since, thread_id=thread_id)


def test_the_queue_counts_only_earlier_waiting_threads_of_the_agent(store: Store) -> None:
    """Earlier deadlines of the same agent (in any case) count; later ones, other agents',
    answered and resolved threads do not."""
    add(store, "A1", "dana@example.com", DUE - timedelta(hours=1))
    add(store, "A2", "Dana@Example.com", DUE - timedelta(minutes=1))  # overdue ones count too
    add(store, "A3", "dana@example.com", DUE + timedelta(minutes=1))
    add(store, "B1", "sam@example.com", DUE - timedelta(hours=2))
    add(store, "C1", "dana@example.com", DUE - timedelta(hours=2), state="awaiting_customer")
    add(store, "C2", "dana@example.com", DUE - timedelta(hours=2), state="resolved")
    assert ahead(store, "DANA@example.com", "NEW") == 2
    assert ahead(store, "sam@example.com", "NEW") == 1
    assert ahead(store, "lee@example.com", "NEW") == 0
    assert ahead(store, "dana@example.com", "A1", DUE - timedelta(hours=1)) == 0


def test_equal_deadlines_go_by_arrival(store: Store) -> None:
    """Threads due at the same moment (mail that came in while the desk was closed) go by
    arrival; those that arrived at the very same moment count as ahead of each other."""
    add(store, "K1", "dana@example.com", DUE, since=T0 - timedelta(minutes=5))
    add(store, "K2", "dana@example.com", DUE)
    add(store, "K3", "dana@example.com", DUE + timedelta(minutes=5))
    assert ahead(store, "dana@example.com", "K1", since=T0 - timedelta(minutes=5)) == 0
    assert ahead(store, "dana@example.com", "K2") == 1
    assert ahead(store, "dana@example.com", "NEW") == 2  # K1, and K2 of the same moment
    assert ahead(store, "dana@example.com", "K3", DUE + timedelta(minutes=5)) == 2


def test_the_count_uses_the_queue_index(store: Store) -> None:
    """The plan reads ix_threads_agent_queue, not the whole table."""
    with store.transaction() as tx:
        conn = tx.session.connection()
        query = ("SELECT count(*) FROM threads WHERE state = 'awaiting_agent' AND "
                 "lower(agent_email) = 'dana@example.com' AND response_due_at <= :due")
        if conn.dialect.name == "sqlite":
            plan = " ".join(str(row[-1]) for row in conn.execute(
                text("EXPLAIN QUERY PLAN " + query), {"due": "2026-12-01 00:00:00"}))
        else:
            conn.execute(text("SET LOCAL enable_seqscan = off"))  # an empty table otherwise
            plan = " ".join(str(row[0]) for row in conn.execute(
                text("EXPLAIN " + query), {"due": DUE}))
    assert "ix_threads_agent_queue" in plan, plan


def test_a_long_queue_is_counted_up_to_the_cap(store: Store) -> None:
    """Beyond QUEUE_CAP the count stops: the words then say "at least"."""
    with store.transaction() as tx:
        for n in range(QUEUE_CAP + 5):
            due = DUE - timedelta(minutes=n + 1)
            tx.insert(Thread, id=f"Q{n:04d}", created_at=T0, customer="q@example.org",
                      subject="", agent_name="", agent_email="dana@example.com",
                      state="awaiting_agent", first_response_due=due, subject_key="",
                      language="en", assignment="", waiting_since=T0, response_due_at=due,
                      response_kind="first_response")
    assert ahead(store, "dana@example.com", "NEW") == QUEUE_CAP
    assert ahead(store, "dana@example.com", "Q0010", DUE - timedelta(minutes=11)) == 94
