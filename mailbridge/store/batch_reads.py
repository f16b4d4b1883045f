"""The thread reads of recording a new customer's message, asked once per batch.

Public API: `BatchReads`.

For each new customer, recording asks the store five questions: the customer's recent
threads (subject matching, bursts, the sender cap), the agent of their last thread, the
threads started in the minute before (the flood cap), whether a new reference is taken,
and the place in the agent's queue. On PostgreSQL each was a round trip, five of the
seven per message of a mailbox catching up. `BatchReads` asks each question once for a
batch (`Ingestor.ingest_many`: all its customers, all its flood-cap windows, a handful of
references; each agent's queue counted once, and read up to `QUEUE_CAP` only when shorter
than that) and answers the messages from memory, adding the threads the transaction opens
as `Tx.insert` reports them. So a message sees what it saw before: the rows committed when
its transaction read them, and the threads opened before it in the same transaction.

Anything else that changes threads in the transaction (an agent's reply, a command, the
ORM session) calls `forget`: later questions go to the database again, one by one.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, bindparam, case, func, select

from mailbridge.core.standing import QUEUE_CAP
from mailbridge.core.threads import RecentThread
from mailbridge.store.statements import (
    LAST_AGENT,
    QUEUE_AHEAD,
    RECENT_LIMIT,
    RECENT_THREADS,
    THREADS,
)

Rows = Callable[[Any, dict[str, Any]], list[tuple[Any, ...]]]
"""Runs a prebuilt statement with its named values in the transaction (`Tx._rows`)."""

NEVER = datetime.max.replace(tzinfo=UTC)
AT_ONCE = 64
"""Customers, windows or references asked for in one statement."""

_t = THREADS.c
QUEUE_HEAD = (select(_t.response_due_at, _t.waiting_since)
              .where(_t.state == "awaiting_agent", func.lower(_t.agent_email) == bindparam("agent"),
                     _t.response_due_at.is_not(None))
              .order_by(_t.response_due_at, _t.waiting_since).limit(QUEUE_CAP))
"""The first `QUEUE_CAP` threads awaiting an agent (lower case), in queue order: all a place
in the queue is counted from (`statements.QUEUE_AHEAD` stops there too)."""


@functools.lru_cache(maxsize=AT_ONCE)
def customers_query(count: int) -> Select[Any]:
    """The newest `RECENT_LIMIT` threads of each of `count` customers (c0, c1, ...)."""
    rank = func.row_number().over(partition_by=_t.customer,
                                  order_by=(_t.created_at.desc(), _t.id.desc())).label("rank")
    ranked = (select(_t.customer, _t.id, _t.subject_key, _t.created_at, _t.state, _t.agent_email,
                     rank)
              .where(_t.customer.in_([bindparam(f"c{i}") for i in range(count)])).subquery())
    r = ranked.c
    return (select(r.customer, r.id, r.subject_key, r.created_at, r.state, r.agent_email)
            .where(r.rank <= RECENT_LIMIT))


@functools.lru_cache(maxsize=AT_ONCE)
def started_query(count: int) -> Select[Any]:
    """How many threads started at or after each of `count` moments (s0, s1, ...; `low` is
    the earliest)."""
    return select(*[func.coalesce(func.sum(case((_t.created_at >= bindparam(f"s{i}"), 1),
                                                else_=0)), 0) for i in range(count)]
                  ).where(_t.created_at >= bindparam("low"))


@functools.lru_cache(maxsize=AT_ONCE)
def taken_query(count: int) -> Select[Any]:
    """Which of `count` thread ids (id0, id1, ...) are taken."""
    return select(_t.id).where(_t.id.in_([bindparam(f"id{i}") for i in range(count)]))


def _place(due: datetime, since: datetime | None) -> tuple[datetime, datetime]:
    """A waiting thread's key in its agent's queue: the threads ahead of one due at `due`
    and waiting since `since` are those whose key is at most `(due, since)`, as
    `statements.QUEUE_AHEAD` counts them (one waiting since no time is never ahead of an
    equal deadline)."""
    return due, NEVER if since is None else since


class _Customer:
    """A customer's newest threads, newest first: (thread, agent address)."""

    def __init__(self, threads: list[tuple[RecentThread, str]]) -> None:
        self.threads = threads

    def add(self, thread: RecentThread, agent: str) -> None:
        self.threads.append((thread, agent))
        self.threads.sort(key=lambda pair: pair[0].created_at, reverse=True)
        del self.threads[RECENT_LIMIT:]


