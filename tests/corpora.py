"""Real-world mail nobody here wrote, judged by mailbridge's rules: what the corpus test and
`benchmarks/robots.py` share.

The corpora live beside the repository in ``../shared/corpora`` (each folder with its
licence, labels in ``labels/<folder>.txt``: ``path<TAB>robot|human|other``); see its
README. `corpora_root` finds them from this repository or, in a git worktree, from the main
working tree; ``$MAILBRIDGE_CORPORA`` names another place.

`judge` decides every labelled message as the daemon and ``mailbridge replay`` do:
``parse_message`` and then ``rules.evaluate`` with the `RulePolicy` an `Ingestor` builds from
a configuration where only the robot rules decide (``reply_to = "reply-to"``,
``require_addressed = false``, caps out of the way; `corpus_config`), for a message that
starts no known thread. An mbox (the ``mailbox/`` folder) is read message by message; every
other file is one message.

`DISPUTED` lists labels this project disagrees with, each with the reason; they are scored
as ``other`` (not scored) and reported, never tuned to.
"""

from __future__ import annotations

import mailbox
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mailbridge.clock import SystemClock
from mailbridge.config import load_config
from mailbridge.core import rules
from mailbridge.daemon.ingest import Ingestor
from mailbridge.mail.parse import parse_message
from mailbridge.store.db import Store

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("robot", "human", "other")
CONFIG = """\
# Only the robot rules decide: every message is judged on its content.
[support]
address = "support@example.com"
name = "Example Support"
timezone = "UTC"

[[agents]]
name = "Dana Whitfield"
email = "dana@example.com"

[sla]
first_response = "4h"

[rules]
reply_to = "reply-to"
require_addressed = false
sender_cap = 1000000
global_cap_per_minute = 1000000
"""
DISPUTED = {
    "mikel-mail-fixtures/emails/sample_output_multipart":
        "human: an empty file, not a message",
    "mikel-mail-fixtures/emails/error_emails/bad_encoded_subject.eml":
        "human: a Subject and a body without any From: nobody to answer",
    "mikel-mail-fixtures/emails/error_emails/bad_date_header.eml":
        "human: spam marked Precedence: junk, which RFC 3834 says not to answer",
    "mikel-mail-fixtures/emails/error_emails/bad_date_header2.eml":
        "human: a shop's newsletter sent in bulk, its envelope sender a bounce handler "
        "(bounces@)",
    "mikel-mail-fixtures/emails/error_emails/encoding_madness.eml":
        "human: a CRM's lead notification from no-reply@, its Reply-To an empty address",
    "mikel-mail-fixtures/emails/plain_emails/raw_email_trailing_dot.eml":
        "human: a forum post relayed from noreply@ to noreply@: no address of a person",
    "mikel-mail-fixtures/emails/error_emails/content_transfer_encoding_x_uuencode.eml":
        "human: a person's post delivered by a LISTSERV list (Sender the list, envelope "
        "owner-...): list mail, not answered (RFC 3834 section 2, Pigeonhole)",
    "mikel-mail-fixtures/emails/error_emails/empty_in_reply_to.eml":
        "human: a person's mail carrying List-Id, which RFC 5230 section 5 says not to answer",
    "sisimai-set-of-emails/mailbox/mbox-0#36":
        "robot: message 36 of the mbox is a person forwarding a bounce ('Fwd: Returned mail', "
        "'Begin forwarded message:'); the same message split out, maildir/err/make-test-36.eml, "
        "is labelled other",
}


@dataclass(frozen=True)
class Judged:
    """One labelled message and the decision on it."""

    source: str
    """``folder/path``, with ``#n`` (from 1) for a message of an mbox."""
    label: str
    action: str
    rule: str
    reason: str
    subject: str


@dataclass
class Score:
    """Per class: how many were judged, and the ones decided wrongly."""

    judged: Counter[str] = field(default_factory=Counter)
    robots_acknowledged: list[Judged] = field(default_factory=list)
    humans_missed: list[Judged] = field(default_factory=list)
    disputed: list[Judged] = field(default_factory=list)
    rules: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def human_share(self) -> float:
        humans = self.judged["human"]
        return (humans - len(self.humans_missed)) / humans if humans else 1.0


