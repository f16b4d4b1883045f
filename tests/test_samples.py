"""The sample corpus in tests/samples/ states its own expectations; replay must meet them.

Every ``*.eml`` file there has an entry in ``expected.json``: the action, the rule that
decides, and the thread relation ("new" for a message that starts a thread, the file name
of the thread's first message for a follow-up or for a duplicate copy of a message in a
thread, null otherwise). One test replays the whole
folder, in file-name order, through the real code (``mailbridge.cli.replay.replay``) with each
message's own Date header as its time, as fail2ban's ``samplestestcase.py`` does for its
annotated logs. Hostile input that would be too large to commit is generated at test time.
"""

from __future__ import annotations

import base64
import io
import json
import random
import re
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailbridge.cli.replay import replay
from mailbridge.config import Config, load_config
from mailbridge.mail.parse import parse_message

SAMPLES = Path(__file__).parent / "samples"
EXPECTED_FILE = SAMPLES / "expected.json"
CONFIG_FILE = SAMPLES / "mailbridge.toml"

RULES = frozenset({
    "new_thread", "no_sender", "null_return_path", "duplicate", "auto_submitted", "loop",
    "bounce", "list", "bulk", "auto_reply", "robot_sender", "bounce_text", "challenge",
    "calendar_reply", "spam", "not_addressed",
    "follow_up", "sender_cap", "global_cap",
})

