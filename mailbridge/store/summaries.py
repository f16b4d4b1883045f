"""What the store says about threads, for people: `replay`'s SLA lines and `threads`.

Public API: `ThreadSummary`, `summaries(store, now)`, `attainment(summaries)`,
`thread_record(summary)`, `policy_records(summaries)`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, select

from mailbridge.core import sla
from mailbridge.store.codec import load_clock
from mailbridge.store.db import Store
from mailbridge.store.tables import Thread, ThreadEvent


@dataclass(frozen=True)
class ThreadSummary:
    thread: str
    state: str
    policy: str
    priority: str
    agent: str
    created_at: datetime
    first_response_due: datetime
    first_response_seconds: float | None
    first_response_business_seconds: float | None
    first_response_met: bool | None
    breaches: tuple[str, ...]
    next_deadline: tuple[str, datetime] | None
    """The pending deadline (kind, due) while the thread awaits an agent."""
    assignment: str = ""
    """Why the thread has its agent (its assignment or latest hand-over)."""
    unverified: int = 0
    """Mails from a staff address in it that were not authenticated and did not count."""
    bounced: tuple[str, ...] = ()
    """What each bounce or complaint about our mail to the customer said (`ack_bounced`
    events, oldest first): their address may be broken."""


def _next_deadline(thread: Thread) -> tuple[str, datetime] | None:
    if not thread.clock:
        return None
    clock = load_clock(thread.clock)
    response = clock.response_due
    if response is not None:
        return response
    if clock.state == sla.AWAITING_AGENT and clock.resolution_due is not None:
        return "resolution", clock.resolution_due
    return None


def summaries(store: Store, *, states: Iterable[str] | None = None) -> list[ThreadSummary]:
    """Every thread (or those in `states`), with its breaches, oldest first."""
    with store.transaction() as tx:
        query = select(Thread).order_by(col(Thread.created_at))
        if states is not None:
            query = query.where(col(Thread.state).in_(list(states)))
        rows = list(tx.session.exec(query).all())
        breaches: dict[str, list[str]] = defaultdict(list)
        unverified: dict[str, int] = defaultdict(int)
        bounced: dict[str, list[str]] = defaultdict(list)
        for event in tx.session.exec(
                select(ThreadEvent).where(col(ThreadEvent.kind).in_(
                    ["breach", "unverified_agent", "ack_bounced"]))
                .order_by(col(ThreadEvent.id))):
            if event.kind == "breach":
                breaches[event.thread_id].append(event.detail.split(" ", 1)[0])
            elif event.kind == "ack_bounced":
                bounced[event.thread_id].append(event.detail)
            else:
                unverified[event.thread_id] += 1
    return [ThreadSummary(
        thread=t.id, state=t.state, policy=t.policy, priority=t.priority, agent=t.agent_name,
        created_at=t.created_at, first_response_due=t.first_response_due,
        first_response_seconds=t.first_response_seconds,
        first_response_business_seconds=t.first_response_business_seconds,
        first_response_met=t.first_response_met, breaches=tuple(breaches[t.id]),
        next_deadline=_next_deadline(t), assignment=t.assignment,
        unverified=unverified[t.id], bounced=tuple(bounced[t.id])) for t in rows]


def thread_record(s: ThreadSummary) -> dict[str, Any]:
    """The `replay --json` line of one thread."""
    return {"type": "thread", "thread": s.thread, "policy": s.policy, "priority": s.priority,
            "agent": s.agent, "assignment": s.assignment, "state": s.state,
            "first_response_seconds": s.first_response_seconds,
            "first_response_business_seconds": s.first_response_business_seconds,
            "first_response_due": s.first_response_due.isoformat(),
            "first_response_met": s.first_response_met, "breaches": list(s.breaches)}


def policy_records(items: Sequence[ThreadSummary]) -> list[dict[str, Any]]:
    """Per policy: threads, answered, met, breached, and first-response attainment.

    Attainment counts a clock once its outcome is known: met, answered late, or
    still unanswered past its deadline; threads still within their deadline do
    not count yet.
    """
    by_policy: dict[str, list[ThreadSummary]] = defaultdict(list)
    for item in items:
        by_policy[item.policy].append(item)
    records = []
    for policy, threads in sorted(by_policy.items()):
        met = sum(1 for t in threads if t.first_response_met is True)
        missed = sum(1 for t in threads if t.first_response_met is False
                     or (t.first_response_met is None and "first_response" in t.breaches))
        records.append({
            "type": "policy", "policy": policy, "threads": len(threads),
            "answered": sum(1 for t in threads if t.first_response_met is not None),
            "first_response_met": met, "first_response_missed": missed,
            "attainment": round(met / (met + missed), 4) if met + missed else None})
    return records
