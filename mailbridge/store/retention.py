"""Retention: deleting what the store no longer needs once `[store] retention` has passed.

Public API: `Pruned`, `prune_resolved(store, cutoff, limit)`,
`prune_unthreaded(store, cutoff, limit)`, `prune_step(store, cutoff, limit)`.

A resolved thread whose resolution (`threads.resolved_at`) is older than the cutoff goes
whole: its messages, history, outbox rows (acknowledgement and status update bodies) and
known Message-IDs, then the thread itself. Its anonymous timings go with it: the gauges
count open threads only, and the counters and histograms live in Prometheus, so nothing
needs a summary row. Mail that no thread took (auto-replies, bounces, ignored mail) and
outbox rows of no thread (relayed mail, command errors) go once they are older than the
cutoff.

Each step is one short transaction over at most `limit` threads or rows, so the daemon's
writers wait for it only briefly (SQLite has one writer at a time); the caller repeats
steps until one finds nothing. The cutoff is passed in: nothing here reads a clock. On
PostgreSQL two instances may prune at once: a step claims its threads with `FOR UPDATE
SKIP LOCKED`, and a row the other deleted first is simply not counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, select

from mailbridge.store.db import Store
from mailbridge.store.statements import KNOWN_IDS, MESSAGES, OUTBOX, THREADS
from mailbridge.store.tables import ThreadEvent, table_of

EVENTS = table_of(ThreadEvent)
UNSENT = ("pending", "sending")
"""Outbox states whose row the sender still needs: never pruned."""


@dataclass(frozen=True)
class Pruned:
    """How many rows of each kind a step (or a run of steps) deleted."""

    threads: int = 0
    messages: int = 0
    events: int = 0
    outbox: int = 0
    known_ids: int = 0

    def __add__(self, other: Pruned) -> Pruned:
        return Pruned(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))


def _deleted(conn: Connection, statement: Any) -> int:
    return int(conn.execute(statement).rowcount or 0)


def _expired_threads(cutoff: datetime, limit: int) -> Any:
    """Resolved before `cutoff`, with nothing left to send, oldest first, claimed."""
    t, o = THREADS.c, OUTBOX.c
    unsent = exists().where(o.thread_id == t.id, o.state.in_(UNSENT))
    return (select(t.id).where(t.state == "resolved", t.resolved_at < cutoff, ~unsent)
            .order_by(t.resolved_at).limit(limit).with_for_update(skip_locked=True))


def prune_resolved(store: Store, cutoff: datetime, limit: int = 50) -> Pruned:
    """Delete up to `limit` threads resolved before `cutoff`, with all they hold."""
    with store.transaction() as tx:
        conn = tx.session.connection()
        ids = list(conn.execute(_expired_threads(cutoff, limit)).scalars())
        if not ids:
            return Pruned()
        return Pruned(
            messages=_deleted(conn, delete(MESSAGES).where(MESSAGES.c.thread_id.in_(ids))),
            events=_deleted(conn, delete(EVENTS).where(EVENTS.c.thread_id.in_(ids))),
            outbox=_deleted(conn, delete(OUTBOX).where(OUTBOX.c.thread_id.in_(ids))),
            known_ids=_deleted(conn, delete(KNOWN_IDS).where(KNOWN_IDS.c.thread_id.in_(ids))),
            threads=_deleted(conn, delete(THREADS).where(THREADS.c.id.in_(ids))))


def prune_unthreaded(store: Store, cutoff: datetime, limit: int = 500) -> Pruned:
    """Delete up to `limit` messages of no thread that arrived before `cutoff`, and up to
    `limit` finished outbox rows of no thread created before it.

    They are found in a read-only transaction, which on SQLite blocks no writer however
    many young rows it reads past, and deleted by id in a short write transaction.
    """
    m, o = MESSAGES.c, OUTBOX.c
    with store.reading() as conn:
        messages = list(conn.execute(
            select(m.id).where(m.thread_id.is_(None), m.received_at < cutoff)
            .order_by(m.id).limit(limit)).scalars())
        outbox = list(conn.execute(
            select(o.id).where(o.thread_id == "", o.state.not_in(UNSENT), o.created_at < cutoff)
            .order_by(o.id).limit(limit)).scalars())
    if not messages and not outbox:
        return Pruned()
    with store.transaction() as tx:
        conn = tx.session.connection()
        return Pruned(
            messages=_deleted(conn, delete(MESSAGES).where(
                m.id.in_(messages), m.thread_id.is_(None))) if messages else 0,
            outbox=_deleted(conn, delete(OUTBOX).where(
                and_(o.id.in_(outbox), o.state.not_in(UNSENT)))) if outbox else 0)


def prune_step(store: Store, cutoff: datetime, limit: int = 50) -> Pruned:
    """One step of a pruning run: expired threads first, then mail of no thread; an empty
    `Pruned` when nothing older than `cutoff` is left."""
    return prune_resolved(store, cutoff, limit) or prune_unthreaded(store, cutoff, limit * 5)
