"""The store's share of one acknowledged message, in process: statements, commits, CPU.

Run: `.venv/bin/python benchmarks/store_path.py [--messages N] [--rounds R]
[--backends sqlite postgresql] [--profile FILE] [--no-record]`

What the daemon does with a backlog, without IMAP and SMTP: N new customers' messages
(parsed beforehand) are recorded by `Ingestor.ingest_many` in transactions of
`MESSAGES_PER_TRANSACTION`, then the outbox is drained the way the sender does it
(`Store.claim_outbox_batch` with the previous batch's outcomes, `CLAIM_BATCH` at a time).
Counted per message: statements sent to the database (SQLite's trace callback sees every
one; on PostgreSQL, a counting psycopg cursor; an executemany is one), commits,
and the process's CPU time (user + system) and wall time. Rounds alternate between the
backends so that the machine's load falls on both alike; the medians are reported.
`--profile FILE` writes a cProfile of the last round of each backend to FILE.<backend>.

PostgreSQL is a scratch database on the machine's server ($MAILBRIDGE_TEST_POSTGRES, see
tests/postgres.py), dropped afterwards. Appends the table, with date, machine and command,
to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import cProfile
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results import append, spread
from mailbridge.clock import FakeClock
from mailbridge.config import load_config
from mailbridge.core.model import InboundMessage
from mailbridge.daemon.ingest import Incoming, Ingestor, Source
from mailbridge.daemon.recording import MESSAGES_PER_TRANSACTION
from mailbridge.daemon.sender import CLAIM_BATCH
from mailbridge.mail.parse import parse_message
from mailbridge.store.db import Store
from mailbridge.store.outbox import Finished
from tests.mails import customer_mail

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday, inside business hours


def _config(directory: Path) -> Path:
    """Close to the backlog benchmark's daemon: two agents, the flood cap lifted."""
    path = directory / "mailbridge.toml"
    path.write_text(f"""
[support]
address = "support@example.com"
aliases = ["help@example.com"]
name = "Example Support"
timezone = "Europe/Berlin"

[[agents]]
name = "Dana Whitfield"
email = "dana@example.com"

[[agents]]
name = "Sam Okafor"
email = "sam@example.com"

[sla]
first_response = "4h"

[rules]
global_cap_per_minute = 1000000

[daemon]
state_dir = "{directory}"
""", encoding="utf-8")
    return path


