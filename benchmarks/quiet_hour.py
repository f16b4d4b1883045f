"""The first acknowledgement after a quiet spell, against an SMTP peer that closes idle
connections.

Run: `.venv/bin/python benchmarks/quiet_hour.py [--idle N] [--quiet Q] [--rounds R]
[--before REV] [--after REV] [--no-record]`

Mail servers close a connection that has been idle for a while (Postfix after 300 s). Each
round starts the daemon on a fresh store, sends one customer message so that the daemon
opens its SMTP connection, waits until the peer (idle timeout N seconds) has closed that
connection and Q seconds of quiet have passed, then delivers one more message and times
it: from the APPEND completing to the ack reaching the SMTP peer. Retries wait as in
production ([smtp] retry_initial 30 s).

With `--before REV` the code of that git revision runs every other round (A/B, interleaved)
against the working tree's, or against `--after REV`'s. Prints p50/p99 per variant and
appends them to benchmarks/RESULTS.md. Target (issue 13): p99 under 1 s.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.ack_latency import percentile
from benchmarks.results import append
from tests.daemon import REPO, Daemon, write_config
from tests.mails import customer_mail
from tests.servers import Dovecot, SmtpPeer, wait_for

FAST_RETRIES = 'retry_initial = "1s"\nretry_max = "2s"\n'
"""What the test config sets to keep tests short; removed here: retries wait as in production."""


@dataclass
class Variant:
    label: str
    source: Path
    latencies: list[float] = field(default_factory=list)
    failures: float = 0.0
    """Delivery attempts counted as failed (mailbridge_ack_failures_total), all rounds."""


def checkout(revision: str, into: Path) -> Path:
    """The source tree of `revision`, extracted from git into `into`."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision],
                             check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def one_round(n: int, variant: Variant, root: Path, dovecot: Dovecot, peer: SmtpPeer,
              quiet: float) -> None:
    config = write_config(root / f"round{n}", dovecot, peer, extra_imap='backfill = "0s"')
    config.write_text(config.read_text(encoding="utf-8").replace(FAST_RETRIES, ""),
                      encoding="utf-8")
    daemon = Daemon(config, source=variant.source).start(timeout=60)
    try:
        # Mail older than the first look at the mailbox is left alone (backfill 0s).
        wait_for(lambda: daemon.metric("mailbridge_imap_last_sync_timestamp_seconds",
                                       mailbox="INBOX") > 0, timeout=30)
        with dovecot.connect() as client:
            before = len(peer.messages)
            closed = peer.closed_count
            client.append("INBOX", customer_mail(2 * n, addr=f"warm{n}@example.org"))
            peer.wait_for_count(before + 1, timeout=60)
            quiet_from = time.monotonic()
            # The peer closes the connection the ack used; then the quiet spell runs out.
            peer.wait_for_closed(closed + 1, timeout=(peer.idle_timeout or 300) + 30)
            time.sleep(max(0.0, quiet_from + quiet - time.monotonic()))  # pacing, not a wait
            addr = f"quiet{n}@example.org"
            client.append("INBOX", customer_mail(2 * n + 1, addr=addr))
            appended = time.monotonic()
            received = peer.wait_for_count(before + 2, timeout=120)
        arrived = next(m.received_monotonic for m in received if m.rcpt_tos == [addr])
        variant.latencies.append(arrived - appended)
        variant.failures += sum(daemon.metric("mailbridge_ack_failures_total", mailbox="INBOX",
                                              reason=reason)
                                for reason in ("smtp_temporary", "smtp_permanent"))
    finally:
        daemon.stop()
    print(f"round {n}: {variant.label} {variant.latencies[-1] * 1000:.0f} ms", flush=True)


def record(variants: list[Variant], args: argparse.Namespace) -> str:
    command = (f"python benchmarks/quiet_hour.py --idle {args.idle:g} --quiet {args.quiet:g} "
               f"--rounds {args.rounds}" + "".join(
                   f" --{name} {rev}" for name, rev in (("before", args.before),
                                                        ("after", args.after)) if rev))
    rows = "".join(
        f"| {v.label} | {len(v.latencies)} | {percentile(v.latencies, 50) * 1000:.0f} / "
        f"{percentile(v.latencies, 99) * 1000:.0f} / {max(v.latencies) * 1000:.0f} ms | "
        f"{v.failures:g} |\n" for v in variants)
    return append("quiet_hour", command, (
        f"The SMTP peer closes connections idle for {args.idle:g} s; each round, the first "
        f"customer message after {args.quiet:g} s of quiet, from APPEND to the ack at the "
        "peer." + (" Rounds alternate between the variants;" if len(variants) > 1 else "")
        + " Other work shared the machine's two cores.\n\n"
        "| code | rounds | latency p50 / p99 / max | attempts counted failed |\n"
        f"|---|---|---|---|\n{rows}"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=2.0,
                        help="the SMTP peer's idle timeout, seconds")
    parser.add_argument("--quiet", type=float, default=8.0,
                        help="seconds between the last ack and the measured message")
    parser.add_argument("--rounds", type=int, default=8, help="rounds per variant")
    parser.add_argument("--before", metavar="REV",
                        help="also run this git revision, in alternate rounds")
    parser.add_argument("--after", metavar="REV",
                        help="run this git revision instead of the working tree")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mb-bench-") as tmp:
        root = Path(tmp)
        variants = [Variant(args.after, checkout(args.after, root / "after")) if args.after
                    else Variant("working tree", REPO)]
        if args.before:
            variants.insert(0, Variant(args.before, checkout(args.before, root / "before")))
        dovecot = Dovecot(root / "dovecot")
        dovecot.start()
        peer = SmtpPeer(idle_timeout=args.idle)
        peer.start()
        try:
            for n in range(args.rounds * len(variants)):
                one_round(n, variants[n % len(variants)], root, dovecot, peer, args.quiet)
        finally:
            peer.stop()
            dovecot.stop()
    if args.no_record:
        for v in variants:
            print(f"{v.label}: p50 {percentile(v.latencies, 50) * 1000:.0f} ms, "
                  f"p99 {percentile(v.latencies, 99) * 1000:.0f} ms, failures {v.failures:g}")
    else:
        print(record(variants, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
