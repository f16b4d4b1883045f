"""What migration 14 (messages and cursors name their IMAP account) costs an upgraded desk.

Run: `.venv/bin/python benchmarks/upgrade_accounts.py [--messages N] [--rounds R]
[--backends sqlite postgresql] [--no-record]`

A store at schema version 13 holding N recorded messages of one mailbox and its cursor is
brought to the latest version (`migrate`: the desk's first `run` after the upgrade, during
which the store is locked), then the account's watcher adopts the rows as it opens the folder
(`Store.adopt_unnamed`, once), and opens it again (what every later session start costs:
nothing left to adopt). Wall times; rounds alternate between the backends, medians
reported. PostgreSQL is a scratch database on the machine's server
($MAILBRIDGE_TEST_POSTGRES, see tests/postgres.py), dropped afterwards. Appends the table,
with date, machine and command, to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results import append
from benchmarks.store_path import database
from mailbridge.store.db import Store
from mailbridge.store.engine import engine_for
from mailbridge.store.migrations import migrate

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ACCOUNT = "support@example.com@imap.example.com:993"
VALIDITY = 1_700_000_000
CHUNK = 10_000


def _at_version_13(url: str, messages: int) -> None:
    """A store as version 13 left it: `messages` recorded from one INBOX, and its cursor."""
    engine = engine_for(url)
    assert migrate(engine, target=13) == 13
    insert = text(
        "INSERT INTO messages (source, mailbox, uidvalidity, uid, message_id, sender, subject, "
        "received_at, recorded_at, size, thread_id, action, rule, reason, defects, excerpt) "
        "VALUES (:source, 'INBOX', :validity, :uid, :mid, 'a@example.org', 'Help', :at, :at, "
        "2048, NULL, 'ignore', 'robot_sender', 'a robot', '', '')")
    at = T0.replace(tzinfo=None) if url.startswith("sqlite") else T0
    for start in range(1, messages + 1, CHUNK):
        with engine.begin() as conn:
            conn.execute(insert, [{"source": f"INBOX/{VALIDITY}:{uid}", "validity": VALIDITY,
                                   "uid": uid, "mid": f"<{uid}@example.org>", "at": at}
                                  for uid in range(start, min(start + CHUNK, messages + 1))])
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO cursors VALUES ('INBOX', :v, :u, :at)"),
                     {"v": VALIDITY, "u": messages, "at": at})
    engine.dispose()


def one_round(url: str, messages: int) -> tuple[float, float, float]:
    """(migrate, first adoption, a later session's adoption) in seconds."""
    _at_version_13(url, messages)
    engine = engine_for(url)
    started = time.perf_counter()
    migrate(engine)
    migrated = time.perf_counter() - started
    engine.dispose()
    store = Store.open(url)
    try:
        started = time.perf_counter()
        assert store.adopt_unnamed(ACCOUNT, "INBOX", VALIDITY) == messages
        adopted = time.perf_counter() - started
        started = time.perf_counter()
        assert store.adopt_unnamed(ACCOUNT, "INBOX", VALIDITY) == 0
        again = time.perf_counter() - started
        assert store.cursor(ACCOUNT, "INBOX") == (VALIDITY, messages)
    finally:
        store.close()
    return migrated, adopted, again


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backends", nargs="+", choices=["sqlite", "postgresql"],
                        default=["sqlite", "postgresql"])
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float, float]]] = {b: [] for b in args.backends}
    with tempfile.TemporaryDirectory(prefix="mb-upgrade-") as tmp:
        for i in range(args.rounds):
            for name in args.backends:
                with database(name, Path(tmp), i) as url:
                    result = one_round(url, args.messages)
                results[name].append(result)
                print(f"{name} round {i + 1}: migrate {result[0]:.2f} s, adopt "
                      f"{result[1]:.2f} s, adopt again {result[2] * 1000:.1f} ms", flush=True)
    lines = [f"{args.messages} recorded messages of one INBOX, medians of {args.rounds} rounds:",
             "", "| backend | migrate 13 -> 14 | first adoption | later session start |",
             "|---|---|---|---|"]
    for name, rounds in results.items():
        migrated, adopted, again = (statistics.median(r[k] for r in rounds) for k in range(3))
        lines.append(f"| {name} | {migrated:.2f} s | {adopted:.2f} s | {again * 1000:.1f} ms |")
    body = "\n".join(lines) + "\n"
    print("\n" + body)
    if not args.no_record:
        command = (f"python benchmarks/upgrade_accounts.py --messages {args.messages} "
                   f"--rounds {args.rounds} --backends {' '.join(args.backends)}")
        append("upgrade_accounts", command, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
