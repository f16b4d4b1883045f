"""Backlog throughput and resident memory at issue 7's scale, on SQLite and PostgreSQL.

Run: `.venv/bin/python benchmarks/backlog.py [--messages N] [--attachments-count M]
[--attachment-every K] [--skip-postgresql] [--skip-attachments] [--no-pipelining]
[--no-record]`

Each run has its own Dovecot, SMTP peer and store. The daemon starts on the empty mailbox
(that creates the Maildir and the store's tables) and stops, then starts and stops there once
more for its start-up CPU time (process start to healthy, `Outcome.start_cpu_s`); then
messages from distinct customers are delivered into the INBOX Maildir, as an MDA does, and
the daemon starts again. Timed: from process start to the last ack at the SMTP peer. Meanwhile a
thread reads each daemon's VmRSS from /proc every 0.2 s; VmHWM (the kernel's own peak)
and the idle VmRSS are read IDLE_S seconds after the last ack, before the daemon stops.
The daemon's CPU time (user + system, from /proc) at the last ack, per message, varies
less with the load of a shared machine than the wall time does.

1. N messages, one instance, SQLite.
2. N messages, one instance, PostgreSQL; then two instances on one database, started
   together (one holds the mailbox lease, both send from the outbox); then two instances
   watching two mailboxes of one account (the INBOX and a folder), the messages split
   between them, each instance recording its own.
3. M messages, one instance, SQLite, without and with a 20 MiB attachment in every K-th
   message. The watcher fetches headers and the first text part only, so the peak
   should not rise with the attachments.

Every customer must get exactly one ack: the table shows the most acks one customer got
and how many got none. PostgreSQL is a scratch database on the machine's server
($MAILBRIDGE_TEST_POSTGRES, see tests/postgres.py), dropped afterwards; if no server
answers, those rows are skipped. Prints the table and appends it, with date, machine and
command, to benchmarks/RESULTS.md. Targets (issue 7): a 10,000-message backlog at 200
messages per second or better on SQLite with one instance; the daemon under 150 MB,
20 MB attachments in the mix not raising it.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results import append
from mailbridge.config import SmtpSettings
from mailbridge.io.smtp_sender import SmtpTransport
from tests.daemon import REPO, Daemon, maildir_deliver, write_config
from tests.mails import customer_mail
from tests.servers import Dovecot, SmtpPeer

ATTACHMENT_BYTES = 20 * 2**20
SAMPLE_S = 0.2
IDLE_S = 5.0  # after the last ack: late duplicates arrive, the daemon settles
ACK_TIMEOUT_S = 900.0
START_TIMEOUT_S = 120.0  # health may answer late while a backlog is being read
FOLDERS = ("", "Billing")
"""The mailboxes of a two-mailbox run: the INBOX and a folder of the same account."""
TOKEN = "ZZNZZ"  # stands for the message number in the attachment template's header

MakeMail = Callable[[int], bytes]


class Run(NamedTuple):
    label: str
    messages: int
    make_mail: MakeMail
    instances: int = 1
    postgres: bool = False
    mailboxes: int = 1
    """With 2 (and two instances): each instance watches its own mailbox, the messages
    alternate between them."""


@dataclass(frozen=True)
class Outcome:
    """One backlog run; the lists hold one figure per daemon instance."""

    label: str
    count: int
    seconds: float
    peak_mib: list[float]
    hwm_mib: list[float]
    idle_mib: list[float]
    sent_by: list[int]
    most_acks: int
    missing: int
    cpu_s: list[float]
    """CPU time (user + system) each daemon process used until the last ack."""
    busy_cores: float
    """The machine's busy CPU time (every process: daemons, Dovecot, the SMTP peer, the
    database server, anything else running) over the same span, in cores: near the core
    count, the run was bound by CPU and a second instance has little left to use."""
    start_cpu_s: list[float]
    """CPU time each daemon used until healthy, started on the empty mailbox and the store
    its first start made."""


def customer(n: int | str) -> str:
    return f"backlog{n}@example.org"


def plain_mail(n: int) -> bytes:
    return customer_mail(100000 + n, addr=customer(n))


def with_attachments(every: int) -> MakeMail:
    """Plain mail, except every `every`-th message carries a 20 MiB attachment.

    The big message is built and encoded once; each copy only gets its own From,
    Return-Path, Subject and Message-ID, so delivering stays fast."""
    msg = message_from_bytes(customer_mail(0, addr=customer(TOKEN),
                                           subject=f"Logs for case {TOKEN}"),
                             policy=default)
    assert isinstance(msg, EmailMessage)
    msg.replace_header("Message-ID", f"<{TOKEN}.attach@example.org>")
    msg.add_attachment(random.Random(7).randbytes(ATTACHMENT_BYTES), maintype="application",
                       subtype="octet-stream", filename="dump.bin")
    head, sep, body = msg.as_bytes().partition(b"\n\n")

    def make(n: int) -> bytes:
        if n % every != every - 1:
            return plain_mail(n)
        return head.replace(TOKEN.encode(), str(n).encode()) + sep + body
    return make


def status_mib(pid: int, field: str) -> float:
    """A `VmRSS`/`VmHWM`-like field of /proc/<pid>/status in MiB (0 once the process is gone)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines()
    except OSError:
        return 0.0
    for line in lines:
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # kB
    return 0.0


