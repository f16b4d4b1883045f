"""The scheduler at scale: its next-due query and one deadline firing, 1,000 vs 1,000,000 threads.

Run: `.venv/bin/python benchmarks/scale.py [--sizes 1000 1000000] [--backends sqlite postgresql]`

For each backend and size, one real thread is opened through the ingest path and then
cloned in bulk inside the database (a recursive CTE on SQLite, generate_series on
PostgreSQL): one thread in ten is open, with a deadline in the future; the rest are
resolved. Then:

- next due: `Store.next_due_time()`, the MIN over `threads.next_due_at` the scheduler
  sleeps on (median of 300 calls, each its own transaction);
- firing: `Deadlines.run_due(now)` with exactly one thread due (the real one, past its
  first-response deadline): claim it (FOR UPDATE SKIP LOCKED), tick its clock, record
  the breach, render and queue the escalation, commit (median of 30; the thread is put
  back between runs, untimed).

Both must cost the same at both sizes: the index, not a scan. The query plans are
printed too. Appends the figures, with date, machine and command, to
benchmarks/RESULTS.md. PostgreSQL is a scratch database on the machine's server
($MAILBRIDGE_TEST_POSTGRES, see tests/postgres.py), dropped afterwards.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, text, update

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results import append
from mailbridge.clock import FakeClock
from mailbridge.config import load_config
from mailbridge.daemon.ingest import Ingestor, Source
from mailbridge.mail.parse import parse_message
from mailbridge.store.db import Store
from mailbridge.store.statements import OUTBOX, THREADS
from mailbridge.store.tables import ThreadEvent
from tests.configs import MINIMAL
from tests.mails import customer_mail

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday
LATE = T0 + timedelta(hours=5)  # past the real thread's 4 h first-response deadline
FUTURE = T0 + timedelta(days=30)  # the clones' deadlines: never due at LATE
OPEN_ONLY = ("next_due_at", "waiting_since", "response_due_at", "response_kind",
             "resolution_due_at")


def _config(directory: Path) -> Path:
    path = directory / "mailbridge.toml"
    path.write_text(f"""
{MINIMAL}[sla]
first_response = "4h"
escalate_to = "lead@example.com"
[daemon]
state_dir = "{directory}"
""", encoding="utf-8")
    return path


def _clone_sql(dialect: str, columns: list[str]) -> str:
    """INSERT ... SELECT that clones the template thread :count times, one in ten open."""
    if dialect == "sqlite":
        ident = "printf('S%07d', n.i)"
        customer = "'c' || n.i || '@example.org'"
        future = ("strftime('%Y-%m-%d %H:%M:%S', :future + n.i, 'unixepoch') || '.000000'")
        series = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
                  "WHERE i < :count) ")
        source = "FROM n, threads t WHERE t.id = :template"
    else:
        ident = "'S' || lpad(n.i::text, 7, '0')"
        customer = "'c' || n.i || '@example.org'"
        future = "to_timestamp(:future + n.i)"
        series = ""
        source = "FROM generate_series(1, :count) AS n(i), threads t WHERE t.id = :template"
    values = []
    for column in columns:
        if column == "id":
            values.append(ident)
        elif column == "customer":
            values.append(customer)
        elif column == "state":
            values.append("CASE WHEN n.i % 10 = 0 THEN t.state ELSE 'resolved' END")
        elif column == "next_due_at":
            values.append(f"CASE WHEN n.i % 10 = 0 THEN {future} ELSE NULL END")
        elif column in OPEN_ONLY:
            values.append(f"CASE WHEN n.i % 10 = 0 THEN t.{column} ELSE NULL END")
        else:
            values.append(f"t.{column}")
    names = ", ".join(columns)
    if dialect == "sqlite":
        return f"{series}INSERT INTO threads ({names}) SELECT {', '.join(values)} {source}"
    return f"INSERT INTO threads ({names}) SELECT {', '.join(values)} {source}"


def _median_us(run: Callable[[], object], repeat: int,
               before: Callable[[], object] | None = None) -> float:
    samples = []
    for _ in range(repeat):
        if before is not None:
            before()
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1e6


def _plan(store: Store, sql: str, params: dict[str, object]) -> str:
    prefix = "EXPLAIN QUERY PLAN " if store.engine.dialect.name == "sqlite" else "EXPLAIN "
    with store.engine.connect() as conn:
        rows = conn.execute(text(prefix + sql), params).all()
    return " / ".join(str(row[-1]).strip() for row in rows)


def measure(url: str, size: int, workdir: Path) -> dict[str, object]:
    store = Store.open(url)
    try:
        config = load_config(_config(workdir))
        ingestor = Ingestor.create(config, store, FakeClock(T0))
        real = ingestor.ingest(parse_message(customer_mail(1, addr="ana@example.org")),
                               Source("INBOX", 1, 1), received=T0, now=T0)
        assert real.thread is not None
        columns = [c.name for c in THREADS.columns]
        started = time.perf_counter()
        with store.engine.begin() as conn:
            conn.execute(text(_clone_sql(store.engine.dialect.name, columns)),
                         {"count": size - 1, "template": real.thread,
                          "future": int(FUTURE.timestamp())})
            if store.engine.dialect.name == "postgresql":
                conn.execute(text("ANALYZE threads"))
            else:
                conn.execute(text("ANALYZE"))
        load_s = time.perf_counter() - started
        with store.transaction() as tx:
            template = tx.thread(real.thread)
            assert template is not None
            saved = {name: getattr(template, name) for name in
                     ("state", "clock", "next_due_at", *OPEN_ONLY[1:])}

        def put_back() -> None:
            with store.engine.begin() as conn:
                conn.execute(update(THREADS).where(THREADS.c.id == real.thread).values(**saved))
                conn.execute(delete(OUTBOX).where(OUTBOX.c.thread_id == real.thread,
                                                  OUTBOX.c.kind != "ack"))
                events = ThreadEvent.__table__  # type: ignore[attr-defined]
                conn.execute(delete(events).where(events.c.thread_id == real.thread,
                                                  events.c.kind != "opened"))

        deadlines = ingestor.deadlines
        fired: list[int] = []
        next_due = _median_us(store.next_due_time, 300)
        firing = _median_us(lambda: fired.append(deadlines.run_due(LATE)), 30, before=put_back)
        assert set(fired) == {1}, f"exactly the one real thread fires each time: {fired}"
        plan_next = _plan(store, "SELECT min(next_due_at) FROM threads", {})
        plan_due = _plan(store, "SELECT id FROM threads WHERE next_due_at <= :now "
                                "ORDER BY next_due_at LIMIT 50", {"now": LATE})
        with store.engine.connect() as conn:
            total = conn.execute(text("SELECT count(*) FROM threads")).scalar_one()
            open_ = conn.execute(text("SELECT count(*) FROM threads "
                                      "WHERE next_due_at IS NOT NULL")).scalar_one()
        return {"size": total, "open": open_, "load_s": load_s, "next_due_us": next_due,
                "firing_us": firing, "plan_next": plan_next, "plan_due": plan_due}
    finally:
        store.close()


@contextmanager
def backend(name: str, workdir: Path, size: int) -> Iterator[str]:
    if name == "sqlite":
        yield f"sqlite:///{workdir}/scale-{size}.sqlite3"
        return
    from tests.postgres import scratch_database

    with scratch_database() as url:
        yield url


def record(rows: list[tuple[str, dict[str, object]]], command: str) -> str:
    lines = ["One thread in ten open (deadline in the future), the rest resolved; the "
             "next-due query is `Store.next_due_time()` (median of 300), the firing is "
             "`Deadlines.run_due(now)` with one thread due: claim, tick, breach, escalation "
             "rendered and queued, commit (median of 30).\n",
             "| backend | threads | open | bulk load | next-due query | one deadline firing |",
             "|---|---|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['size']:,} | {r['open']:,} | {r['load_s']:.1f} s | "
                     f"{r['next_due_us']:.0f} µs | {r['firing_us'] / 1000:.1f} ms |")
    lines.append("")
    lines.append("Query plans at the largest size:\n")
    largest: dict[str, dict[str, object]] = {}
    for name, r in rows:
        largest[name] = r
    for name, r in largest.items():
        lines.append(f"- {name}, `SELECT min(next_due_at)`: {r['plan_next']}")
        lines.append(f"- {name}, due threads (`next_due_at <= now ORDER BY ... LIMIT 50`): "
                     f"{r['plan_due']}")
    return append("scale", command, "\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 1_000_000])
    parser.add_argument("--backends", nargs="+", choices=["sqlite", "postgresql"],
                        default=["sqlite", "postgresql"])
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    logging.getLogger("mailbridge").setLevel(logging.ERROR)  # one breach log line per firing
    rows = []
    with tempfile.TemporaryDirectory(prefix="mb-scale-") as tmp:
        for name in args.backends:
            for size in args.sizes:
                workdir = Path(tmp) / f"{name}-{size}"
                workdir.mkdir()
                with backend(name, workdir, size) as url:
                    result = measure(url, size, workdir)
                rows.append((name, result))
                print(f"{name:10} {size:>9,} threads: next due {result['next_due_us']:.0f} µs, "
                      f"firing {float(str(result['firing_us'])) / 1000:.1f} ms "
                      f"(load {float(str(result['load_s'])):.1f} s)", flush=True)
    command = "python benchmarks/scale.py --sizes " + " ".join(map(str, args.sizes)) + \
        " --backends " + " ".join(args.backends)
    if args.no_record:
        return 0
    print(record(rows, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
