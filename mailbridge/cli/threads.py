"""`mailbridge threads`: the open threads, most urgent first, without message bodies.

Public API: `print_threads(store, states, now, out, json_lines)`, `threads_records(...)`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TextIO

from mailbridge.clock import SystemClock
from mailbridge.config import load_config
from mailbridge.store.db import Store
from mailbridge.store.summaries import ThreadSummary, summaries


def _urgency(item: ThreadSummary) -> tuple[int, datetime]:
    if item.next_deadline is None:
        return 1, item.created_at
    return 0, item.next_deadline[1]


def _span(delta: timedelta) -> str:
    minutes = int(abs(delta.total_seconds()) // 60)
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h {minutes % 60} min"
    return f"{minutes // 1440} d {minutes % 1440 // 60} h"


def threads_records(store: Store, *, states: Sequence[str],
                    now: datetime) -> list[dict[str, Any]]:
    items = sorted(summaries(store, states=states), key=_urgency)
    records = []
    for item in items:
        kind, due = item.next_deadline if item.next_deadline else (None, None)
        records.append({
            "thread": item.thread, "state": item.state, "policy": item.policy,
            "priority": item.priority, "agent": item.agent, "assignment": item.assignment,
            "age_seconds": round((now - item.created_at).total_seconds()),
            "next_deadline": due.isoformat() if due else None, "next_deadline_kind": kind,
            "seconds_left": round((due - now).total_seconds()) if due else None,
            "breaches": list(item.breaches), "unverified_agent_mails": item.unverified,
            "bounced": list(item.bounced)})
    return records


def print_threads(store: Store, *, states: Sequence[str], now: datetime, out: TextIO,
                  json_lines: bool) -> None:
    records = threads_records(store, states=states, now=now)
    if json_lines:
        for record in records:
            print(json.dumps(record), file=out)
        return
    if not records:
        print(f"no threads in state {', '.join(states)}", file=out)
        return
    print(f"{'thread':<7} {'state':<17} {'policy':<10} {'agent':<18} {'age':<11} "
          f"{'next deadline':<32} assignment", file=out)
    for r in records:
        deadline = "-"
        if r["next_deadline"] is not None:
            left = timedelta(seconds=r["seconds_left"])
            when = f"in {_span(left)}" if left.total_seconds() >= 0 else \
                f"overdue by {_span(left)}"
            deadline = f"{r['next_deadline_kind'].replace('_', ' ')} {when}"
        age = _span(timedelta(seconds=r["age_seconds"]))
        note = f" ({r['unverified_agent_mails']} unverified staff mail, not counted)" \
            if r["unverified_agent_mails"] else ""
        if r["bounced"]:
            note += f" (our mail bounced: {r['bounced'][-1]})"
        print(f"{r['thread']:<7} {r['state']:<17} {r['policy']:<10} {r['agent'][:18]:<18} "
              f"{age:<11} {deadline:<32} {r['assignment'] or '-'}{note}".rstrip(), file=out)


def command(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = Store.open(config.store.url, migrate=False)
    try:
        states = args.state or ["awaiting_agent", "awaiting_customer"]
        print_threads(store, states=states, now=SystemClock().now(), out=sys.stdout,
                      json_lines=args.json)
    finally:
        store.close()
    return 0
