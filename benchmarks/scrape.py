"""How long a /metrics scrape takes with 100,000 open threads in a SQLite store.

Run: `.venv/bin/python benchmarks/scrape.py [--open N] [--resolved M] [--scrapes K]`

Fills a SQLite store with N open threads (three policies, both open states, deadlines
spread from overdue to days ahead) and M resolved ones, with fast bulk inserts, then
starts the real daemon (`mailbridge run`, watching an empty Dovecot mailbox) on it and
times K sequential GET /metrics from a client, after a warm-up. The scrape includes the
store query (`mailbridge.store.snapshot`, one pass over the covering index of migration
4) and the text exposition. Prints the figures and appends them, with date and machine,
to benchmarks/RESULTS.md. Target (issue 6): well under 100 ms.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from benchmarks.results import append
from mailbridge.store.db import Store
from mailbridge.store.snapshot import read_snapshot
from mailbridge.store.statements import OUTBOX, THREADS
from tests.configs import MINIMAL
from tests.daemon import Daemon
from tests.servers import Dovecot, SmtpPeer, free_port

POLICIES = {"default": ("normal", timedelta(hours=4)), "vip": ("high", timedelta(hours=1)),
            "bulk": ("low", timedelta(days=1))}


def write_config(directory: Path, dovecot: Dovecot, smtp: SmtpPeer) -> Path:
    path = directory / "mailbridge.toml"
    path.write_text(f"""
{MINIMAL}
[sla]
first_response = "4h"
at_risk_horizon = "1h"

[[policies]]
name = "vip"
priority = "high"
first_response = "1h"
next_response = "2h"
resolution = "1d"
[policies.match]
senders = ["*@vip.example"]

[[policies]]
name = "bulk"
priority = "low"
first_response = "1d"
[policies.match]
keywords = ["newsletter"]

[imap]
host = "{dovecot.host}"
port = {dovecot.port}
tls = "none"
username = "{dovecot.username}"
password_file = "{dovecot.password_file}"

[smtp]
host = "{smtp.host}"
port = {smtp.port}
tls = "none"

[store]
url = "sqlite:///{directory}/mailbridge.sqlite3"

[http]
listen = "127.0.0.1:{free_port()}"

[daemon]
state_dir = "{directory}"
""", encoding="utf-8")
    return path


def fill(url: str, open_count: int, resolved: int, now: datetime) -> float:
    """Bulk-insert the threads and a small outbox backlog; return the seconds it took."""
    started = time.monotonic()
    rng = random.Random(6)
    store = Store.open(url)
    names = list(POLICIES)
    batch: list[dict[str, object]] = []
    with store.engine.begin() as conn:
        for n in range(open_count + resolved):
            policy = names[0] if n % 10 >= 4 else names[1 + n % 2]
            priority, target = POLICIES[policy]
            created = now - timedelta(seconds=rng.uniform(0, 3 * 86400))
            state = "resolved" if n >= open_count else (
                "awaiting_agent" if n % 4 else "awaiting_customer")
            waiting = state == "awaiting_agent"
            kind = "next_response" if waiting and policy == "vip" and n % 3 == 0 \
                else "first_response"
            due = created + (target if kind == "first_response" else timedelta(hours=2))
            batch.append({
                "id": f"T{n:07d}", "created_at": created, "customer": f"c{n}@example.org",
                "subject": f"Question {n}", "agent_name": "Dana Whitfield",
                "agent_email": "dana@example.com", "state": state,
                "first_response_due": created + target, "subject_key": f"question {n}",
                "policy": policy, "priority": priority, "clock": "", "next_due_at": None,
                "waiting_since": created if waiting else None,
                "response_due_at": due if waiting else None,
                "response_kind": kind if waiting else None,
                "resolution_due_at": created + timedelta(days=1)
                if waiting and policy == "vip" else None})
            if len(batch) == 10_000:
                conn.execute(THREADS.insert(), batch)
                batch.clear()
        if batch:
            conn.execute(THREADS.insert(), batch)
        conn.execute(OUTBOX.insert(), [{
            "thread_id": f"T{n:07d}", "kind": "ack", "mailbox": "INBOX",
            "message_id": f"<ack{n}@example.com>", "envelope_from": "",
            "recipient": f"c{n}@example.org", "body": b"x", "state": "pending",
            "attempts": 1, "next_attempt_at": now + timedelta(days=1),
            "created_at": now - timedelta(minutes=n), "arrived_at": now - timedelta(minutes=n),
            "sent_at": None, "last_error": "retrying"} for n in range(200)])
    with store.engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()
    store.close()
    return time.monotonic() - started


def scrape(listen: str, count: int) -> tuple[list[float], str]:
    times: list[float] = []
    body = ""
    for _ in range(count):
        started = time.perf_counter()
        with urllib.request.urlopen(f"http://{listen}/metrics", timeout=10) as resp:
            body = resp.read().decode()
        times.append(time.perf_counter() - started)
    return times, body


def gauge(body: str, name: str) -> float:
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def in_process(url: str, now: datetime, count: int) -> list[float]:
    """The store query alone, as the collector runs it."""
    store = Store.open(url)
    try:
        times = []
        for _ in range(count):
            started = time.perf_counter()
            read_snapshot(store, now, timedelta(hours=1))
            times.append(time.perf_counter() - started)
        return times
    finally:
        store.close()


def ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--open", type=int, default=100_000)
    parser.add_argument("--resolved", type=int, default=100_000)
    parser.add_argument("--scrapes", type=int, default=50)
    args = parser.parse_args()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="mb-bench-scrape-") as tmp, SmtpPeer() as peer, \
            Dovecot(Path(tmp) / "dovecot") as dovecot:
        config = write_config(Path(tmp), dovecot, peer)
        url = f"sqlite:///{tmp}/mailbridge.sqlite3"
        fill_s = fill(url, args.open, args.resolved, now)
        query = in_process(url, now, args.scrapes)
        with Daemon(config) as daemon:
            scrape(daemon.listen, 5)  # warm-up: caches, first connection
            times, body = scrape(daemon.listen, args.scrapes)
        size = len(body.encode())
        open_threads = sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
                           if line.startswith("mailbridge_threads_open{"))
        store_s = gauge(body, "mailbridge_scrape_store_duration_seconds")
    assert open_threads == args.open, open_threads
    command = (f"python benchmarks/scrape.py --open {args.open} --resolved {args.resolved} "
               f"--scrapes {args.scrapes}")
    text_out = append("scrape", command, (
        f"| measure | value |\n|---|---|\n"
        f"| threads in the SQLite store: open / resolved | {args.open:,} / "
        f"{args.resolved:,} (bulk insert {fill_s:.1f} s) |\n"
        f"| GET /metrics from the running daemon, p50 / p95 / max | "
        f"{ms(times, 50):.1f} / {ms(times, 95):.1f} / {max(times) * 1000:.1f} ms |\n"
        f"| of which the store query (last scrape's gauge) | {store_s * 1000:.1f} ms |\n"
        f"| store query alone, in process, p50 / p95 | {ms(query, 50):.1f} / "
        f"{ms(query, 95):.1f} ms |\n"
        f"| exposition size | {size / 1024:.1f} KiB |\n"
    ))
    print(text_out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
