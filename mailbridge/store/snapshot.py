"""The store's state as the metrics scrape sees it: two aggregate queries, read-only.

Public API: `OpenGroup`, `Snapshot`, `read_snapshot(store, now, horizon) -> Snapshot`,
`threads_query(now, horizon)` (the statement itself, for its query plan).

Open threads are counted in one pass over the covering index `ix_threads_open_sla`
(migration 4), grouped by state, policy and pending response kind; the outbox in one
pass over its pending items. Both run in one read-only transaction (`Store.reading`),
which on SQLite takes a WAL snapshot and never waits for, or blocks, a writer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, case, func, select

from mailbridge.store.db import Store
from mailbridge.store.statements import OPEN_STATES, OUTBOX, THREADS


@dataclass(frozen=True)
class OpenGroup:
    """Open threads of one state, policy and pending response kind."""

    state: str
    policy: str
    response_kind: str | None
    threads: int
    response_overdue: int
    response_at_risk: int
    resolution_overdue: int
    resolution_at_risk: int
    oldest_waiting: datetime | None
    """Arrival of the oldest customer message still awaiting an answer in this group."""


@dataclass(frozen=True)
class Snapshot:
    groups: tuple[OpenGroup, ...]
    outbox_depth: int
    """Outbox items waiting to be sent or being sent."""
    outbox_oldest: datetime | None


def _within(column: Any, start: datetime, end: datetime | None = None) -> Any:
    """1 when start < column (<= end), else 0; NULL counts as 0."""
    condition = column <= start if end is None else (column > start) & (column <= end)
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _group(row: Any) -> OpenGroup:
    state, policy, kind, count, r_over, r_risk, s_over, s_risk, oldest = row
    return OpenGroup(state, policy, kind, int(count), int(r_over), int(r_risk), int(s_over),
                     int(s_risk), oldest)


def threads_query(now: datetime, horizon: timedelta) -> Select[Any]:
    """Open threads grouped by state, policy and response kind, with their deadline counts."""
    t = THREADS.c
    soon = now + horizon
    return (
        select(t.state, t.policy, t.response_kind, func.count(),
               _within(t.response_due_at, now), _within(t.response_due_at, now, soon),
               _within(t.resolution_due_at, now), _within(t.resolution_due_at, now, soon),
               func.min(t.waiting_since))
        .where(t.state.in_(OPEN_STATES))
        .group_by(t.state, t.policy, t.response_kind))


def read_snapshot(store: Store, now: datetime, horizon: timedelta) -> Snapshot:
    """Open threads (overdue at `now`, at risk within `horizon`) and the outbox backlog."""
    o = OUTBOX.c
    outbox = (select(func.count(), func.min(o.created_at))
              .where(o.state.in_(["pending", "sending"])))
    with store.reading() as conn:
        groups = tuple(_group(row) for row in conn.execute(threads_query(now, horizon)))
        depth, oldest = conn.execute(outbox).one()
    return Snapshot(groups, int(depth), oldest)
