"""Acknowledgement latency and backlog throughput against real servers.

Run: `.venv/bin/python benchmarks/ack_latency.py [--steady N] [--rate R] [--backlog M]`

1. Steady: N customer messages appended to Dovecot at R per second while the daemon
   runs; latency = from the APPEND completing to the ack reaching the SMTP peer.
2. Backlog: the daemon is stopped, M messages are delivered into the Maildir (as an MDA
   does), the daemon starts; time until every ack reached the SMTP peer.

Prints the figures and appends them, with date and machine, to benchmarks/RESULTS.md.
Targets (issue 2): p99 under 1 s at 10 msg/s; 2,000-message backlog in under 20 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results import append
from tests.daemon import Daemon, maildir_deliver, write_config
from tests.mails import customer_mail
from tests.servers import Dovecot, SmtpPeer


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def steady(dovecot: Dovecot, peer: SmtpPeer, count: int, rate: float) -> dict[str, float]:
    sent_at: dict[str, float] = {}
    interval = 1.0 / rate
    with dovecot.connect() as client:
        start = time.monotonic()
        for n in range(count):
            target = start + n * interval
            while (now := time.monotonic()) < target:
                time.sleep(min(0.005, target - now))  # pacing the load, not waiting on a result
            addr = f"steady{n}@example.org"
            client.append("INBOX", customer_mail(n, addr=addr))
            sent_at[addr] = time.monotonic()
    received = peer.wait_for_count(count, timeout=60 + count / rate)
    latencies = [m.received_monotonic - sent_at[m.rcpt_tos[0]] for m in received
                 if m.rcpt_tos[0] in sent_at]
    return {"count": len(latencies), "rate": rate,
            "p50": percentile(latencies, 50), "p90": percentile(latencies, 90),
            "p99": percentile(latencies, 99), "max": max(latencies)}


def backlog(dovecot: Dovecot, peer: SmtpPeer, daemon: Daemon, count: int) -> dict[str, float]:
    daemon.stop()
    peer.clear()
    for n in range(count):
        maildir_deliver(dovecot, customer_mail(100000 + n, addr=f"backlog{n}@example.org"),
                        f"{time.time():.0f}.M{n}P{os.getpid()}.bench")
    started = time.monotonic()
    daemon.start(timeout=60)
    ready = time.monotonic()
    peer.wait_for_count(count, timeout=300)
    done = time.monotonic()
    return {"count": count, "total_s": done - started, "after_ready_s": done - ready,
            "per_s": count / (done - started)}


def record(steady_result: dict[str, float], backlog_result: dict[str, float]) -> str:
    s, b = steady_result, backlog_result
    command = (f"python benchmarks/ack_latency.py --steady {int(s['count'])} "
               f"--rate {s['rate']:g} --backlog {int(b['count'])}")
    return append("ack_latency", command, (
        f"| measure | value |\n|---|---|\n"
        f"| steady: messages at {s['rate']:g}/s | {int(s['count'])} |\n"
        f"| steady latency p50 / p90 / p99 / max | {s['p50']*1000:.0f} / {s['p90']*1000:.0f} / "
        f"{s['p99']*1000:.0f} / {s['max']*1000:.0f} ms |\n"
        f"| backlog: messages | {int(b['count'])} |\n"
        f"| backlog: process start to last ack | {b['total_s']:.1f} s "
        f"({b['per_s']:.0f} acks/s) |\n"
        f"| backlog: healthy to last ack | {b['after_ready_s']:.1f} s |\n"
    ))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steady", type=int, default=300)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--backlog", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mb-bench-") as tmp:
        root = Path(tmp)
        dovecot = Dovecot(root / "dovecot")
        dovecot.start()
        peer = SmtpPeer()
        peer.start()
        # The benchmark measures throughput, not the flood cap: lift the cap.
        daemon = Daemon(write_config(root / "mb", dovecot, peer, extra_imap='backfill = "1d"',
                                     extra_rules="global_cap_per_minute = 1000000"))
        try:
            daemon.start()
            steady_result = steady(dovecot, peer, args.steady, args.rate)
            backlog_result = backlog(dovecot, peer, daemon, args.backlog)
        finally:
            if daemon.process is not None:
                daemon.stop()
            peer.stop()
            dovecot.stop()
    print(record(steady_result, backlog_result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
