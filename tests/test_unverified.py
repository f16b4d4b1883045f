"""Staff mail in the INBOX that nothing vouches for, through the real ingest path
(in-memory SQLite): recorded as `unverified_agent`, it changes nothing, and the person whose
address it names is told at most once an hour."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest
from sqlmodel import select

from mailbridge.cli import main
from mailbridge.daemon.unverified import NOTICES_MAILBOX
from mailbridge.store.tables import OutboxItem
from tests.configs import MAILBOX, MINIMAL
from tests.mails import OUR_MX, TRUSTED_RULES, VOUCHED
from tests.test_staff import T0, Desk, open_desk, opened, reply


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    yield from open_desk(tmp_path, """
[support]
address = "support@example.com"
name = "Example Support"
leads = ["boss@example.com"]
[[agents]]
name = "Dana Whitfield"
email = "dana@example.com"
""")


def forged(original: bytes, body: str = "#close\nDone.", *, results: str | None = None,
           sender: str = "Dana Whitfield <dana@example.com>") -> bytes:
    """A reply with the From of staff, as anyone can send it: our server found no
    signature and the sender's domain does not allow the sending host (or `results`)."""
    raw = reply(original, body, sender=sender)
    msg = message_from_bytes(raw, policy=default)
    del msg["Authentication-Results"]
    msg["Authentication-Results"] = results if results is not None else (
        f"{OUR_MX}; dkim=none (message not signed); spf=fail (domain of attacker@evil.example "
        "does not designate 203.0.113.9 as permitted sender) smtp.mailfrom=attacker@evil.example")
    return msg.as_bytes()


def notices(desk: Desk) -> list[OutboxItem]:
    with desk.store.transaction() as tx:
        return list(tx.session.exec(select(OutboxItem).where(
            OutboxItem.mailbox == NOTICES_MAILBOX)).all())


def test_forged_agent_mail_changes_nothing_and_the_agent_is_told_once(desk: Desk) -> None:
    """A #close From Dana without our server's word: recorded, thread open, one notice."""
    original, thread = opened(desk)
    outcome = desk.feed(forged(original), at=T0 + timedelta(minutes=5))
    assert (outcome.verdict.rule, outcome.thread, outcome.queued) == \
        ("unverified_agent", thread, 1)
    assert "not authenticated" in outcome.verdict.detail
    found = desk.thread(thread)
    assert (found.state, found.first_response_met) == ("awaiting_agent", None)
    [notice] = notices(desk)
    assert notice.recipient == "dana@example.com"
    mail = message_from_bytes(notice.body, policy=default)
    assert str(mail["To"]) == "Dana Whitfield <dana@example.com>"
    assert str(mail["Auto-Submitted"]) == "auto-replied"
    assert "Sent folder" in mail.get_content()
    again = desk.feed(forged(original, "Refunded."), at=T0 + timedelta(minutes=50))
    assert (again.verdict.rule, again.queued) == ("unverified_agent", 0)
    assert desk.thread(thread).state == "awaiting_agent", "no response either"
    later = desk.feed(forged(original, "Refunded."), at=T0 + timedelta(minutes=66))
    assert later.queued == 1, "an hour after the last notice, the next one"


@pytest.mark.parametrize("results", [
    "mx.evil.example; dkim=pass header.d=example.com; spf=pass smtp.mailfrom=dana@example.com",
    f"{OUR_MX}; dkim=pass header.d=evil.example",
])
def test_a_foreign_or_unaligned_pass_does_not_count(desk: Desk, results: str) -> None:
    """Another server's pass, or our pass for another domain, vouches for nothing."""
    original, thread = opened(desk)
    outcome = desk.feed(forged(original, results=results), at=T0 + timedelta(minutes=5))
    assert outcome.verdict.rule == "unverified_agent"
    assert desk.thread(thread).state == "awaiting_agent"


def test_a_look_alike_below_our_field_does_not_count(desk: Desk) -> None:
    """Only our topmost field counts: a forged pass of our id below it is ignored."""
    original, _thread = opened(desk)
    raw = forged(original)
    raw = raw.replace(b"\nFrom:", f"\nAuthentication-Results: {VOUCHED}\nFrom:".encode(), 1)
    assert desk.feed(raw, at=T0 + timedelta(minutes=5)).verdict.rule == "unverified_agent"


def test_authenticated_agent_mail_stops_the_clock_and_runs_commands(desk: Desk) -> None:
    """With our dkim=pass for the agents' domain, the #close runs."""
    original, thread = opened(desk)
    outcome = desk.feed(reply(original, "#close\nDone."), at=T0 + timedelta(minutes=5))
    assert outcome.verdict.rule == "agent_reply"
    assert desk.thread(thread).state == "resolved"
    assert notices(desk) == []


def test_the_sent_folder_needs_no_authentication(desk: Desk) -> None:
    """A copy in the watched Sent folder is the agent's, as before."""
    original, thread = opened(desk)
    answer = message_from_bytes(forged(original, "Refunded."), policy=default)
    answer.replace_header("To", "Ana <ana@example.org>")  # a reply goes to the customer
    outcome = desk.feed(answer.as_bytes(), mailbox="Sent", at=T0 + timedelta(minutes=5))
    assert outcome.verdict.rule == "agent_reply"
    assert desk.thread(thread).state == "awaiting_customer"


@pytest.mark.parametrize("lead", ["Lead <lead@example.com>", "Boss <boss@example.com>"])
def test_leads_mail_is_verified_too(desk: Desk, lead: str) -> None:
    """escalate_to and [support] leads are staff: unauthenticated, they are told too."""
    original, thread = opened(desk)
    outcome = desk.feed(forged(original, "Please hurry.", sender=lead),
                        at=T0 + timedelta(minutes=5))
    assert (outcome.verdict.rule, outcome.queued) == ("unverified_agent", 1)
    assert desk.thread(thread).state == "awaiting_agent"


def test_threads_shows_unverified_mail(desk: Desk) -> None:
    """`threads` counts the staff mail of a thread that did not count."""
    from mailbridge.cli.threads import print_threads, threads_records

    original, _thread = opened(desk)
    desk.feed(forged(original), at=T0 + timedelta(minutes=5))
    [record] = threads_records(desk.store, states=["awaiting_agent"], now=T0)
    assert record["unverified_agent_mails"] == 1
    out = io.StringIO()
    print_threads(desk.store, states=["awaiting_agent"], now=T0, out=out, json_lines=False)
    assert "1 unverified staff mail, not counted" in out.getvalue()


def test_check_config_warns_when_nothing_can_authenticate_agents(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without trusted_authserv_id or the relay: a warning, and still exit 0."""
    config = tmp_path / "mailbridge.toml"
    config.write_text(f'{MINIMAL}{MAILBOX}[store]\nurl = "sqlite:///{tmp_path}/s.db"\n')
    assert main(["check-config", str(config)]) == 0
    [warning] = capsys.readouterr().err.splitlines()
    assert warning.startswith(f"{config}: warning: [rules] trusted_authserv_id:")
    config.write_text(f'{MINIMAL}{MAILBOX}{TRUSTED_RULES}'
                      f'[store]\nurl = "sqlite:///{tmp_path}/s.db"\n')
    assert main(["check-config", str(config)]) == 0
    assert capsys.readouterr().err == ""
