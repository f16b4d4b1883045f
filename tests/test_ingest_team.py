"""Named agents through the real ingest path: sticky, least loaded, next shift, hand-over,
language and FAQ, on a throwaway store with a fake clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from io import StringIO
from pathlib import Path

import pytest
from sqlmodel import select

from mailbridge.cli.replay import replay
from mailbridge.cli.threads import print_threads, threads_records
from mailbridge.clock import SystemClock
from mailbridge.config import load_config
from mailbridge.daemon.ingest import Ingestor, Outcome, Source
from mailbridge.mail.flowed import unflowed
from mailbridge.mail.parse import parse_message
from mailbridge.store.db import Store
from mailbridge.store.tables import Thread, ThreadEvent
from tests.mails import TRUSTED_RULES, customer_mail

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")
CONFIG = """
[support]
address = "support@example.com"
name = "Example Support"
timezone = "Europe/Berlin"

[[agents]]
name = "Dana Whitfield"
email = "dana@example.com"
languages = ["en"]
signature = "Dana Whitfield\\nExample Support"
photo_url = "https://example.com/team/dana.jpg"
{dana}
[agents.shift]
{dana_hours}

[[agents]]
name = "Sam Okafor"
email = "sam@example.com"
languages = ["en", "de"]
[agents.shift]
{sam_hours}

[[faq]]
title = "Resetting your password"
url = "https://example.com/help/password"
[faq.match]
keywords = ["password", "Passwort"]

[[faq]]
title = "Passwort zurücksetzen"
url = "https://example.com/hilfe/passwort"
language = "de"
[faq.match]
keywords = ["Passwort"]

[[faq]]
title = "Status / Störungen"
url = "https://status.example.com/"
language = "any"
[faq.match]
keywords = ["Passwort", "outage"]
"""


def german(raw: bytes) -> bytes:
    """The mail with Content-Language: de-DE (set_content drops it when given earlier)."""
    return b"Content-Language: de-DE\n" + raw


def hours(span: str) -> str:
    return "\n".join(f'{day} = ["{span}"]' for day in WEEKDAYS)


def berlin(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A winter time in Berlin (UTC+1), as aware UTC."""
    return datetime(2026, month, day, hour, minute, tzinfo=UTC) - timedelta(hours=1)


MONDAY = (11, 30)


class Desk:
    """An ingestor on a throwaway store, fed raw mail at chosen times."""

    def __init__(self, tmp_path: Path, store: Store, *, dana: str = "") -> None:
        path = tmp_path / f"mailbridge-{len(dana)}.toml"
        path.write_text(CONFIG.format(dana=dana, dana_hours=hours("09:00-17:00"),
                                      sam_hours=hours("13:00-21:00"))
                        + TRUSTED_RULES + f'[daemon]\nstate_dir = "{tmp_path}"\n')
        self.config = load_config(path)
        self.store = store
        self.ingestor = Ingestor.create(self.config, store, SystemClock())
        self.deadlines = self.ingestor.deadlines
        self.count = 0

    def feed(self, raw: bytes, at: datetime) -> Outcome:
        self.count += 1
        return self.ingestor.ingest(parse_message(raw), Source("INBOX", 1, self.count),
                                    received=at, now=at)

    def ack(self, outcome: Outcome) -> EmailMessage:
        [item] = [i for i in self.store.outbox() if i.message_id == outcome.ack_message_id]
        msg = message_from_bytes(item.body, policy=default)
        assert isinstance(msg, EmailMessage)
        return msg

    def thread(self, thread_id: str | None) -> Thread:
        with self.store.transaction() as tx:
            found = tx.thread(thread_id or "")
            assert found is not None
            return found

    def events(self, thread_id: str | None, kind: str) -> list[str]:
        with self.store.transaction() as tx:
            rows = tx.session.exec(select(ThreadEvent).where(
                ThreadEvent.thread_id == thread_id, ThreadEvent.kind == kind)).all()
            return [row.detail for row in rows]


@pytest.fixture
def store() -> Iterator[Store]:
    store = Store.open("sqlite://")
    yield store
    store.close()


@pytest.fixture
def desk(tmp_path: Path, store: Store) -> Desk:
    return Desk(tmp_path, store)


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert isinstance(part, EmailMessage)
    return unflowed(str(part.get_content()))


