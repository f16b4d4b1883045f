"""`mailbridge replay`: run the daemon's core over saved mail, sending nothing.

Public API: `iter_sources(paths)` and its `Input` items, `replay(config, paths, now, out,
json_lines, progress)`.

Reads what people export, in the order given: files of any name (.eml, .msg, .txt, none),
folders of them (hidden files aside), Maildirs and mbox files. Mail is recognised by its
content (`mailbridge.mail.exports`): a file is an mbox when it begins with an mbox "From "
line or is named .mbox/.mbx, and splits only at real message boundaries (an .eml never:
it is one message, whatever its body holds); what is clearly
not mail gets a line of its own, rule `not_email`, saying why. Each message goes to the
same `Ingestor` the daemon uses, on a throwaway in-memory store. A message without any
Return-Path field is judged as if its envelope sender were its From address: an export
loses the envelope (an explicit `Return-Path: <>` stays the null sender). One line per
input, as text or JSON; nothing is logged beside it but errors, and no password file is
read (`load_config(..., secrets=False)`): replay logs in nowhere.
"""

from __future__ import annotations

import argparse
import json
import mailbox
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from mailbridge import logs
from mailbridge.clock import SystemClock
from mailbridge.config import Config, load_config
from mailbridge.core.model import InboundMessage
from mailbridge.daemon.deadlines import Deadlines
from mailbridge.daemon.ingest import Ingestor, Outcome, Source
from mailbridge.daemon.opening import Choice
from mailbridge.errors import NoInputError
from mailbridge.mail import exports
from mailbridge.mail.parse import parse_message
from mailbridge.store.db import Store
from mailbridge.store.summaries import ThreadSummary, policy_records, summaries, thread_record

REPLAY_MAILBOX = "replay"
MBOX_SUFFIXES = (".mbox", ".mbx")


@dataclass(frozen=True)
class Input:
    """One thing read: a message's bytes, or why it is not one (`not_mail`)."""

    label: str
    raw: bytes
    not_mail: str | None = None


def iter_sources(paths: Sequence[Path]) -> Iterator[Input]:
    """Every message (or not-mail file) under `paths`, in order."""
    for path in paths:
        if path.is_dir() and all((path / sub).is_dir() for sub in ("cur", "new", "tmp")):
            box = mailbox.Maildir(path, factory=None, create=False)
            for key in sorted(box.keys()):
                yield _judged(f"{path}/{key}", box.get_bytes(key))
        elif path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()
                                and not any(part.startswith(".")
                                            for part in p.relative_to(path).parts)):
                yield from _file(child)
        else:
            yield from _file(path)


def _file(path: Path) -> Iterator[Input]:
    """The messages of one file: one, or each of an mbox's."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        yield Input(str(path), b"", f"cannot be read: {exc.strerror or exc}")
        return
    suffix = path.suffix.lower()
    named = suffix in MBOX_SUFFIXES
    problem = exports.not_mail(data) if not named or not data.strip() else None
    if problem is not None or not (named or exports.is_mbox(data)):
        yield Input(str(path), data, problem)
        return
    # An .eml holds one message, its body unquoted: a "From " line in it (a bounce's inlined
    # original) is text. Only an mbox quotes such lines, so only an mbox splits at them.
    messages = exports.split_mbox(data) if suffix != ".eml" else exports.one_message(data)
    if not messages:
        yield Input(str(path), data, 'empty: an mbox "From " line and nothing else')
        return
    if len(messages) == 1 and not named:  # a single message saved with its "From " line
        yield _judged(str(path), messages[0])
        return
    for index, message in enumerate(messages, start=1):
        yield _judged(f"{path}#{index}", message)


def _judged(label: str, raw: bytes) -> Input:
    return Input(label, raw, exports.not_mail(raw))


def check_paths(paths: Sequence[Path]) -> None:
    """NoInputError naming each path that is not there."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise NoInputError("; ".join(f"replay: no such file or folder: {m}" for m in missing))


def _with_envelope(message: InboundMessage) -> InboundMessage:
    """An export keeps no envelope: without any Return-Path field, the From address is
    taken as the envelope sender. `Return-Path: <>` (return_path "") stays null."""
    if message.return_path is None and message.author is not None:
        return replace(message, return_path=message.author.addr)
    return message


def _not_mail_line(item: Input, json_lines: bool) -> str:
    reason = item.not_mail or ""
    if json_lines:
        return json.dumps({"type": "message", "source": item.label, "message_id": None,
                           "action": "ignore", "rule": "not_email", "reason": reason,
                           "thread": None, "agent": None, "due": None, "to": None,
                           "queue_ahead": None, **_choice_record(None), "defects": []},
                          ensure_ascii=False)
    return f"{item.label}  (not mail)  ignore  not_email: {reason}"


def _line(outcome: Outcome, json_lines: bool, defects: Sequence[str] = ()) -> str:
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
        "queue_ahead": outcome.queue_ahead,
        **_choice_record(outcome.choice),
        "defects": list(defects),
    }
    if json_lines:
        return json.dumps(record, ensure_ascii=False)
    text = (f"{record['source']}  {record['message_id'] or '(no Message-ID)'}  "
            f"{record['action']}  {record['rule']}: {record['reason']}")
    if outcome.thread:
        text += f"  thread={outcome.thread}"
    if outcome.agent:
        text += f"  agent={outcome.agent.name!r}  due={record['due']}"
    if outcome.queue_ahead is not None:
        text += f"  ahead={outcome.queue_ahead}"
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
    """Print one line per message (and per input that is not mail); return how many
    messages were read."""
    check_paths(paths)
    store = Store.open("sqlite://")
    ingestor = Ingestor.create(config, store, SystemClock())
    deadlines = ingestor.deadlines
    count = 0
    latest: datetime | None = None
    try:
        for item in iter_sources(paths):
            if item.not_mail is not None:
                print(_not_mail_line(item, json_lines), file=out, flush=False)
                continue
            count += 1
            label = item.label
            message = _with_envelope(parse_message(item.raw))
            when = now or message.date or datetime.now(UTC)
            latest = when if latest is None else max(latest, when)
            _catch_up(deadlines, when)  # deadlines that passed before this message
            outcome = ingestor.ingest(message, Source(REPLAY_MAILBOX, label=label),
                                      received=when, now=when)
            print(_line(outcome, json_lines, message.defects), file=out, flush=False)
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
    check_paths(args.paths)
    config = load_config(args.config, secrets=False)
    # The report is the output: the deadlines' warnings (a breach per old thread) are not.
    logs.setup("error", stream=sys.stderr)
    replay(config, args.paths, now=args.now, out=sys.stdout, json_lines=args.json,
           progress=progress_stream())
    return 0