def machine_busy_seconds() -> float:
    """CPU time all processors spent busy since boot (/proc/stat: all but idle and iowait)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text(encoding="ascii").split("\n", 1)[0]
             .split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (its own, not its children's)."""
    fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


class RssSampler:
    """Keeps the highest VmRSS seen of each daemon, sampled every SAMPLE_S seconds."""

    def __init__(self, daemons: list[Daemon]) -> None:
        self.daemons = daemons
        self.peak = [0.0] * len(daemons)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            for i, daemon in enumerate(self.daemons):
                if (process := daemon.process) is not None:
                    self.peak[i] = max(self.peak[i], status_mib(process.pid, "VmRSS"))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def sent_total(daemon: Daemon) -> int:
    """Acks this instance reports sent, summed over its mailboxes."""
    return int(sum(float(line.rpartition(" ")[2]) for line in daemon.metrics().splitlines()
                   if line.startswith("mailbridge_acks_sent_total")))


def start_together(daemons: list[Daemon]) -> None:
    with ThreadPoolExecutor(len(daemons)) as pool:
        list(pool.map(lambda d: d.start(timeout=START_TIMEOUT_S), daemons))


def pids(daemons: list[Daemon]) -> list[int]:
    return [d.process.pid for d in daemons if d.process is not None]