def assignment(outcome: Outcome) -> tuple[str, str]:
    assert outcome.choice is not None
    return outcome.choice.assignment.agent.name, outcome.choice.assignment.reason


def test_least_loaded_then_round_robin_then_sticky(desk: Desk) -> None:
    """Only Dana works at 10:00; at 14:00 the freer Sam; a tie rotates; Ana returns to Dana."""
    ana = desk.feed(customer_mail(1, addr="ana@example.org", subject="Printer"),
                    berlin(*MONDAY, 10))
    assert assignment(ana) == ("Dana Whitfield", "least loaded on shift (0 open)")
    bo = desk.feed(customer_mail(2, addr="bo@example.org"), berlin(*MONDAY, 14))
    assert assignment(bo) == ("Sam Okafor", "least loaded on shift (0 open)")
    cy = desk.feed(customer_mail(3, addr="cy@example.org"), berlin(*MONDAY, 14, 5))
    assert assignment(cy) == ("Dana Whitfield", "least loaded on shift (1 open, round robin "
                                                "among 2)")
    again = desk.feed(customer_mail(4, addr="ana@example.org", subject="Scanner"),
                      berlin(*MONDAY, 15))
    assert again.verdict.rule == "new_thread"
    assert assignment(again) == ("Dana Whitfield", "sticky: helped this customer on 2026-11-30")
    ack = desk.ack(again)
    assert str(ack["From"]) == '"Dana Whitfield, Example Support" <support@example.com>'
    assert text_of(ack).rstrip().endswith("Kind regards,\nDana Whitfield\nExample Support")
    assert desk.thread(again.thread).assignment == "sticky: helped this customer on 2026-11-30"
    [opened] = desk.events(again.thread, "opened")
    assert "assigned to Dana Whitfield (sticky: helped" in opened


def test_at_the_weekend_the_ack_says_when_the_agent_starts(desk: Desk) -> None:
    """Saturday: Dana, first on shift on Monday, signs; the promise counts from her start."""
    outcome = desk.feed(customer_mail(1, addr="dy@example.org"), berlin(12, 5, 12))
    assert assignment(outcome) == ("Dana Whitfield",
                                   "next on shift: Monday 7 December at 09:00 (Berlin time)")
    assert outcome.choice is not None
    assert outcome.choice.assignment.starts_at == berlin(12, 7, 9)
    assert outcome.choice.promise == berlin(12, 7, 13)  # 4 h of her shift
    assert outcome.due == berlin(12, 5, 16)  # the SLA itself does not move
    text = text_of(desk.ack(outcome))
    assert ("It has reached us. Dana Whitfield is back on duty Monday 7 December at 09:00 "
            "(Berlin time) and will answer you personally Monday 7 December by 13:00 "
            "(Berlin time).") in text


def test_german_mail_gets_a_german_ack_from_a_german_speaker(desk: Desk) -> None:
    """Content-Language: de picks the German templates and Sam, who writes German."""
    raw = german(customer_mail(1, addr="ute@example.de", subject="Drucker"))
    outcome = desk.feed(raw, berlin(*MONDAY, 14))
    assert outcome.choice is not None
    assert (outcome.choice.language, outcome.choice.language_reason) == (
        "de", "Content-Language de-de")
    assert assignment(outcome)[0] == "Sam Okafor"
    text = text_of(desk.ack(outcome))
    assert text.startswith("Guten Tag Ana Souza,\n\nvielen Dank für Ihre Nachricht „Drucker“.")
    assert "Sam Okafor antwortet Ihnen persönlich heute bis 18:00 Uhr (Berliner Zeit)." in text
    assert desk.thread(outcome.thread).language == "de"


