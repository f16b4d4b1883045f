"""CPU of the parts of one acknowledgement outside the store, in process: a revision against
this tree.

Run: `.venv/bin/python benchmarks/ack_parts.py --before REV [--repeats R] [--no-record]`

What the daemon does for each new customer outside the store, timed alone with the CPU clock
(best of R repeats of 1,000, the trees alternating in child processes, so that a shared
machine's load inflates neither): parsing a fetched message the way the IMAP watcher does
(`parse_parts` on its header block and text, with the parts from BODYSTRUCTURE), the robot
rules' reading of its words (`core.robots.wording`), and rendering the acknowledgement
(`Renderer.render_ack`: templates, format=flowed, MIME). Also the CPU of importing what
`mailbridge run` imports and building its `Renderer` (a fresh interpreter each time, its
modules compiled to bytecode beforehand, as an installed package's are). The end-to-end figure
is `benchmarks/daemon_cpu.py`'s; on a loaded machine its noise can hide a few percent that
these show. Appends the table, with date, machine and command, to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results import append

N = 1000
PARTS = ("parse", "wording", "render")


def measure(repeats: int) -> dict[str, float]:
    """In a child run in the tree under test: µs per call of each part."""
    sys.path.insert(0, os.getcwd())  # before this tree's: nothing of mailbridge is loaded yet
    import dataclasses
    import inspect
    import time
    from datetime import UTC, datetime

    import mailbridge
    from mailbridge.core import robots
    from mailbridge.mail.bodystructure import Structure
    from mailbridge.mail.parse import parse_parts
    from mailbridge.mail.render import Renderer
    from mailbridge.mail.samples import samples
    from tests.mails import customer_mail

    assert mailbridge.__file__ is not None and mailbridge.__file__.startswith(os.getcwd())
    now = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    # As IMAP serves them: CRLF lines, BODY[HEADER] with its blank line, BODY[1] (TEXT).
    split = [customer_mail(100000 + n, addr=f"c{n}@example.org").replace(b"\n", b"\r\n")
             .partition(b"\r\n\r\n") for n in range(N)]
    given = "structure" in inspect.signature(parse_parts).parameters

    def parse(i: int) -> object:
        head, blank, body = split[i]
        size, known = len(head) + len(blank) + len(body), {
            "transfer_encoding": "7bit", "charset": "utf-8", "subtype": "plain"}
        if given:
            return parse_parts(head + blank, body, size=size, structure=Structure(), **known)
        message = parse_parts(head + blank, body, size=size, **known)
        return dataclasses.replace(message, parts=(), calendar_method="")  # as the watcher did

    messages = [parse(i) for i in range(N)]
    sample = samples(now)
    ack = dataclasses.replace(sample.ack, agent=dataclasses.replace(sample.ack.agent,
                                                                    photo=None))
    renderer = Renderer(None)
    work = {
        "parse": parse,
        "wording": lambda i: robots.wording(messages[i], in_thread=False),
        "render": lambda i: renderer.render_ack(ack, sample.original, now=now, date=now,
                                                message_id=f"<{i}.ack@example.com>"),
    }
    best = {}
    for name, run in work.items():
        times = []
        for _ in range(repeats):
            started = time.process_time()
            for i in range(N):
                run(i)
            times.append((time.process_time() - started) / N * 1e6)
        best[name] = min(times)
    return best


def start_cpu(tree: Path) -> float:
    """CPU seconds of a fresh interpreter importing what `run` imports and its Renderer."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-c", "import mailbridge.cli.run, mailbridge.daemon.service;"
                    "from mailbridge.mail.render import Renderer; Renderer(None)"],
                   cwd=tree, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def parts_of(tree: Path, repeats: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", str(repeats)], cwd=tree,
                         check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", metavar="REV")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return 0
    if not args.before:
        parser.error("--before REV is needed")
    from benchmarks.daemon_cpu import compiled, copy_revision, copy_working_tree

    results: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    with tempfile.TemporaryDirectory(prefix="mb-parts-") as tmp:
        trees = {"before": compiled(copy_revision(args.before, Path(tmp) / "before")),
                 "after": compiled(copy_working_tree(Path(tmp) / "after"))}
        for i in range(args.rounds):
            for label in ("before", "after") if i % 2 == 0 else ("after", "before"):
                found = parts_of(trees[label], args.repeats)
                found["start"] = start_cpu(trees[label]) * 1000
                for name, value in found.items():
                    results[label].setdefault(name, []).append(value)
    lines = ["| part | before (" + args.before + ") | after (this tree) | change |",
             "|---|---|---|---|"]
    for name, unit in [*((p, "µs") for p in PARTS), ("start", "ms")]:
        was, now = min(results["before"][name]), min(results["after"][name])
        label = "import and Renderer, fresh interpreter" if name == "start" else name
        lines.append(f"| {label} | {was:.0f} {unit} | {now:.0f} {unit} | "
                     f"{(now - was) / was:+.0%} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_record:
        command = (f"python benchmarks/ack_parts.py --before {args.before} --repeats "
                   f"{args.repeats} --rounds {args.rounds}")
        append("acknowledgement parts outside the store", command,
               f"CPU per call, best of {args.repeats} repeats of {N} in each of {args.rounds} "
               "rounds, the trees alternating (start-up: best of the rounds).\n\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
