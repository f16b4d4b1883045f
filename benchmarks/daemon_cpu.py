"""The daemon's CPU time per acknowledged message and at start-up: a revision against this tree.

Run: `.venv/bin/python benchmarks/daemon_cpu.py --before REV [--messages N] [--rounds R]
[--postgresql] [--no-record]`

`benchmarks/backlog.py`'s one-instance SQLite run (N messages, 3,000 by default), alternately
with REV's package and this working tree's, R rounds each (2 by default), so that the load of a
shared machine falls on both alike. Each tree's `mailbridge/` and `templates/` are copied to a
temporary directory first. Reported per tree, medians with the range: acks per second, the
daemon's CPU time (user + system) per message until the last ack, start-up included, and its
CPU time from process start until healthy on the empty mailbox (a restart: its store exists).
`--postgresql`: the same on a scratch PostgreSQL database for each run (backlog.py's).

Bytecode: an installed package comes with its modules compiled (pip compiles them), but a
source tree run with $PYTHONDONTWRITEBYTECODE set compiles its modules at every start (0.1 to
0.3 s CPU here). Both copies are compiled beforehand (`compileall`), so start-up is measured
as an installed daemon's. Appends the table, with date, machine and command, to
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.backlog import Outcome, backlog, database, plain_mail
from benchmarks.results import append, spread
from tests.daemon import REPO

PARTS = ("mailbridge", "templates")


@dataclass
class Tree:
    label: str
    source: Path
    outcomes: list[Outcome] = field(default_factory=list)


def copy_revision(revision: str, target: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, *PARTS],
                             check=True, capture_output=True).stdout
    target.mkdir()
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def copy_working_tree(target: Path) -> Path:
    for part in PARTS:
        shutil.copytree(REPO / part, target / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return target


def compiled(tree: Path) -> Path:
    if not compileall.compile_dir(tree / "mailbridge", quiet=1):
        raise SystemExit(f"{tree}: the package does not compile")
    return tree


def table(trees: list[Tree]) -> str:
    lines = ["| tree | rounds | acks/s | daemon CPU per message, start-up included | "
             "start-up CPU (to healthy) | machine busy | most acks to one customer / "
             "customers without |",
             "|---|---|---|---|---|---|---|"]
    for tree in trees:
        runs = tree.outcomes
        lines.append(
            f"| {tree.label} | {len(runs)} | {spread([o.count / o.seconds for o in runs], '.0f')}"
            f" | {spread([sum(o.cpu_s) / o.count * 1000 for o in runs], '.2f')} ms"
            f" | {spread([sum(o.start_cpu_s) for o in runs], '.2f')} s"
            f" | {spread([o.busy_cores for o in runs], '.2f')} cores"
            f" | {max(o.most_acks for o in runs)} / {max(o.missing for o in runs)} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", metavar="REV", required=True)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--postgresql", action="store_true", help="on PostgreSQL, not SQLite")
    parser.add_argument("--no-record", action="store_true", help="print only")
    args = parser.parse_args()
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="mb-cpu-") as tmp:
        root = Path(tmp)
        trees = [Tree(f"before ({args.before})", compiled(copy_revision(args.before,
                                                                         root / "before"))),
                 Tree("after (this tree)", compiled(copy_working_tree(root / "after")))]
        for i in range(args.rounds):
            for tree in trees if i % 2 == 0 else trees[::-1]:
                with database(args.postgresql) as url:
                    outcome = backlog(root / f"run{i}-{trees.index(tree)}", tree.label,
                                      args.messages, plain_mail, source=tree.source,
                                      store_url=url)
                tree.outcomes.append(outcome)
                print(f"round {i + 1}, {tree.label}: {outcome.count / outcome.seconds:.0f} "
                      f"acks/s, {sum(outcome.cpu_s) / outcome.count * 1000:.2f} ms CPU per "
                      f"message, start-up {sum(outcome.start_cpu_s):.2f} s", flush=True)
    load.append(os.getloadavg()[0])
    text = table(trees) + (f"\nLoad average (1 min) {load[0]:.1f} at the start, {load[1]:.1f} at "
                           f"the end, on {os.cpu_count()} CPUs shared with other work.\n")
    print("\n" + text)
    if not args.no_record:
        backend = "PostgreSQL" if args.postgresql else "SQLite"
        command = (f"python benchmarks/daemon_cpu.py --before {args.before} --messages "
                   f"{args.messages} --rounds {args.rounds}"
                   + (" --postgresql" if args.postgresql else ""))
        append(f"daemon CPU on {backend}, before and after", command,
               f"The one-instance {backend} backlog of backlog.py, the trees alternating; "
               "medians (min–max).\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
