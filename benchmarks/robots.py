"""Robots acknowledged and people missed, over real mail nobody here wrote.

Run: `.venv/bin/python benchmarks/robots.py [--before REV] [--no-record]`

Decides every labelled message of the shared corpora (`../shared/corpora`: bounces, feedback
reports and auto-replies of the sisimai project, ordinary mail of the mail library's
fixtures) as the daemon decides a new message, with only the robot rules deciding
(`tests/corpora.py`). Prints, per class, how many were judged and decided wrongly, every
miss with its rule and reason, and the labels this project disputes; appends the figures to
benchmarks/RESULTS.md. With `--before REV` the rules of that git revision judge the same
mail too, for a before/after table. Targets (issue 16): 0 robots acknowledged, at least
98 % of people acknowledged.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if os.environ.get("MAILBRIDGE_SOURCE"):  # judge with another revision's package
    sys.path.insert(0, os.environ["MAILBRIDGE_SOURCE"])
sys.path.insert(1 if os.environ.get("MAILBRIDGE_SOURCE") else 0, str(REPO))

from benchmarks.results import append  # noqa: E402
from tests.corpora import (  # noqa: E402
    DISPUTED,
    Judged,
    Score,
    corpora_root,
    corpus_policy,
    judge,
    report,
    score,
)


def judged_here(root: Path) -> list[Judged]:
    with tempfile.TemporaryDirectory() as state:
        return judge(root, corpus_policy(Path(state)))


def judged_at(revision: str, root: Path) -> list[Judged]:
    """The decisions of `revision`'s package, in a child process that imports it."""
    with tempfile.TemporaryDirectory() as tree:
        # Only the package and its templates: the tests and benchmarks stay this tree's.
        archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "mailbridge",
                                  "templates"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        env = {**os.environ, "MAILBRIDGE_SOURCE": tree, "MAILBRIDGE_CORPORA": str(root)}
        out = subprocess.run([sys.executable, __file__, "--json"], env=env, check=True,
                             capture_output=True, text=True).stdout
    return [Judged(**item) for item in json.loads(out)]


def row(name: str, result: Score, judged: list[Judged]) -> str:
    labelled = [j for j in judged if j.label in ("robot", "human")]
    robots_wrong = sum(j.label == "robot" and j.action == "acknowledge" for j in labelled)
    humans_wrong = sum(j.label == "human" and j.action != "acknowledge" for j in labelled)
    humans = sum(j.label == "human" for j in labelled)
    return (f"| {name} | {robots_wrong} of {len(labelled) - humans} | "
            f"{humans_wrong} of {humans} | {len(result.robots_acknowledged)} of "
            f"{result.judged['robot']} | {len(result.humans_missed)} of "
            f"{result.judged['human']} ({result.human_share:.1%} acknowledged) |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", metavar="REV", help="also judge with this git revision")
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    root = corpora_root()
    if root is None:
        print("the shared corpora are not beside this repository (../shared/corpora); "
              "set MAILBRIDGE_CORPORA", file=sys.stderr)
        return 66
    if args.json:
        print(json.dumps([asdict(j) for j in judged_here(root)]))
        return 0
    runs = []
    if args.before:
        runs.append((args.before, judged_at(args.before, root)))
    runs.append(("this tree", judged_here(root)))
    table = ["| rules | robots acknowledged, as labelled | people missed, as labelled | "
             "robots acknowledged, disputed set aside | people missed, disputed set aside |",
             "|---|---|---|---|---|"]
    table += [row(name, score(judged), judged) for name, judged in runs]
    body = ("Every labelled message of the shared corpora, decided as a new message with only "
            f"the robot rules deciding; {len(DISPUTED)} labels are disputed (listed below) "
            "and set aside in the right-hand columns.\n\n" + "\n".join(table) + "\n\n"
            + report(score(runs[-1][1])))
    print(body)
    if not args.no_record:
        command = "python benchmarks/robots.py" + (f" --before {args.before}"
                                                   if args.before else "")
        append("robots", command, body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
