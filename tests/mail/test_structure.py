"""The parts of a message, read from the file and from the IMAP server's BODYSTRUCTURE alike,
so the robot rules judge mail the watcher never downloads as they judge a saved file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from imapclient.response_parser import parse_fetch_response
from prometheus_client import CollectorRegistry

from mailbridge.clock import SystemClock
from mailbridge.config import load_config
from mailbridge.core.rules import RuleContext, RulePolicy, evaluate
from mailbridge.io.imap_watcher import Fetched, ImapWatcher
from mailbridge.mail.parse import parse_message
from mailbridge.mail.structure import Structure, imap_parts
from mailbridge.metrics.families import Metrics
from mailbridge.store.db import Store
from mailbridge.store.engine import engine_for
from mailbridge.store.migrations import migrate
from tests.daemon import write_config
from tests.mail.robot_samples import NOTES_OOO, POSTFIX_DSN, ROOM_ACCEPT, SAMPLES
from tests.servers import Dovecot, SmtpPeer, wait_for

POLICY = RulePolicy(support_addresses=frozenset({"support@example.com"}), reply_to="reply-to")


def test_a_calendar_reply_has_its_parts_and_method() -> None:
    """An Exchange room's acceptance: three alternatives, the calendar one a REPLY."""
    message = parse_message(ROOM_ACCEPT)
    assert message.parts == ("text/plain", "text/html", "text/calendar")
    assert message.calendar_method == "reply"


def test_a_report_lists_its_parts_without_opening_attached_messages() -> None:
    """A DSN's report parts are listed; an attached message's own parts are not."""
    assert parse_message(POSTFIX_DSN).parts == (
        "text/plain", "message/delivery-status", "text/rfc822-headers")
    forwarded = parse_message(SAMPLES["person-forwarding-a-bounce"][0])
    assert forwarded.parts == ("text/plain", "message/rfc822")


def test_a_single_part_message_has_no_parts() -> None:
    """A plain message is its own top level; nothing below it."""
    assert parse_message(NOTES_OOO).parts == ()


def test_the_calendar_method_is_read_from_the_calendar_when_the_parameter_is_missing() -> None:
    """Some clients leave out Content-Type's method; the METHOD line says it."""
    raw = (b"From: a@example.org\nSubject: Accepted: x\nMIME-Version: 1.0\n"
           b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/calendar\n\n"
           b"BEGIN:VCALENDAR\r\nMETHOD:COUNTER\r\nEND:VCALENDAR\r\n--b--\n")
    assert parse_message(raw).calendar_method == "counter"


@pytest.mark.parametrize("odd", [None, (), [b"x"], (b"text",), ([], b"mixed"), 7])
def test_odd_bodystructures_give_no_parts(odd: object) -> None:
    """A BODYSTRUCTURE that makes no sense gives an empty structure, never an error."""
    assert imap_parts(odd) == Structure()


def test_a_bodystructure_from_imapclient_gives_the_parts() -> None:
    """RFC 3501's example of a multipart, as imapclient hands it over."""
    text = (b'(("TEXT" "PLAIN" ("CHARSET" "US-ASCII") NIL NIL "7BIT" 1152 23)'
            b'("TEXT" "CALENDAR" ("CHARSET" "UTF-8" "METHOD" "REPLY") NIL NIL "BASE64" 4554 73)'
            b' "ALTERNATIVE")')
    parsed = parse_fetch_response([b"1 (UID 7 BODYSTRUCTURE " + text + b")"])
    assert imap_parts(parsed[7][b"BODYSTRUCTURE"]) == Structure(
        ("text/plain", "text/calendar"), "reply")


def test_the_watcher_gives_the_rules_the_same_parts_as_the_file(
        tmp_path: Path, dovecot: Dovecot) -> None:
    """Mail fetched by the watcher (headers, first text part, BODYSTRUCTURE) is decided as
    the same mail parsed whole: a room's calendar reply, a DSN, an out-of-office, and a
    person forwarding a bounce as an attachment."""
    config = load_config(write_config(tmp_path / "mb", dovecot, SmtpPeer()))
    assert config.imap is not None
    store = Store(engine_for(f"sqlite:///{tmp_path}/store.sqlite3"))
    migrate(store.engine)
    seen: list[Fetched] = []

    def deliver(batch: Sequence[Fetched]) -> None:
        seen.extend(batch)

    watcher = ImapWatcher(config.imap, mailbox="INBOX", store=store, deliver=deliver,
                          clock=SystemClock(), metrics=Metrics(CollectorRegistry(), ["INBOX"]))
    names = list(SAMPLES)
    watcher.start()
    try:
        wait_for(lambda: watcher.connected, timeout=15, message="the watcher never logged in")
        for name in names:
            dovecot.append(SAMPLES[name][0])
        wait_for(lambda: len(seen) == len(names), timeout=15,
                 message="the watcher missed mail")
    finally:
        watcher.stop()
    context = RuleContext(POLICY)
    for name, fetched in zip(names, seen, strict=True):
        raw, rule = SAMPLES[name]
        whole = parse_message(raw)
        assert fetched.message is not None
        assert (fetched.message.parts, fetched.message.calendar_method) == (
            whole.parts, whole.calendar_method), name
        assert evaluate(fetched.message, context).rule == rule, name
        assert evaluate(whole, context).rule == rule, name
