"""`mailbridge replay`: run the daemon's core over saved mail, sending nothing.

Public API: `iter_sources(paths)`, `replay(config, paths, now, out, json_lines, progress)`.

Reads .eml files, folders of them, Maildirs and mbox files, in the order given,
and feeds each message to the same `Ingestor` the daemon uses, on a throwaway
in-memory store. One line per message, as text or JSON.
"""

from __future__ import annotations

import argparse
import json
import mailbox
import sys
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from mailbridge import logs
from mailbridge.clock import SystemClock
from mailbridge.config import Config, load_config
from mailbridge.daemon.deadlines import Deadlines
from mailbridge.daemon.ingest import Choice, Ingestor, Outcome, Source
from mailbridge.errors import ConfigError
from mailbridge.mail.parse import parse_message
from mailbridge.store.db import Store
from mailbridge.store.summaries import ThreadSummary, policy_records, summaries, thread_record

REPLAY_MAILBOX = "replay"


def _is_mbox(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(5) == b"From "


def iter_sources(paths: Sequence[Path]) -> Iterator[tuple[str, bytes]]:
    """(label, raw bytes) for every message under `paths`, in order."""
    for path in paths:
        if path.is_dir() and all((path / sub).is_dir() for sub in ("cur", "new", "tmp")):
            box = mailbox.Maildir(path, factory=None, create=False)
            for key in sorted(box.keys()):
                yield f"{path}/{key}", box.get_bytes(key)
        elif path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()
                                and p.suffix.lower() == ".eml"):
                yield str(child), child.read_bytes()
        elif _is_mbox(path):
            box_ = mailbox.mbox(path, create=False)
            for index, key in enumerate(box_.keys(), start=1):
                yield f"{path}#{index}", box_.get_bytes(key)
        else:
            yield str(path), path.read_bytes()


def check_paths(paths: Sequence[Path]) -> None:
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ConfigError("replay", [f"no such file or folder: {m}" for m in missing])


def _line(outcome: Outcome, json_lines: bool) -> str:
    record: dict[str, Any] = {
        "type": "message",
        "source": outcome.source.describe(),
        "message_id": outcome.message_id,
        "action": "acknowledge" if outcome.verdict.reply else "ignore",
        "rule": outcome.verdict.rule,
        "reason": outcome.verdict.detail,
        "thread": outcome.thread,
        "agent": outcome.agent.name if outcome.agent else None,
        "due": outcome.due.isoformat() if outcome.due else None,
        "to": outcome.ack_to,
        **_choice_record(outcome.choice),
    }
    if json_lines:
        return json.dumps(record, ensure_ascii=False)
    text = (f"{record['source']}  {record['message_id'] or '(no Message-ID)'}  "
            f"{record['action']}  {record['rule']}: {record['reason']}")
    if outcome.thread:
        text += f"  thread={outcome.thread}"
    if outcome.agent:
        text += f"  agent={outcome.agent.name!r}  due={record['due']}"
    if outcome.choice is not None:
        text += f"  ({outcome.choice.assignment.reason})  language={outcome.choice.language}"
        if outcome.choice.faq:
            text += f"  faq={', '.join(repr(s.title) for s in outcome.choice.faq)}"
    return text


def _choice_record(choice: Choice | None) -> dict[str, Any]:
    """How a new thread's agent, language and FAQ articles were chosen; null otherwise."""
    if choice is None:
        return {"assignment": None, "language": None, "faq": []}
    assignment = choice.assignment
    starts = assignment.starts_at.isoformat() if assignment.starts_at else None
    return {
        "assignment": {"rule": assignment.rule, "reason": assignment.reason,
                       "starts_at": starts, "promise": choice.promise.isoformat()},
        "language": {"language": choice.language, "reason": choice.language_reason},
        "faq": [{"title": s.title, "url": s.url, "why": list(s.reasons)} for s in choice.faq],
    }


def replay(config: Config, paths: Sequence[Path], *, now: datetime | None, out: TextIO,
           json_lines: bool, progress: TextIO | None = None) -> int:
    """Print one line per message; return how many were read."""
    check_paths(paths)
    store = Store.open("sqlite://")
    ingestor = Ingestor.create(config, store, SystemClock())
    deadlines = ingestor.deadlines
    count = 0
    latest: datetime | None = None
    try:
        for count, (label, raw) in enumerate(iter_sources(paths), start=1):
            message = parse_message(raw)
            when = now or message.date or datetime.now(UTC)
            latest = when if latest is None else max(latest, when)
            _catch_up(deadlines, when)  # deadlines that passed before this message
            outcome = ingestor.ingest(message, Source(REPLAY_MAILBOX, label=label),
                                      received=when, now=when)
            print(_line(outcome, json_lines), file=out, flush=False)
            if progress is not None and count % 50 == 0:
                print(f"\r{count} messages", end="", file=progress, flush=True)
        if latest is not None:
            _catch_up(deadlines, latest)
        _print_sla(summaries(store), out, json_lines)
    finally:
        store.close()
        out.flush()
        if progress is not None and count >= 50:
            print(f"\r{count} messages", file=progress)
    return count


def _catch_up(deadlines: Deadlines, when: datetime) -> None:
    while deadlines.run_due(when):
        pass


def _print_sla(items: list[ThreadSummary], out: TextIO, json_lines: bool) -> None:
    if json_lines:
        for item in items:
            print(json.dumps(thread_record(item)), file=out)
        for record in policy_records(items):
            print(json.dumps(record), file=out)
        return
    if not items:
        return
    print("\nthread  policy      first response      met    breaches", file=out)
    for item in items:
        took = "-" if item.first_response_seconds is None else \
            f"{item.first_response_seconds / 60:.0f} min"
        met = {True: "yes", False: "no", None: "-"}[item.first_response_met]
        print(f"{item.thread}  {item.policy:<10}  {took:<18}  {met:<5}  "
              f"{', '.join(item.breaches) or '-'}", file=out)
    for record in policy_records(items):
        share = "-" if record["attainment"] is None else f"{record['attainment']:.0%}"
        print(f"policy {record['policy']}: {record['threads']} threads, first response met "
              f"{record['first_response_met']}, missed {record['first_response_missed']}, "
              f"attainment {share}", file=out)


def progress_stream() -> TextIO | None:
    """Progress goes to stderr, and only when a person is watching it."""
    return sys.stderr if sys.stderr.isatty() else None


def command(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    logs.setup("warning", stream=sys.stderr)
    replay(config, args.paths, now=args.now, out=sys.stdout, json_lines=args.json,
           progress=progress_stream())
    return 0
