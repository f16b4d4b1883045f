"""Threading and caps through the real ingest path: parse, core, store (in-memory SQLite)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest

from mailbridge.clock import SystemClock
from mailbridge.config import load_config
from mailbridge.daemon.ingest import Ingestor, Outcome, Source
from mailbridge.mail.parse import parse_message
from mailbridge.store.db import Store
from tests.mails import customer_mail, reply_to

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class Desk:
    """An ingestor on a throwaway store, fed raw mail at chosen times."""

    def __init__(self, ingestor: Ingestor, store: Store) -> None:
        self.ingestor = ingestor
        self.store = store
        self.count = 0

    def feed(self, raw: bytes, at: datetime = T0) -> Outcome:
        self.count += 1
        return self.ingestor.ingest(parse_message(raw), Source("INBOX", 1, self.count),
                                    received=at, now=at)

    def ack(self, outcome: Outcome) -> bytes:
        [item] = [i for i in self.store.outbox() if i.message_id == outcome.ack_message_id]
        return item.body


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    config_file = tmp_path / "mailbridge.toml"
    config_file.write_text(f"""
[support]
address = "support@example.com"
aliases = ["help@example.com"]
name = "Example Support"
[[agents]]
name = "Dana Whitfield"
email = "dana@example.com"
[daemon]
state_dir = "{tmp_path}"
""")
    store = Store.open("sqlite://")
    yield Desk(Ingestor.create(load_config(config_file), store, SystemClock()), store)
    store.close()


def test_a_reply_to_our_ack_joins_its_thread(desk: Desk) -> None:
    """An answer citing our acknowledgement's Message-ID continues that thread."""
    first = desk.feed(customer_mail(1, addr="ana@example.org"))
    ack = message_from_bytes(desk.ack(first), policy=default)
    answer = customer_mail(2, addr="ana@example.org", subject=str(ack["Subject"]),
                           In_Reply_To=str(ack["Message-ID"]))
    outcome = desk.feed(answer, T0 + timedelta(days=3))
    assert (outcome.verdict.rule, outcome.thread) == ("follow_up", first.thread)


def test_the_subject_reference_joins_only_for_the_threads_own_people(desk: Desk) -> None:
    """Our [#REF] in a subject joins the thread for its customer or an agent, not a stranger."""
    first = desk.feed(customer_mail(1, addr="ana@example.org", subject="Refund"))
    subject = f"Re: Refund [#{first.thread}]"
    later = T0 + timedelta(days=10)  # past the same-subject window: only the ref can link
    stranger = desk.feed(customer_mail(2, addr="eve@example.net", subject=subject), later)
    assert stranger.verdict.rule == "new_thread" and stranger.thread != first.thread
    own = desk.feed(customer_mail(3, addr="ana@example.org", subject=subject), later)
    assert (own.verdict.rule, own.thread) == ("follow_up", first.thread)
    assert "thread reference" in own.verdict.detail


def test_same_customer_same_subject_joins_within_the_window(desk: Desk) -> None:
    """'Did you get my mail?' with the same subject opens no second thread."""
    first = desk.feed(customer_mail(1, addr="ana@example.org", subject="Invoice 2291"))
    again = desk.feed(customer_mail(2, addr="ana@example.org", subject="AW: Re: invoice  2291"),
                      T0 + timedelta(days=1))
    assert (again.verdict.rule, again.thread) == ("follow_up", first.thread)
    other = desk.feed(customer_mail(3, addr="bo@example.net", subject="Invoice 2291"),
                      T0 + timedelta(days=1))
    assert other.verdict.rule == "new_thread"
    much_later = desk.feed(customer_mail(4, addr="ana@example.org", subject="Invoice 2291"),
                           T0 + timedelta(days=8))
    assert much_later.verdict.rule == "new_thread"


def test_a_burst_from_one_customer_gets_one_ack(desk: Desk) -> None:
    """Several messages from one customer within seconds get one acknowledgement."""
    outcomes = [desk.feed(customer_mail(n, addr="ana@example.org", subject=f"Part {n}"),
                          T0 + timedelta(seconds=10 * n)) for n in range(3)]
    assert [o.verdict.rule for o in outcomes] == ["new_thread", "follow_up", "follow_up"]
    assert {o.thread for o in outcomes} == {outcomes[0].thread}
    later = desk.feed(customer_mail(9, addr="ana@example.org", subject="New topic"),
                      T0 + timedelta(minutes=5))
    assert later.verdict.rule == "new_thread"


def test_outlook_thread_index_links_a_conversation(desk: Desk) -> None:
    """A message whose Thread-Index continues a known conversation joins its thread."""
    root = bytes(range(22))
    first = desk.feed(customer_mail(1, addr="ana@example.org", subject="Printer",
                                    Thread_Index=base64.b64encode(root).decode()))
    reply = customer_mail(2, addr="ana@example.org", subject="Something else entirely",
                          Thread_Index=base64.b64encode(root + b"\x01\x02\x03\x04\x05").decode())
    outcome = desk.feed(reply, T0 + timedelta(days=9))
    assert (outcome.verdict.rule, outcome.thread) == ("follow_up", first.thread)
    assert "Thread-Index" in outcome.verdict.detail


def test_per_sender_cap_is_recorded_not_dropped(desk: Desk) -> None:
    """The fourth new question within a day is recorded with the cap as its reason."""
    outcomes = [desk.feed(customer_mail(n, addr="ana@example.org", subject=f"Question {n}"),
                          T0 + timedelta(hours=n)) for n in range(4)]
    assert [o.verdict.rule for o in outcomes] == ["new_thread"] * 3 + ["sender_cap"]
    assert outcomes[3].ack_to is None and "cap 3" in outcomes[3].verdict.detail
    recorded = desk.store.messages()
    assert [m.rule for m in recorded] == ["new_thread"] * 3 + ["sender_cap"]
    next_day = desk.feed(customer_mail(9, addr="ana@example.org", subject="Tomorrow"),
                         T0 + timedelta(hours=27))
    assert next_day.verdict.rule == "new_thread"


def test_the_ack_goes_to_the_envelope_sender_and_only_there(desk: Desk) -> None:
    """Exactly one recipient, the Return-Path, never the other To/Cc addresses."""
    raw = customer_mail(1, addr="ana@example.org", Cc="colleague@example.org")
    raw = raw.replace(b"Return-Path: <ana@example.org>",
                      b"Return-Path: <ana.souza+sent@mailhost.example.org>")
    outcome = desk.feed(raw)
    assert outcome.ack_to == "ana.souza+sent@mailhost.example.org"
    [item] = desk.store.outbox()
    assert item.recipient == outcome.ack_to
    ack = message_from_bytes(item.body, policy=default)
    assert [a.addr_spec for a in ack["To"].addresses] == [outcome.ack_to]
    assert ack["Cc"] is None and ack["Bcc"] is None


def test_follow_up_reply_before_ack_joins(desk: Desk) -> None:
    """The customer's own reply to their first message joins the thread."""
    original = customer_mail(1, addr="ana@example.org")
    first = desk.feed(original)
    follow = desk.feed(reply_to(original), T0 + timedelta(hours=5))
    assert (follow.verdict.rule, follow.thread) == ("follow_up", first.thread)