MiB = 1024 * 1024
BIG_ATTACHMENT_BYTES = 20 * MiB
"""Size of the base64 text of the generated attachment."""
PEAK_BOUND_BIG = 64 * MiB
"""Peak traced memory allowed while parsing the 20 MB message.

Measured at about 35 MiB with Python 3.11: parsing reads at most the first 4 MiB of the
message (``MAX_PARSE_BYTES``) and its peak grows with that, about 9 bytes per byte read.
Parsing the whole message would peak near 190 MiB.
"""
PEAK_BOUND_HEADERS = 48 * MiB
"""Peak traced memory allowed while parsing 10,000 Received headers (about 1.6 MB).

Measured at about 19 MiB with Python 3.11.
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    return load_config(CONFIG_FILE)


def expectations() -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = json.loads(EXPECTED_FILE.read_text(encoding="utf-8"))
    return data


def sample_names() -> list[str]:
    return sorted(p.name for p in SAMPLES.glob("*.eml"))


def replay_lines(config: Config, paths: list[Path]) -> list[dict[str, Any]]:
    out = io.StringIO()
    replay(config, paths, now=None, out=out, json_lines=True)
    rows = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    # The folder's expected.json and mailbridge.toml are read too, and are not mail.
    others = [Path(row["source"]).name for row in rows if row.get("rule") == "not_email"]
    assert set(others) <= {EXPECTED_FILE.name, CONFIG_FILE.name}, others
    return [row for row in rows if row.get("type") == "message" and row["rule"] != "not_email"]


def observed(rows: list[dict[str, Any]]) -> dict[str, tuple[str, str, str | None, str]]:
    """(action, rule, thread relation, reason) per file name, threads named by file."""
    started: dict[str, str] = {}
    result: dict[str, tuple[str, str, str | None, str]] = {}
    for row in rows:
        name = Path(row["source"]).name
        thread = row.get("thread")
        if row["action"] == "acknowledge" and thread:
            started[thread] = name
            relation: str | None = "new"
        elif thread is None:
            relation = None
        else:
            relation = started.get(thread, f"<unknown thread {thread}>")
        result[name] = (row["action"], row["rule"], relation, row.get("reason") or "")
    return result


def mismatch_table(problems: list[tuple[str, str, str, str]]) -> str:
    header = ("file", "expected", "got", "reason")
    widths = [max(len(row[i]) for row in [header, *problems]) for i in range(3)]
    lines = ["  ".join(cell.ljust(widths[i]) if i < 3 else cell
                       for i, cell in enumerate(row)) for row in [header, *problems]]
    return "\n".join(lines)


def describe(action: str, rule: str, thread: str | None) -> str:
    return f"{action}/{rule}/thread={thread}"


# --- the corpus itself ------------------------------------------------------------------


def test_every_sample_has_an_expectation_and_every_expectation_a_sample() -> None:
    """expected.json and the .eml files in tests/samples/ name the same messages."""
    names, expected = set(sample_names()), set(expectations())
    assert names == expected, (
        f"samples without expectation: {sorted(names - expected)}; "
        f"expectations without sample: {sorted(expected - names)}")
    assert 35 <= len(names) <= 50


def test_expectations_are_consistent() -> None:
    """Each expectation names a known rule and a thread relation that fits it."""
    expected = expectations()
    order = sorted(expected)
    for name, entry in expected.items():
        assert set(entry) == {"action", "rule", "thread", "why"}, name
        assert entry["rule"] in RULES, name
        assert entry["why"].strip(), name
        acknowledged = entry["rule"] == "new_thread"
        assert entry["action"] == ("acknowledge" if acknowledged else "ignore"), name
        if acknowledged:
            assert entry["thread"] == "new", name
        elif entry["rule"] == "follow_up" or (entry["rule"] == "duplicate"
                                              and entry["thread"] is not None):
            # A duplicate copy is filed under its original's thread, if that has one.
            starter = entry["thread"]
            assert starter in expected, name
            assert expected[starter]["thread"] == "new", name
            assert order.index(starter) < order.index(name), name
        else:
            assert entry["thread"] is None, name


def test_samples_stay_small() -> None:
    """Committed samples are a few KB each; big hostile input is generated at test time."""
    for path in SAMPLES.glob("*.eml"):
        assert path.stat().st_size < 16 * 1024, path.name


# --- the decisions ----------------------------------------------------------------------


def test_replay_decides_every_sample_as_expected(config: Config) -> None:
    """Replaying the folder gives each message the expected action, rule and thread."""
    rows = replay_lines(config, [SAMPLES])
    got = observed(rows)
    expected = expectations()
    problems: list[tuple[str, str, str, str]] = []
    for name in sorted(set(expected) | set(got)):
        want = expected.get(name)
        have = got.get(name)
        if want is None or have is None:
            problems.append((name, "(no expectation)" if want is None else
                             describe(want["action"], want["rule"], want["thread"]),
                             "(not replayed)" if have is None else
                             describe(*have[:3]), "" if have is None else have[3]))
            continue
        if (want["action"], want["rule"], want["thread"]) != have[:3]:
            problems.append((name, describe(want["action"], want["rule"], want["thread"]),
                             describe(*have[:3]), have[3]))
    assert not problems, (f"{len(problems)} of {len(expected)} samples decided differently:\n"
                          + mismatch_table(problems))
    assert len(rows) == len(sample_names()), "one line per .eml file"


def test_every_decision_has_a_reason(config: Config) -> None:
    """Every replayed message is recorded with a known rule and a non-empty reason."""
    for row in replay_lines(config, [SAMPLES]):
        assert row["action"] in ("acknowledge", "ignore"), row
        assert row["rule"] in RULES, row
        assert (row.get("reason") or "").strip(), row


_TEXT_LINE = re.compile(r"  (acknowledge|ignore)  ([a-z_]+): (\S.*?)(?:  thread=|$)")


def test_text_replay_prints_rule_and_reason_per_message(config: Config) -> None:
    """Text mode prints one line per message with its source, rule name and reason."""
    rows = replay_lines(config, [SAMPLES])
    out = io.StringIO()
    count = replay(config, [SAMPLES], now=None, out=out, json_lines=False)
    # Message lines start with their source; a summary may follow them.
    lines = [line for line in out.getvalue().splitlines() if line.startswith(str(SAMPLES))
             and "  not_email: " not in line]
    assert count == len(rows) == len(lines) == len(sample_names())
    for line, row, name in zip(lines, rows, sample_names(), strict=True):
        assert name in line, line
        match = _TEXT_LINE.search(line)
        assert match, f"no 'action  rule: reason' in {line!r}"
        action, rule, reason = match.groups()
        assert (action, rule) == (row["action"], row["rule"]), line
        assert rule in RULES and reason.strip(), line


# --- bounded cost of hostile input ------------------------------------------------------


def big_attachment_message() -> bytes:
    """A person's question with a 20 MB base64 attachment (deterministic content)."""
    raw = random.Random(3834).randbytes(BIG_ATTACHMENT_BYTES * 3 // 4)
    encoded = base64.encodebytes(raw)  # 76-character lines
    head = (
        b"Return-Path: <olga.ivanova@transportgruppe.example>\r\n"
        b"Delivered-To: support@example.com\r\n"
        b"From: Olga Ivanova <olga.ivanova@transportgruppe.example>\r\n"
        b"To: support@example.com\r\n"
        b"Subject: Full database dump for the import problem\r\n"
        b"Date: Mon, 23 Nov 2026 09:30:00 +0100\r\n"
        b"Message-ID: <big-dump-1@transportgruppe.example>\r\n"
        b"MIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="----=_Part_0_17311.1795422600000"\r\n'
        b"\r\n"
        b"------=_Part_0_17311.1795422600000\r\n"
        b"Content-Type: text/plain; charset=UTF-8\r\n"
        b"\r\n"
        b"Hello, the dump you asked for is attached.\r\n"
        b"------=_Part_0_17311.1795422600000\r\n"
        b'Content-Type: application/octet-stream; name="dump.sql.gz"\r\n'
        b'Content-Disposition: attachment; filename="dump.sql.gz"\r\n'
        b"Content-Transfer-Encoding: base64\r\n"
        b"\r\n"
    )
    tail = b"\r\n------=_Part_0_17311.1795422600000--\r\n"
    return head + encoded.replace(b"\n", b"\r\n") + tail


def many_received_message(count: int = 10_000) -> bytes:
    """A person's question behind `count` Received headers."""
    hops = b"".join(
        f"Received: from relay{i}.hops.example (relay{i}.hops.example [192.0.2.{i % 250}])"
        f"\r\n\tby relay{i + 1}.hops.example (Postfix) with ESMTP id {i:012X}\r\n"
        f"\tfor <support@example.com>; Mon, 23 Nov 2026 10:00:00 +0100 (CET)\r\n".encode()
        for i in range(count)
    )
    return (
        b"Return-Path: <pat.loop@hops.example>\r\n"
        b"Delivered-To: support@example.com\r\n" + hops +
        b"From: Pat Loop <pat.loop@hops.example>\r\n"
        b"To: support@example.com\r\n"
        b"Subject: Did this arrive?\r\n"
        b"Date: Mon, 23 Nov 2026 10:00:00 +0100\r\n"
        b"Message-ID: <many-hops-1@hops.example>\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n"
        b"\r\n"
        b"Just checking.\r\n"
    )


def traced_peak(raw: bytes) -> tuple[int, Any]:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        message = parse_message(raw)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, message


@pytest.fixture
def hostile_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "hostile"
    folder.mkdir()
    (folder / "01-twenty-megabyte-attachment.eml").write_bytes(big_attachment_message())
    (folder / "02-ten-thousand-received-headers.eml").write_bytes(many_received_message())
    yield folder


def test_big_attachment_parses_in_bounded_memory(hostile_dir: Path) -> None:
    """A 20 MB attachment is not decoded or copied whole: parsing stays far below its size."""
    raw = (hostile_dir / "01-twenty-megabyte-attachment.eml").read_bytes()
    assert len(raw) > BIG_ATTACHMENT_BYTES
    peak, message = traced_peak(raw)
    assert message.size == len(raw)
    assert message.author is not None
    assert message.author.addr == "olga.ivanova@transportgruppe.example"
    assert "dump you asked for" in message.text
    assert peak < PEAK_BOUND_BIG, f"peak {peak / MiB:.1f} MiB"


def test_many_received_headers_parse_in_bounded_memory(hostile_dir: Path) -> None:
    """10,000 Received headers are read with a cap, noted as a defect, in bounded memory."""
    raw = (hostile_dir / "02-ten-thousand-received-headers.eml").read_bytes()
    peak, message = traced_peak(raw)
    assert message.author is not None
    assert message.author.addr == "pat.loop@hops.example"
    assert message.subject == "Did this arrive?"
    assert message.defects, "the header cap should be noted"
    assert peak < PEAK_BOUND_HEADERS, f"peak {peak / MiB:.1f} MiB"


def test_hostile_big_messages_are_recorded_with_a_decision(config: Config,
                                                           hostile_dir: Path) -> None:
    """Replay records both oversized messages with an action, a known rule and a reason."""
    rows = replay_lines(config, [hostile_dir])
    names = [Path(row["source"]).name for row in rows]
    assert names == sorted(p.name for p in hostile_dir.glob("*.eml"))
    for row in rows:
        assert row["action"] in ("acknowledge", "ignore"), row
        assert row["rule"] in RULES, row
        assert (row.get("reason") or "").strip(), row
    # A big attachment changes nothing about who wrote it: a person's new question.
    assert (rows[0]["action"], rows[0]["rule"]) == ("acknowledge", "new_thread"), rows[0]
    # 10,000 hops is a mail loop (RFC 5321 section 6.3), whoever it claims to be from.
    assert (rows[1]["action"], rows[1]["rule"]) == ("ignore", "loop"), rows[1]