def test_a_german_thread_waits_for_the_german_speaker_and_lists_german_articles(
        desk: Desk) -> None:
    """12:50: only Dana (English) is on shift; Sam writes German and starts at 13:00, before
    the 16:50 deadline: he signs, the ack says when he starts and promises the deadline, and
    lists only the German article and the one for any language."""
    raw = german(customer_mail(1, addr="ute@example.de", subject="Passwort vergessen"))
    outcome = desk.feed(raw, berlin(*MONDAY, 12, 50))
    assert assignment(outcome) == (
        "Sam Okafor", "language before load: nobody on shift writes de; Sam Okafor does, on "
        "shift today at 13:00 (Berlin time), before the answer is due")
    assert outcome.choice is not None
    assert outcome.choice.assignment.rule == "language"
    assert outcome.choice.promise == outcome.due == berlin(*MONDAY, 16, 50)
    text = text_of(desk.ack(outcome))
    assert ("Sie ist bei uns angekommen. Sam Okafor ist heute um 13:00 Uhr (Berliner Zeit) "
            "wieder im Dienst und antwortet Ihnen persönlich heute bis 16:50 Uhr (Berliner "
            "Zeit).") in text
    assert [s.title for s in outcome.choice.faq] == ["Passwort zurücksetzen",
                                                     "Status / Störungen"]
    assert "Resetting your password" not in text
    assert "- Passwort zurücksetzen\n  https://example.com/hilfe/passwort\n" in text
    assert desk.thread(outcome.thread).assignment.startswith("language before load: ")
    [opened] = desk.events(outcome.thread, "opened")
    assert "assigned to Sam Okafor (language before load: nobody on shift writes de;" in opened


def test_faq_articles_that_match_are_in_the_ack(desk: Desk) -> None:
    """A question about a password lists the matching article; other mail lists none."""
    outcome = desk.feed(customer_mail(1, addr="ana@example.org", subject="Forgot my password"),
                        berlin(*MONDAY, 10))
    assert outcome.choice is not None
    assert [s.title for s in outcome.choice.faq] == ["Resetting your password"]
    text = text_of(desk.ack(outcome))
    assert ("While you wait, these may help:\n- Resetting your password\n"
            "  https://example.com/help/password\n") in text
    html = desk.ack(outcome).get_body(("html",))
    assert html is not None
    content = str(html.get_content())
    assert '<a href="https://example.com/help/password"' in content
    assert '<img src="https://example.com/team/dana.jpg" alt="Dana Whitfield"' in content
    other = desk.feed(customer_mail(2, addr="bo@example.org"), berlin(*MONDAY, 10))
    assert other.choice is not None and other.choice.faq == ()
    assert "While you wait" not in text_of(desk.ack(other))


def test_a_thread_moves_when_its_agent_goes_home_before_it_is_due(desk: Desk) -> None:
    """Dana's thread due at 19:00 is handed to Sam at 17:00; the customer hears of Sam only
    in the status update that goes out anyway."""
    outcome = desk.feed(customer_mail(1, addr="ana@example.org"), berlin(*MONDAY, 15))
    assert assignment(outcome)[0] == "Dana Whitfield"
    thread = desk.thread(outcome.thread)
    assert thread.next_due_at == berlin(*MONDAY, 17)  # her shift's end, before the 19:00 due
    assert desk.deadlines.run_due(berlin(*MONDAY, 17)) == 1
    thread = desk.thread(outcome.thread)
    assert (thread.agent_name, thread.agent_email) == ("Sam Okafor", "sam@example.com")
    assert thread.assignment == (
        "handed over: Dana Whitfield is off shift until tomorrow at 09:00 (Berlin time), after "
        "the answer is due; least loaded on shift (0 open)")
    [moved] = desk.events(outcome.thread, "reassigned")
    assert moved.startswith("from Dana Whitfield to Sam Okafor: Dana Whitfield is off shift")
    items = {item.kind: item for item in desk.store.outbox()}
    assert list(items) == ["ack", "handover-0"], "the customer is not told; Sam is"
    assert items["handover-0"].recipient == "sam@example.com"
    assert thread.next_due_at == berlin(*MONDAY, 18, 30)  # the status update, Sam on till 21
    assert desk.deadlines.run_due(berlin(*MONDAY, 18, 30)) == 1
    kinds = {item.kind: item for item in desk.store.outbox()}
    assert set(kinds) == {"ack", "handover-0", "update-1", "nudge-1"}
    update = message_from_bytes(kinds["update-1"].body, policy=default)
    assert str(update["From"]) == '"Sam Okafor, Example Support" <support@example.com>'
    assert kinds["nudge-1"].recipient == "sam@example.com"