def backlog(root: Path, label: str, count: int, make_mail: MakeMail, *, instances: int = 1,
            store_url: str | None = None, pipelining: bool = True,
            mailboxes: int = 1, source: Path = REPO) -> Outcome:
    """One run; `source` is the tree whose package the daemons run (another one for A/B)."""
    folders = FOLDERS[:mailboxes]
    with Dovecot(root / "dovecot") as dovecot, SmtpPeer(pipelining=pipelining) as peer:
        # The benchmark measures throughput, not the flood cap: lift the cap.
        daemons = [Daemon(write_config(
            root / f"mb{i}", dovecot, peer, store_url=store_url,
            extra_imap=f'backfill = "1d"\nmailbox = "{folders[i % mailboxes] or "INBOX"}"',
            extra_rules="global_cap_per_minute = 1000000"), source=source)
            for i in range(instances)]
        if any(folders):  # each mailbox exists before its watcher starts
            with dovecot.connect() as client:
                for folder in filter(None, folders):
                    client.create_folder(folder)
        try:
            for daemon in daemons:  # one after another: the first one creates the tables
                daemon.start()
            for daemon in daemons:
                daemon.stop()
            start_cpu = [start_cpu_seconds(daemon) for daemon in daemons]
            for n in range(count):
                maildir_deliver(dovecot, make_mail(n), f"{n}.M{n}P{os.getpid()}.bench",
                                folders[n % mailboxes])
            with RssSampler(daemons) as sampler:
                started, busy = time.monotonic(), machine_busy_seconds()
                start_together(daemons)
                peer.wait_for_count(count, timeout=ACK_TIMEOUT_S)
                seconds = time.monotonic() - started
                busy = machine_busy_seconds() - busy
                cpu = [cpu_seconds(pid) for pid in pids(daemons)]
                time.sleep(IDLE_S)  # a settling period, not a wait on a condition
                idle = [status_mib(pid, "VmRSS") for pid in pids(daemons)]
                hwm = [status_mib(pid, "VmHWM") for pid in pids(daemons)]
            sent_by = [sent_total(d) for d in daemons]
            acks = Counter(rcpt for m in peer.messages for rcpt in m.rcpt_tos)
            customers = {customer(n) for n in range(count)}
        finally:
            for daemon in daemons:
                if daemon.process is not None:
                    daemon.stop()
    return Outcome(label, count, seconds, sampler.peak, hwm, idle, sent_by,
                   max(acks.values(), default=0), len(customers - set(acks)), cpu,
                   busy / seconds, start_cpu)


def start_cpu_seconds(daemon: Daemon) -> float:
    """The CPU time `daemon` takes from its start until it is healthy; stops it."""
    daemon.start()
    assert daemon.process is not None
    cpu = cpu_seconds(daemon.process.pid)
    daemon.stop()
    return cpu


def peer_rate(count: int = 2000, *, pipelining: bool = True) -> float:
    """Messages per second the benchmark's own SMTP peer (aiosmtpd, Python) accepts from our
    SMTP transport over one connection with nothing else running: a ceiling of this harness,
    not of ours."""
    body = b"Subject: ceiling\r\n\r\n" + b"Thank you for your message.\r\n" * 60
    with SmtpPeer(pipelining=pipelining) as peer:
        client = SmtpTransport(SmtpSettings(host=peer.host, port=peer.port, tls="none"),
                               local_hostname="bench.example")
        started = time.monotonic()
        for n in range(count):
            client.send("", customer(n), body)
        seconds = time.monotonic() - started
        client.close()
    return count / seconds


def postgres_available() -> bool:
    try:
        from tests.postgres import server_answers
    except ImportError:  # psycopg is an optional dependency
        return False
    return server_answers()


@contextmanager
def database(on_postgres: bool) -> Iterator[str | None]:
    """None (a SQLite file of the run's own), or a scratch PostgreSQL database."""
    if not on_postgres:
        yield None
        return
    from tests.postgres import scratch_database

    with scratch_database() as url:
        yield url


def mib(values: list[float]) -> str:
    return " / ".join(f"{v:.0f}" for v in values)


def table(outcomes: list[Outcome]) -> str:
    lines = ["| run | messages | process start to last ack | acks/s | most acks to one "
             "customer / customers without | acks sent per instance | daemon CPU per message | "
             f"machine busy (of {os.cpu_count()} cores) | peak VmRSS (sampled) | VmHWM | "
             "idle VmRSS |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        lines.append(f"| {o.label} | {o.count:,} | {o.seconds:.1f} s | {o.count / o.seconds:.0f} "
                     f"| {o.most_acks} / {o.missing} | {' / '.join(map(str, o.sent_by))} | "
                     f"{sum(o.cpu_s) / o.count * 1000:.2f} ms | {o.busy_cores:.2f} | "
                     f"{mib(o.peak_mib)} MiB | "
                     f"{mib(o.hwm_mib)} MiB | {mib(o.idle_mib)} MiB |")
    return "\n".join(lines) + "\n"