def corpora_root() -> Path | None:
    """The shared corpora beside this repository (or its main working tree), or None."""
    if os.environ.get("MAILBRIDGE_CORPORA"):
        return Path(os.environ["MAILBRIDGE_CORPORA"])
    candidates = [REPO.parent / "shared" / "corpora"]
    dot_git = REPO / ".git"
    if dot_git.is_file():  # a worktree: .git names its folder inside the main .git
        gitdir = Path(dot_git.read_text(encoding="utf-8").split(":", 1)[1].strip())
        common = gitdir / "commondir"
        main_git = (gitdir / common.read_text(encoding="utf-8").strip()).resolve() \
            if common.is_file() else gitdir.parents[1]
        candidates.append(main_git.parent.parent / "shared" / "corpora")
    return next((c for c in candidates if (c / "labels").is_dir()), None)


def corpus_policy(state_dir: Path) -> rules.RulePolicy:
    """The rule policy the daemon builds from `CONFIG` (only the robot rules decide)."""
    path = state_dir / "mailbridge.toml"
    path.write_text(CONFIG, encoding="utf-8")
    config = load_config(path, environ={"STATE_DIRECTORY": str(state_dir)})
    store = Store.open("sqlite://")
    try:
        return Ingestor.create(config, store, SystemClock()).policy
    finally:
        store.close()


def labelled(root: Path) -> Iterator[tuple[str, str, bytes]]:
    """(source, label, raw message) of every labelled message under `root`."""
    for labels in sorted((root / "labels").glob("*.txt")):
        folder = root / labels.stem
        for line in labels.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            path, label = line.split("\t")
            file = folder / path
            if path.startswith("mailbox/"):
                box = mailbox.mbox(file, create=False)
                for index, key in enumerate(box.keys(), start=1):
                    yield f"{labels.stem}/{path}#{index}", label, box.get_bytes(key)
            else:
                yield f"{labels.stem}/{path}", label, file.read_bytes()


def judge(root: Path, policy: rules.RulePolicy) -> list[Judged]:
    """The decision on every labelled message, as for a new message in the daemon."""
    context = rules.RuleContext(policy=policy)
    judged = []
    for source, label, raw in labelled(root):
        message = parse_message(raw)
        verdict = rules.evaluate(message, context)
        judged.append(Judged(source, label, "acknowledge" if verdict.reply else "ignore",
                             verdict.rule, verdict.detail, message.subject))
    return judged


def score(judged: list[Judged]) -> Score:
    """Robots acknowledged and humans missed, with the disputed labels set apart."""
    result = Score()
    for item in judged:
        if item.source in DISPUTED:
            result.disputed.append(item)
            continue
        result.judged[item.label] += 1
        result.rules[item.label, item.rule] += 1
        if item.label == "robot" and item.action == "acknowledge":
            result.robots_acknowledged.append(item)
        elif item.label == "human" and item.action != "acknowledge":
            result.humans_missed.append(item)
    return result


def report(result: Score) -> str:
    """The score as Markdown: totals per class, then every miss with its rule and reason."""
    robots, humans = result.judged["robot"], result.judged["human"]
    lines = [
        "| class | judged | wrong | share right |", "|---|---|---|---|",
        f"| robot | {robots} | {len(result.robots_acknowledged)} acknowledged | "
        f"{(robots - len(result.robots_acknowledged)) / max(robots, 1):.1%} |",
        f"| human | {humans} | {len(result.humans_missed)} missed | "
        f"{result.human_share:.1%} |", ""]
    for title, items in (("Robots acknowledged", result.robots_acknowledged),
                         ("Humans missed", result.humans_missed)):
        lines.append(f"{title}: {len(items) or 'none'}")
        lines += [f"- `{i.source}` {i.rule}: {i.reason} (subject {i.subject[:60]!r})"
                  for i in items]
        lines.append("")
    lines.append(f"Disputed labels, not scored: {len(result.disputed)}")
    lines += [f"- `{i.source}` {DISPUTED[i.source]}; decided {i.action} ({i.rule})"
              for i in result.disputed]
    return "\n".join(lines) + "\n"