class BatchReads:
    """What one transaction read of threads for a batch, kept up to date by its inserts."""

    def __init__(self, rows: Rows) -> None:
        self._rows = rows
        self._customers: dict[str, _Customer] = {}
        self._started: dict[datetime, int] = {}
        self._opened: list[datetime] = []
        """Start of each thread this transaction opened, for `threads_started`."""
        self._queues: dict[str, list[tuple[datetime, datetime]]] = {}
        """Each agent's queue head as read, with the threads this transaction opened for
        them, as sorted `_place` keys."""
        self._full: dict[str, tuple[datetime, datetime]] = {}
        """A place in each agent's queue with `QUEUE_CAP` or more ahead of it: so have all
        behind it (threads are only added), which then need no reading at all."""
        self._free_ids: list[str] = []
        self.batched = False
        """Whether `start_batch` was called (and nothing forgotten since): only then are
        places in the agents' queues answered here (`queue_ahead`)."""
        self._batch_size = 1

    def start_batch(self, customers: Sequence[str], moments: Sequence[datetime]) -> None:
        """A batch of messages begins: read the newest threads of its `customers` (lower
        case) and the threads started since each of `moments` (the flood cap's windows)."""
        self.batched = True
        self._batch_size = max(1, min(len(customers), AT_ONCE))
        self.read_customers(customers)
        self.read_started(moments)

    def forget(self) -> None:
        """Threads changed other than by `thread_opened`: ask the database from now on."""
        self._customers.clear()
        self._started.clear()
        self._queues.clear()
        self._full.clear()
        self.batched = False

    def read_customers(self, customers: Sequence[str]) -> None:
        """Read the newest threads of `customers` at once."""
        unique = [c for c in dict.fromkeys(customers) if c and c not in self._customers]
        for start in range(0, len(unique), AT_ONCE):
            chunk = unique[start:start + AT_ONCE]
            found: dict[str, list[tuple[RecentThread, str]]] = {c: [] for c in chunk}
            for customer, ref, key, created_at, state, agent in self._rows(
                    customers_query(len(chunk)), {f"c{i}": c for i, c in enumerate(chunk)}):
                found[customer].append(
                    (RecentThread(ref, key, created_at, state == "resolved"), str(agent)))
            for customer, threads in found.items():
                threads.sort(key=lambda pair: pair[0].created_at, reverse=True)
                self._customers[customer] = _Customer(threads)

    def recent_threads(self, customer: str, since: datetime) -> list[RecentThread]:
        """The customer's threads started since `since`, newest first (`RECENT_LIMIT`)."""
        known = self._customers.get(customer)
        if known is None:
            return [RecentThread(ref, key, created_at, state == "resolved")
                    for ref, key, created_at, state in self._rows(
                        RECENT_THREADS, {"customer": customer, "since": since})]
        return [thread for thread, _ in known.threads if thread.created_at >= since]

    def last_agent(self, customer: str) -> tuple[str, datetime] | None:
        """(agent address, start) of the customer's latest thread; None for a new customer."""
        known = self._customers.get(customer)
        if known is None:
            rows = self._rows(LAST_AGENT, {"customer": customer})
            return (str(rows[0][0]), rows[0][1]) if rows else None
        if not known.threads:
            return None
        thread, agent = known.threads[0]
        return agent, thread.created_at

    def read_started(self, moments: Sequence[datetime]) -> None:
        """Count the threads started since each of `moments` at once."""
        unique = sorted(m for m in set(moments) if m not in self._started)
        for start in range(0, len(unique), AT_ONCE):
            chunk = unique[start:start + AT_ONCE]
            values: dict[str, Any] = {f"s{i}": m for i, m in enumerate(chunk)}
            (counts,) = self._rows(started_query(len(chunk)), {**values, "low": chunk[0]})
            for moment, count in zip(chunk, counts, strict=True):
                # The count holds the threads opened so far; `threads_started` adds them.
                self._started[moment] = int(count) - sum(o >= moment for o in self._opened)

    def threads_started(self, since: datetime) -> int:
        """How many threads were started (acknowledged) since `since`."""
        if since not in self._started:
            self.read_started([since])
        return self._started[since] + sum(opened >= since for opened in self._opened)

    def queue_ahead(self, agent: str, *, due: datetime, since: datetime,
                    thread_id: str) -> int:
        """How many threads awaiting `agent` (lower case) come before thread `thread_id`,
        due at `due` and waiting since `since`, at most `QUEUE_CAP` (see `Tx.queue_ahead`).

        One indexed count (`QUEUE_AHEAD`), except in a batch (`start_batch`), whose places
        are those of new threads, not yet written: there a queue found shorter than
        `QUEUE_CAP` is read once and its later places counted in memory."""
        place = _place(due, since)
        full = self._full.get(agent)
        if full is not None and place >= full:
            return QUEUE_CAP  # behind a place that already had QUEUE_CAP ahead of it
        head = self._queues.get(agent) if self.batched else None
        if head is None:
            (count,), = self._rows(QUEUE_AHEAD, {"agent": agent, "due": due, "since": since,
                                                 "thread_id": thread_id})
            if count >= QUEUE_CAP:
                self._full[agent] = place
                return QUEUE_CAP
            if not self.batched:
                return int(count)
            head = self._queues[agent] = sorted(
                _place(due, since) for due, since in self._rows(QUEUE_HEAD, {"agent": agent}))
        return min(QUEUE_CAP, bisect.bisect_right(head, place))

    def thread_opened(self, values: dict[str, Any]) -> None:
        """The transaction inserted this thread row."""
        self._opened.append(values["created_at"])
        customer = self._customers.get(values["customer"])
        if customer is not None:
            customer.add(RecentThread(values["id"], values.get("subject_key", ""),
                                      values["created_at"], values.get("state") == "resolved"),
                         str(values.get("agent_email", "")))
        # Kept beside the queue's head as read: if fewer than QUEUE_CAP of its threads come
        # first, none of those behind it does, so the count is exact up to the cap.
        agent = str(values.get("agent_email", "")).lower()
        due = values.get("response_due_at")
        if values.get("state") == "awaiting_agent" and due is not None and agent in self._queues:
            bisect.insort(self._queues[agent], _place(due, values.get("waiting_since")))

    def free_thread_id(self, candidates: Callable[[int], list[str]]) -> str:
        """A thread id no thread has: one checked before in this transaction, else one of
        new `candidates` (as many as the batch has messages), checked at once. Another
        transaction may still take it first: the primary key then refuses the second."""
        while not self._free_ids:
            fresh = list(dict.fromkeys(candidates(self._batch_size)))
            taken = {row[0] for row in self._rows(
                taken_query(len(fresh)), {f"id{i}": ref for i, ref in enumerate(fresh)})}
            self._free_ids = [ref for ref in fresh if ref not in taken]
            self._free_ids.reverse()
        return self._free_ids.pop()
