"""An agent's own mail through the real ingest path (in-memory SQLite): replies, mail
commands and relayed mail, without servers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from email.utils import make_msgid
from pathlib import Path

import pytest

from mailbridge.clock import SystemClock
from mailbridge.config import load_config
from mailbridge.core.model import Agent
from mailbridge.daemon.ingest import Ingestor, Outcome, Source
from mailbridge.daemon.staff import prepare_relayed
from mailbridge.mail.parse import parse_message
from mailbridge.store.db import Store
from mailbridge.store.tables import Thread
from tests.configs import MINIMAL
from tests.mails import TRUSTED_RULES, VOUCHED, customer_mail

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
DANA = Agent("Dana Whitfield", "dana@example.com")


class Desk:
    def __init__(self, ingestor: Ingestor, store: Store) -> None:
        self.ingestor = ingestor
        self.store = store
        self.uid = 0

    def feed(self, raw: bytes, *, mailbox: str = "INBOX", at: datetime = T0) -> Outcome:
        self.uid += 1
        return self.ingestor.ingest(parse_message(raw), Source(mailbox, 1, self.uid),
                                    received=at, now=at)

    def thread(self, thread_id: str) -> Thread:
        with self.store.transaction() as tx:
            found = tx.thread(thread_id)
            assert found is not None
            return found


def open_desk(tmp_path: Path, desk_section: str = MINIMAL) -> Iterator[Desk]:
    """A desk on SQLite whose mail server vouches for its agents' mail: `desk_section`
    ([support] and [[agents]]), escalations to lead@, the Sent folder watched."""
    config_file = tmp_path / "mailbridge.toml"
    config_file.write_text(f"""
{desk_section}[sla]
escalate_to = "lead@example.com"
{TRUSTED_RULES}[imap]
host = "mail.example.com"
username = "support@example.com"
password = "unused"
sent_folders = ["Sent"]
[daemon]
state_dir = "{tmp_path}"
""")
    store = Store.open("sqlite://")
    yield Desk(Ingestor.create(load_config(config_file), store, SystemClock()), store)
    store.close()


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    yield from open_desk(tmp_path)


def reply(original: bytes, body: str, *, sender: str = "Dana Whitfield <dana@example.com>",
          to: str = "support@example.com") -> bytes:
    parent = message_from_bytes(original, policy=default)
    msg = EmailMessage()
    msg["Authentication-Results"] = VOUCHED
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = "Re: " + str(parent["Subject"])
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg["In-Reply-To"] = str(parent["Message-ID"])
    msg["Date"] = "Mon, 23 Nov 2026 10:00:00 +0100"
    msg.set_content(body)
    return msg.as_bytes()


def opened(desk: Desk) -> tuple[bytes, str]:
    original = customer_mail(1, addr="ana@example.org")
    outcome = desk.feed(original)
    assert outcome.thread is not None
    return original, outcome.thread


def test_a_reply_without_commands_is_a_reply_even_if_only_a_quote(desk: Desk) -> None:
    """No command block: the old rule holds, any agent mail in the thread is an answer."""
    original, thread = opened(desk)
    outcome = desk.feed(reply(original, "On Monday, Ana wrote:\n> Hello\n"),
                        at=T0 + timedelta(minutes=5))
    assert outcome.verdict.rule == "agent_reply"
    assert desk.thread(thread).state == "awaiting_customer"


def test_commands_in_a_sent_folder_or_from_a_lead_are_not_read(desk: Desk) -> None:
    """A Sent copy already went out with its lines; a lead is staff but not an agent."""
    original, thread = opened(desk)
    lead = desk.feed(reply(original, "#close\nLooking into it.", sender="lead@example.com"),
                     at=T0 + timedelta(minutes=1))
    assert lead.verdict.rule == "agent_reply" and "commands" not in lead.verdict.detail
    sent = desk.feed(reply(original, "#close\nDone.", to="Ana <ana@example.org>"),
                     mailbox="Sent", at=T0 + timedelta(minutes=2))
    assert sent.verdict.rule == "agent_reply"
    assert desk.thread(thread).state == "awaiting_customer", "not resolved"


def test_a_command_mail_seen_first_in_sent_leaves_the_inbox_copy_to_decide(
        desk: Desk) -> None:
    """`#priority high` sent from the shared account to the desk: its Sent copy, often
    seen first, answers nobody; the inbox copy then runs the command, clock still running."""
    original, thread = opened(desk)
    command = reply(original, "#priority high\n")
    sent = desk.feed(command, mailbox="Sent", at=T0 + timedelta(minutes=2))
    assert sent.verdict.rule == "agent_mail", sent.verdict.detail
    row = desk.thread(thread)
    assert row.state == "awaiting_agent" and row.first_response_at is None
    due = row.next_due_at
    assert due is not None
    inbox = desk.feed(command, at=T0 + timedelta(minutes=2, seconds=3))
    assert inbox.verdict.rule == "agent_command", inbox.verdict.detail
    row = desk.thread(thread)
    assert row.priority == "high"
    assert row.state == "awaiting_agent" and row.first_response_at is None
    assert row.next_due_at is not None


def test_pending_alone_stops_the_clock_without_a_first_response_and_reopen_restarts_it(
        desk: Desk) -> None:
    """#pending by itself: awaiting the customer, no response time; #reopen: awaiting us."""
    original, thread = opened(desk)
    outcome = desk.feed(reply(original, "#pending\n"), at=T0 + timedelta(minutes=3))
    assert outcome.verdict.rule == "agent_command" and outcome.queued == 0
    row = desk.thread(thread)
    assert row.state == "awaiting_customer" and row.first_response_at is None
    desk.feed(reply(original, "#reopen\n"), at=T0 + timedelta(minutes=4))
    assert desk.thread(thread).state == "awaiting_agent"


def test_relayed_mail_must_come_from_the_agent_or_support(desk: Desk) -> None:
    """A From header naming someone else is refused before anything is recorded."""
    original, _thread = opened(desk)
    raw = reply(original, "Hi", to="ana@example.org")
    support = frozenset({"support@example.com"})
    assert prepare_relayed(raw.replace(b"dana@example.com", b"ceo@example.com"), agent=DANA,
                           envelope_from="dana@example.com", recipients=("ana@example.org",),
                           support_addresses=support, domain="example.com", now=T0) is None
    prepared = prepare_relayed(raw, agent=DANA, envelope_from="dana@example.com",
                               recipients=("ana@example.org",), support_addresses=support,
                               domain="example.com", now=T0)
    assert prepared is not None
    message, relayed = prepared
    outcome = desk.ingestor.relay(message, relayed, received=T0 + timedelta(minutes=7),
                                  now=T0 + timedelta(minutes=7))
    assert (outcome.verdict.rule, outcome.queued) == ("agent_reply", 1)
    [item] = [i for i in desk.store.outbox() if i.mailbox == "relay"]
    assert (item.recipient, item.envelope_from, item.body) == (
        "ana@example.org", "dana@example.com", raw)
