"""The queue position the acknowledgement quotes: `Tx.queue_ahead` with 1,000 vs 100,000
threads waiting for one agent.

Run: `.venv/bin/python benchmarks/queue_position.py [--sizes 1000 100000]
[--backends sqlite postgresql]`

For each backend and size, `size` threads await one agent (the worst case: the whole desk's
backlog in one queue), with deadlines a minute apart, beside as many threads of other agents
and resolved ones. Timed: `Tx.queue_ahead` for a new thread due after all of them (every
waiting thread is ahead: the longest range the count reads) and for one due before them
(nothing ahead), each the median of 200 calls in one transaction. The count reads the
index range ix_threads_agent_queue (state, lower(agent_email), response_due_at) up to the
deadline and stops at `core.standing.QUEUE_CAP`, so it costs the same at both sizes: no
more than the cap's worth of index entries, whatever the backlog; the plans are printed.
Appends the figures, with date, machine and command, to benchmarks/RESULTS.md. PostgreSQL is
a scratch database on the machine's server ($MAILBRIDGE_TEST_POSTGRES, see tests/postgres.py),
dropped afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results import append
from benchmarks.scale import backend
from mailbridge.core.standing import QUEUE_CAP
from mailbridge.store.db import Store
from mailbridge.store.statements import QUEUE_AHEAD, THREADS

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
AGENT = "dana@example.com"
CHUNK = 5000


def _fill(store: Store, size: int) -> None:
    """`size` threads awaiting AGENT, `size` awaiting others, `size` resolved."""
    kinds = (("w", AGENT, "awaiting_agent"), ("o", "sam@example.com", "awaiting_agent"),
             ("r", AGENT, "resolved"))
    for prefix, agent, state in kinds:
        for start in range(0, size, CHUNK):
            rows = []
            for n in range(start, min(size, start + CHUNK)):
                due = T0 + timedelta(minutes=n)
                waiting = state == "awaiting_agent"
                rows.append({
                    "id": f"{prefix}{n:07d}", "created_at": T0, "customer": f"c{n}@example.org",
                    "subject": "", "agent_name": agent, "agent_email": agent, "state": state,
                    "first_response_due": due, "subject_key": "", "policy": "default",
                    "priority": "normal", "clock": "", "language": "en", "assignment": "",
                    "customer_name": "", "waiting_since": T0 if waiting else None,
                    "response_due_at": due if waiting else None,
                    "response_kind": "first_response" if waiting else None})
            with store.transaction() as tx:
                tx.session.connection().execute(THREADS.insert(), rows)


def _median_us(store: Store, due: datetime, repeat: int = 200) -> tuple[float, int]:
    with store.transaction() as tx:
        found = tx.queue_ahead(AGENT, due=due, since=T0, thread_id="NEW")
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            tx.queue_ahead(AGENT, due=due, since=T0, thread_id="NEW")
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6, found


def _plan(store: Store) -> str:
    with store.transaction() as tx:
        conn = tx.session.connection()
        sql = str(QUEUE_AHEAD.compile(dialect=conn.dialect))
        if conn.dialect.name == "sqlite":
            day = "2026-12-01 00:00:00"
            rows = conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + sql,
                ("awaiting_agent", AGENT, day, day, day, day, "NEW", QUEUE_CAP, 0))
            return " ".join(str(row[-1]) for row in rows)
        conn.execute(text("ANALYZE threads"))
        rows = conn.exec_driver_sql(
            "EXPLAIN " + sql, {"state_1": "awaiting_agent", "agent": AGENT, "due": T0,
                               "since": T0, "thread_id": "NEW", "param_1": QUEUE_CAP})
        return " / ".join(str(row[0]).strip() for row in rows)


def measure(url: str, size: int) -> dict[str, object]:
    store = Store.open(url)
    try:
        _fill(store, size)
        last = T0 + timedelta(minutes=size + 1)
        all_us, ahead = _median_us(store, last)
        none_us, zero = _median_us(store, T0 - timedelta(minutes=1))
        assert (ahead, zero) == (min(size, QUEUE_CAP), 0), (ahead, zero)
        return {"all_us": all_us, "none_us": none_us, "plan": _plan(store)}
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument("--backends", nargs="+", choices=["sqlite", "postgresql"],
                        default=["sqlite", "postgresql"])
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    lines = ["| backend | threads waiting for the agent | all ahead (µs) | none ahead (µs) |",
             "|---|---:|---:|---:|"]
    plans = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.backends:
            for size in args.sizes:
                with backend(name, Path(tmp), size) as url:
                    found = measure(url, size)
                lines.append(f"| {name} | {size:,} | {found['all_us']:.0f} | "
                             f"{found['none_us']:.0f} |")
                plans.append(f"- {name}, {size:,}: {found['plan']}")
    body = "\n".join([*lines, "", "Plans:", *plans]) + "\n"
    print(body)
    if not args.no_record:
        command = "python benchmarks/queue_position.py " + " ".join(sys.argv[1:])
        append("Queue position (Tx.queue_ahead)", command.strip(), body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