class Counts:
    """Statements and commits seen on one engine."""

    def __init__(self, store: Store) -> None:
        self.statements = 0
        self.round_trips = 0
        """PostgreSQL: statements and pipelines (SQLite runs in process)."""
        self.pipeline: object = None
        self.commits = 0
        engine = store.engine
        if engine.dialect.name == "sqlite":
            @event.listens_for(engine, "connect")
            def _trace(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.set_trace_callback(self._sqlite_statement)
        else:
            import psycopg  # an optional dependency: only for PostgreSQL

            counts = self

            class CountingCursor(psycopg.Cursor[Any]):
                def execute(self, *args: Any, **kwargs: Any) -> Any:
                    counts.statements += 1
                    # Statements queued in one pipeline share a round trip.
                    pipeline = getattr(self.connection, "_pipeline", None)
                    if pipeline is None or pipeline is not counts.pipeline:
                        counts.round_trips += 1
                    counts.pipeline = pipeline
                    return super().execute(*args, **kwargs)

                def executemany(self, *args: Any, **kwargs: Any) -> None:
                    counts.statements += 1  # psycopg pipelines it: about one round trip
                    counts.round_trips += 1
                    super().executemany(*args, **kwargs)

            @event.listens_for(engine, "connect")
            def _count(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.cursor_factory = CountingCursor

            @event.listens_for(engine, "commit")
            def _commit(_conn: Any) -> None:
                self.commits += 1
        engine.dispose()  # connections made from now on are traced

    def _sqlite_statement(self, sql: str) -> None:
        self.statements += 1
        self.commits += sql.startswith("COMMIT")


@dataclass(frozen=True)
class Round:
    statements: float
    round_trips: float
    commits: float
    cpu_ms: float
    wall_ms: float


def one_round(url: str, workdir: Path, mails: list[InboundMessage],
              profile: cProfile.Profile | None) -> Round:
    store = Store.open(url)
    try:
        counts = Counts(store)
        clock = FakeClock(T0)
        ingestor = Ingestor.create(load_config(_config(workdir)), store, clock)
        items = [Incoming(Source("INBOX", 1, n + 1), mail, T0) for n, mail in enumerate(mails)]
        cpu, wall = time.process_time(), time.perf_counter()
        if profile is not None:
            profile.enable()
        for start in range(0, len(items), MESSAGES_PER_TRANSACTION):
            ingestor.ingest_many(items[start:start + MESSAGES_PER_TRANSACTION], now=T0)
        finished: list[Finished] = []
        sent = 0
        while rows := store.claim_outbox_batch(T0, finished=finished, claimer="bench",
                                               limit=CLAIM_BATCH):
            finished = [Finished(row.id, "sent", T0) for row in rows]
            sent += len(rows)
        if profile is not None:
            profile.disable()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        assert sent == len(mails), f"{sent} acks queued for {len(mails)} new customers"
        n = len(mails)
        return Round(counts.statements / n, counts.round_trips / n, counts.commits / n,
                     cpu / n * 1000, wall / n * 1000)
    finally:
        store.close()


@contextmanager
def database(name: str, workdir: Path, i: int) -> Iterator[str]:
    if name == "sqlite":
        yield f"sqlite:///{workdir}/round{i}.sqlite3"
        return
    from tests.postgres import scratch_database

    with scratch_database() as url:
        yield url


def table(results: dict[str, list[Round]]) -> str:
    lines = ["| backend | rounds | statements per message | round trips per message | "
             "commits per message | CPU per message (median, min–max) | "
             "wall per message (median) |",
             "|---|---|---|---|---|---|---|"]
    for name, rounds in results.items():
        cpu = [r.cpu_ms for r in rounds]
        trips = f"{rounds[0].round_trips:.1f}" if rounds[0].round_trips else "–"
        lines.append(f"| {name} | {len(rounds)} | {rounds[0].statements:.1f} | {trips} | "
                     f"{rounds[0].commits:.2f} | {spread(cpu, '.2f', ' ms')} | "
                     f"{statistics.median(r.wall_ms for r in rounds):.2f} ms |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", nargs="+", choices=["sqlite", "postgresql"],
                        default=["sqlite", "postgresql"])
    parser.add_argument("--profile", type=Path, help="write a cProfile per backend here")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    mails = [parse_message(customer_mail(100000 + n, addr=f"backlog{n}@example.org"))
             for n in range(args.messages)]
    results: dict[str, list[Round]] = {name: [] for name in args.backends}
    with tempfile.TemporaryDirectory(prefix="mb-store-path-") as tmp:
        for i in range(args.rounds):
            for name in args.backends:
                profile = cProfile.Profile() if args.profile and i == args.rounds - 1 else None
                with ExitStack() as stack:
                    url = stack.enter_context(database(name, Path(tmp), i))
                    result = one_round(url, Path(tmp), mails, profile)
                results[name].append(result)
                print(f"{name} round {i + 1}: {result.statements:.1f} statements "
                      f"({result.round_trips:.1f} round trips), "
                      f"{result.commits:.2f} commits, {result.cpu_ms:.2f} ms CPU, "
                      f"{result.wall_ms:.2f} ms wall per message", flush=True)
                if profile is not None:
                    profile.dump_stats(f"{args.profile}.{name}")
    text = table(results)
    print("\n" + text)
    if not args.no_record:
        command = (f"python benchmarks/store_path.py --messages {args.messages} "
                   f"--rounds {args.rounds} --backends {' '.join(args.backends)}")
        append("store_path", command, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