def record(text: str, command: str, notes: list[str]) -> str:
    body = ("Backlog delivered into the Maildir while the daemon was stopped; timed from "
               "process start to the last ack at the SMTP peer. Memory per instance (a / b): "
               f"VmRSS sampled every {SAMPLE_S:g} s, VmHWM and idle VmRSS {IDLE_S:g} s after "
            "the last ack.\n\n" + text)
    if notes:
        body += "\n" + "\n".join(f"- {note}" for note in notes) + "\n"
    return append("backlog", command, body)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--attachments-count", type=int, default=2000)
    parser.add_argument("--attachment-every", type=int, default=100)
    parser.add_argument("--skip-postgresql", action="store_true")
    parser.add_argument("--skip-attachments", action="store_true")
    parser.add_argument("--no-pipelining", action="store_true",
                        help="the SMTP peer does not offer PIPELINING (RFC 2920)")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    n, m, every = args.messages, args.attachments_count, args.attachment_every
    runs = [Run("SQLite, one instance", n, plain_mail)]
    notes = []
    if not args.skip_postgresql and postgres_available():
        runs += [Run("PostgreSQL, one instance", n, plain_mail, postgres=True),
                 Run("PostgreSQL, two instances", n, plain_mail, instances=2, postgres=True),
                 Run("PostgreSQL, two instances, two mailboxes", n, plain_mail, instances=2,
                     postgres=True, mailboxes=2)]
    elif not args.skip_postgresql:
        notes.append("PostgreSQL rows skipped: no server answers ($MAILBRIDGE_TEST_POSTGRES, "
                     "see tests/postgres.py).")
        print(notes[-1], flush=True)
    if not args.skip_attachments:
        runs += [Run("SQLite, one instance, no attachments", m, plain_mail),
                 Run(f"SQLite, one instance, every {every}th with a 20 MiB attachment", m,
                     with_attachments(every))]
    pipelining = not args.no_pipelining
    ceiling = peer_rate(pipelining=pipelining)
    notes.append(f"The SMTP peer alone accepts {ceiling:.0f} messages/s over one connection "
                 "(our SMTP transport to aiosmtpd, nothing else of ours running); during a run "
                 "it shares the CPUs with Dovecot and the daemon. It "
                 + ("offers" if pipelining else "does not offer") + " PIPELINING.")
    print(notes[-1], flush=True)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="mb-backlog-") as tmp:
        for i, run in enumerate(runs):
            with database(run.postgres) as url:
                outcome = backlog(Path(tmp) / f"run{i}", run.label, run.messages, run.make_mail,
                                  instances=run.instances, store_url=url,
                                  pipelining=pipelining, mailboxes=run.mailboxes)
            outcomes.append(outcome)
            print(f"{run.label}: {run.messages:,} acks in {outcome.seconds:.1f} s "
                  f"({run.messages / outcome.seconds:.0f}/s), daemon CPU "
                  f"{sum(outcome.cpu_s) / run.messages * 1000:.2f} ms per message (start-up "
                  f"{' / '.join(f'{c:.2f}' for c in outcome.start_cpu_s)} s), machine "
                  f"busy {outcome.busy_cores:.2f} cores, peak VmRSS "
                  f"{mib(outcome.peak_mib)} MiB", flush=True)
    for o in outcomes:
        if o.most_acks != 1 or o.missing:
            notes.append(f"{o.label}: a customer got {o.most_acks} acks, {o.missing} got none.")
    text = table(outcomes)
    print("\n" + text + "".join(f"\n{note}" for note in notes))
    if args.no_record:
        return 0
    command = (f"python benchmarks/backlog.py --messages {n} --attachments-count {m} "
               f"--attachment-every {every}" + " --skip-postgresql" * args.skip_postgresql
               + " --skip-attachments" * args.skip_attachments
               + " --no-pipelining" * args.no_pipelining)
    record(text, command, notes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
