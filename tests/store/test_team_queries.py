"""The store's answers for assignment, on SQLite and PostgreSQL: a customer's last agent,
open threads per agent, and waking the threads of agents who are away."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from mailbridge.store.db import Store
from mailbridge.store.tables import Thread

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def add(store: Store, thread_id: str, customer: str, agent: str, state: str,
        at: datetime, next_due: datetime | None = None) -> None:
    with store.transaction() as tx:
        tx.insert(Thread, id=thread_id, created_at=at, customer=customer, subject="",
                  agent_name=agent.split("@", maxsplit=1)[0], agent_email=agent, state=state,
                  first_response_due=at + timedelta(hours=4), subject_key="",
                  next_due_at=next_due, language="en", assignment="")


def test_last_agent_and_open_counts(store: Store) -> None:
    """The latest thread's agent wins; open counts ignore resolved threads and case."""
    add(store, "A1", "ana@example.org", "dana@example.com", "resolved", T0)
    add(store, "A2", "ana@example.org", "Sam@Example.com", "awaiting_customer",
        T0 + timedelta(days=1))
    add(store, "B1", "bo@example.org", "sam@example.com", "awaiting_agent", T0)
    add(store, "C1", "cy@example.org", "dana@example.com", "resolved", T0)
    with store.transaction() as tx:
        assert tx.last_agent("ana@example.org") == ("Sam@Example.com", T0 + timedelta(days=1))
        assert tx.last_agent("nobody@example.org") is None
        assert tx.open_counts() == {"sam@example.com": 2}


def test_recheck_wakes_only_the_waiting_threads_of_agents_away(store: Store) -> None:
    """Threads awaiting an away agent become due now; others keep their time."""
    later = T0 + timedelta(hours=3)
    add(store, "A1", "a@example.org", "dana@example.com", "awaiting_agent", T0, later)
    add(store, "A2", "b@example.org", "Sam@example.com", "awaiting_agent", T0, later)
    add(store, "A3", "c@example.org", "dana@example.com", "awaiting_customer", T0, later)
    add(store, "A4", "d@example.org", "dana@example.com", "awaiting_agent", T0,
        T0 - timedelta(minutes=5))
    with store.transaction() as tx:
        assert tx.recheck_agents(["sam@example.com"], T0) == 1
        due = {t.id: t.next_due_at for t in tx.due_threads(T0, 10)}
    assert due == {"A1": T0, "A4": T0 - timedelta(minutes=5)}
    with store.transaction() as tx:
        assert tx.recheck_agents([], T0) == 1  # A2 now too