def test_a_thread_due_before_the_shift_ends_stays(desk: Desk) -> None:
    """Due at 14:00, Dana works until 17:00: no hand-over is even scheduled."""
    outcome = desk.feed(customer_mail(1, addr="ana@example.org"), berlin(*MONDAY, 10))
    assert desk.thread(outcome.thread).next_due_at == berlin(*MONDAY, 13, 30)  # the update
    desk.deadlines.run_due(berlin(*MONDAY, 13, 30))
    assert desk.thread(outcome.thread).agent_name == "Dana Whitfield"
    assert desk.events(outcome.thread, "reassigned") == []


def test_a_deactivated_agents_threads_move_at_the_next_start(tmp_path: Path,
                                                               store: Store) -> None:
    """After a restart with Dana inactive, her waiting thread goes to Sam, who is on shift."""
    first = Desk(tmp_path, store)
    outcome = first.feed(customer_mail(1, addr="ana@example.org"), berlin(*MONDAY, 14))
    late = first.feed(customer_mail(2, addr="bo@example.org"), berlin(*MONDAY, 14, 1))
    assert {assignment(outcome)[0], assignment(late)[0]} == {"Dana Whitfield", "Sam Okafor"}
    danas = outcome if assignment(outcome)[0] == "Dana Whitfield" else late
    restarted = Desk(tmp_path, store, dana="active = false")
    restarted.deadlines.run_due(berlin(*MONDAY, 14, 10))
    thread = restarted.thread(danas.thread)
    assert thread.agent_name == "Sam Okafor"
    assert thread.assignment.startswith("handed over: Dana Whitfield is inactive; ")
    records = threads_records(store, states=["awaiting_agent"], now=berlin(*MONDAY, 14, 10))
    assert {r["assignment"][:11] for r in records} == {"handed over", "least loaded"[:11]}
    out = StringIO()
    print_threads(store, states=["awaiting_agent"], now=berlin(*MONDAY, 14, 10), out=out,
                  json_lines=False)
    assert "assignment" in out.getvalue().splitlines()[0]
    assert "handed over: Dana Whitfield is inactive" in out.getvalue()


def test_replay_explains_assignment_language_and_faq(tmp_path: Path, desk: Desk) -> None:
    """`replay --json` lines carry the assignment, the language and the matched articles."""
    folder = tmp_path / "mail"
    folder.mkdir()
    (folder / "1.eml").write_bytes(customer_mail(1, addr="ana@example.org",
                                                 subject="Password lost"))
    (folder / "2.eml").write_bytes(german(customer_mail(2, addr="bo@example.org")))
    out = StringIO()
    replay(desk.config, [folder], now=berlin(*MONDAY, 14), out=out, json_lines=True)
    first, second = [json.loads(line) for line in out.getvalue().splitlines()[:2]]
    assert first["assignment"] == {
        "rule": "least_loaded", "reason": "least loaded on shift (0 open, round robin among 2)",
        "starts_at": None, "promise": "2026-11-30T17:00:00+00:00"}
    assert first["faq"] == [{"title": "Resetting your password",
                             "url": "https://example.com/help/password",
                             "why": ["keyword password"]}]
    assert first["language"] == {"language": "en", "reason": "the support default"}
    assert second["assignment"]["reason"] == "least loaded on shift (0 open)"  # Sam: German
    assert second["agent"] == "Sam Okafor"
    assert second["language"] == {"language": "de", "reason": "Content-Language de-de"}
    assert second["faq"] == []
    text = StringIO()
    replay(desk.config, [folder / "1.eml"], now=berlin(*MONDAY, 14), out=text, json_lines=False)
    assert "(least loaded on shift" in text.getvalue()
    assert "faq='Resetting your password'" in text.getvalue()


def test_a_status_update_does_not_promise_a_time_nobody_works(desk: Desk) -> None:
    """Saturday's thread waits for Dana's Monday: the update before the (24/7) deadline
    promises a time in her shift, not Saturday afternoon."""
    outcome = desk.feed(customer_mail(1, addr="dy@example.org"), berlin(12, 5, 12))
    assert desk.deadlines.run_due(berlin(12, 5, 15, 30)) == 1
    [update] = [i for i in desk.store.outbox() if i.kind.startswith("update")]
    text = text_of(message_from_bytes(update.body, policy=default))  # type: ignore[arg-type]
    assert "You will hear from us Monday 7 December by 09:30 (Berlin time)." in text
    [event] = desk.events(outcome.thread, "status_update")
    assert event == "promised 2026-12-07 08:30 UTC"
