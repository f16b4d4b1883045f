"""Acknowledgement latency and backlog throughput against real servers.

Run: `.venv/bin/python benchmarks/ack_latency.py [--steady N] [--rate R] [--backlog M]`
or `.venv/bin/python benchmarks/ack_latency.py --push N`

1. Steady: N customer messages appended to Dovecot at R per second while the daemon
   runs; latency = from the APPEND completing to the ack reaching the SMTP peer.
2. Backlog: the daemon is stopped, M messages are delivered into the Maildir (as an MDA
   does), the daemon starts; time until every ack reached the SMTP peer.
3. Push (`--push N`, instead of 1 and 2): three Dovecots, each with its own daemon and
   SMTP peer: one pushing to its daemon (push_notification, OX driver), one not, and one
   pushing to a bare responder that answers 204 at once (a control: LMTP's cost of the push
   driver itself; its mail is acknowledged through IDLE). N messages are delivered by LMTP
   to each, one at a time, in a shuffled order per round. Per message: LMTP's own time
   (connect to the reply to DATA) and the latency from the reply to DATA (the delivery) and
   from the start of LMTP to the ack reaching the SMTP peer.

Prints the figures and appends them, with date and machine, to benchmarks/RESULTS.md.
Targets (issue 2): p99 under 1 s at 10 msg/s; 2,000-message backlog in under 20 s.
Targets (issue 17): with push p50 under 50 ms and p99 under 100 ms; LMTP no slower with push.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results import append
from tests.daemon import Daemon, maildir_deliver, write_config
from tests.mails import customer_mail
from tests.servers import Dovecot, SmtpPeer, free_port, port_accepts, wait_for


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


BARE_RESPONDER = """
import asyncio, sys
async def answer(reader, writer):
    try:
        head = await reader.readuntil(b"\\r\\n\\r\\n")
    except asyncio.IncompleteReadError:  # a probe whether the port is open
        return
    length = [l for l in head.lower().split(b"\\r\\n") if l.startswith(b"content-length:")]
    await reader.readexactly(int(length[0].split(b":")[1]))
    writer.write(b"HTTP/1.1 204 No Content\\r\\nConnection: close\\r\\n\\r\\n")
    await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(answer, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
asyncio.run(main())
"""
"""Answers every request 204 at once, in a process of its own: the control arm's endpoint."""


class Arm:
    """One Dovecot, its daemon and its SMTP peer; Dovecot pushes to `push_to`: "daemon", a
    bare responder at that address, or nowhere ("")."""

    def __init__(self, root: Path, name: str, *, push_to: str) -> None:
        self.name = name
        self.dovecot = Dovecot(root / "dovecot")
        self.peer = SmtpPeer()
        self.daemon = Daemon(write_config(root / "mb", self.dovecot, self.peer,
                                          extra_rules="global_cap_per_minute = 1000000"))
        if push_to:
            where = self.daemon.listen if push_to == "daemon" else push_to
            self.dovecot.push_url = f"http://{where}/push/dovecot"
        self.lmtp: list[float] = []
        self.from_delivery: list[float] = []
        self.from_start: list[float] = []

    def start(self) -> None:
        self.dovecot.start()
        self.peer.start()
        self.daemon.start()

    def stop(self) -> None:
        if self.daemon.process is not None:
            self.daemon.stop()
        self.peer.stop()
        self.dovecot.stop()

    def deliver(self, n: int, *, measure: bool) -> None:
        """Deliver customer n's mail by LMTP and wait for its ack."""
        addr = f"push{n}@example.org"
        acks = len(self.peer.messages)
        started = time.monotonic()
        self.dovecot.deliver(customer_mail(n, addr=addr), sender=addr)
        delivered = time.monotonic()
        [ack] = [m for m in self.peer.wait_for_count(acks + 1, timeout=30)
                 if m.rcpt_tos == [addr]]
        if measure:
            self.lmtp.append(delivered - started)
            self.from_delivery.append(ack.received_monotonic - delivered)
            self.from_start.append(ack.received_monotonic - started)


def push_ab(root: Path, count: int, seed: int) -> tuple[list[Arm], str]:
    """The arms with their figures, and the machine's load average before and after."""
    load_before = os.getloadavg()[0]
    port = free_port()
    bare = f"127.0.0.1:{port}"
    responder = subprocess.Popen([sys.executable, "-c", BARE_RESPONDER, str(port)])
    arms = [Arm(root / "push", "push", push_to="daemon"),
            Arm(root / "idle", "IDLE only", push_to=""),
            Arm(root / "bare", "push to a bare responder (control)", push_to=bare)]
    shuffle = random.Random(seed)
    try:
        wait_for(lambda: port_accepts("127.0.0.1", port), timeout=10)
        for arm in arms:
            arm.start()
        for n in range(count + 3):  # the first 3 of each warm up
            for arm in shuffle.sample(arms, len(arms)):
                arm.deliver(n + arms.index(arm) * 100000, measure=n >= 3)
        errors = arms[0].dovecot.push_errors() + arms[2].dovecot.push_errors()
        if errors:
            raise RuntimeError(f"Dovecot could not push: {errors[0]}")
    finally:
        for arm in arms:
            arm.stop()
        responder.kill()
        responder.wait()
    return arms, f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after"


def record_push(arms: list[Arm], load: str, count: int, seed: int, note: str) -> str:
    def ms(values: list[float]) -> str:
        return " / ".join(f"{percentile(values, q) * 1000:.0f}" for q in (50, 90, 99)) \
            + f" / {max(values) * 1000:.0f} ms"

    rows = "".join(f"| {arm.name} | {len(arm.lmtp)} | {ms(arm.from_delivery)} | "
                   f"{ms(arm.from_start)} | {ms(arm.lmtp)} |\n" for arm in arms)
    return append("ack_latency push", f"python benchmarks/ack_latency.py --push {count} "
                  f"--seed {seed}" + (f" --note {shlex.quote(note)}" if note else ""), (
        "Three Dovecots, each with its own daemon and SMTP peer: one pushing to its daemon "
        "(push_notification, OX driver), one not, and one pushing to a bare responder that "
        "answers 204 at once (control: what the push driver itself adds to LMTP; acks "
        "through IDLE). One message at a time by LMTP, in a shuffled order per round. "
        "Latency: to the ack reaching the SMTP peer, from LMTP's reply to DATA (the "
        "delivery) and from the start of LMTP. LMTP: connect to the reply to DATA. Load "
        f"average (1 min): {load}." + (f" {note}" if note else "") + "\n\n"
        "| Dovecot | messages | latency from delivery p50 / p90 / p99 / max | "
        "from LMTP start p50 / p90 / p99 / max | LMTP p50 / p90 / p99 / max |\n"
        f"|---|---|---|---|---|\n{rows}"))


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
    parser.add_argument("--push", type=int, default=0,
                        help="instead: N messages by LMTP with and without Dovecot's push")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--note", default="", help="a sentence for RESULTS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mb-bench-") as tmp:
        root = Path(tmp)
        if args.push:
            print(record_push(*push_ab(root, args.push, args.seed), args.push, args.seed,
                              args.note))
            return 0
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
