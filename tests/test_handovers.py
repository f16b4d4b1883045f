"""Hand-over notices through the real ingest path (in-memory SQLite), without servers."""

from __future__ import annotations

from datetime import timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

from mailbridge.clock import SystemClock
from mailbridge.config import load_config
from mailbridge.daemon.ingest import Ingestor, Outcome
from mailbridge.daemon.staff import prepare_relayed
from mailbridge.mail.flowed import unflowed
from mailbridge.store.db import Store
from tests.configs import MINIMAL
from tests.mails import TRUSTED_RULES
from tests.test_staff import DANA, T0, Desk, opened, reply

SAM = """
[[agents]]
name = "Sam Okafor"
email = "sam@example.com"
timezone = "America/New_York"
"""


def _desk(tmp_path: Path, extra: str = "") -> Desk:
    config_file = tmp_path / "mailbridge.toml"
    config_file.write_text(f'{MINIMAL}{SAM}{extra}[daemon]\nstate_dir = "{tmp_path}"\n')
    store = Store.open("sqlite://")
    return Desk(Ingestor.create(load_config(config_file), store, SystemClock()), store)


def _relay(desk: Desk, raw: bytes) -> Outcome:
    """`raw` as Dana submits it through the relay, five minutes after T0."""
    at = T0 + timedelta(minutes=5)
    prepared = prepare_relayed(raw, agent=DANA, envelope_from=DANA.email,
                               recipients=("ana@example.org",),
                               support_addresses=frozenset({"support@example.com"}),
                               domain="example.com", now=at)
    assert prepared is not None
    return desk.ingestor.relay(*prepared, received=at, now=at)


def _mail(body: bytes) -> EmailMessage:
    msg = message_from_bytes(body, policy=default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_assign_alone_tells_the_new_agent_and_keeps_the_deadline(tmp_path: Path) -> None:
    """#assign Sam by Dana: Sam is told (the customer quoted, due in his zone, Reply-To the
    desk); the thread still awaits an agent with its deadline."""
    desk = _desk(tmp_path)
    original, thread = opened(desk)
    due = desk.thread(thread).response_due_at
    outcome = _relay(desk, reply(original, "#assign Sam\n", to="ana@example.org"))
    assert outcome.verdict.rule == "agent_command"
    row = desk.thread(thread)
    assert (row.agent_email, row.state, row.response_due_at) == \
        ("sam@example.com", "awaiting_agent", due)
    [notice] = [i for i in desk.store.outbox() if i.kind.startswith("handover-")]
    assert notice.recipient == "sam@example.com"
    mail = _mail(notice.body)
    assert mail["Reply-To"].addresses[0].addr_spec == "support@example.com"
    text = unflowed(mail.get_body(("plain",)).get_content())
    assert "> Hello, can you help me?" in text, "the customer's words, quoted"
    assert "New York time" in text and "assigned to you by Dana Whitfield" in text


def test_no_notice_for_oneself_and_new_threads_only_when_asked(tmp_path: Path) -> None:
    """An agent taking a thread is not told; notify = ["new"] hears of each new thread."""
    desk = _desk(tmp_path, extra='notify = ["new"]\n')
    original, thread = opened(desk)
    kinds = [(i.kind, i.recipient) for i in desk.store.outbox() if i.mailbox == "scheduler"]
    row = desk.thread(thread)
    expected = [("handover-1", "sam@example.com")] if row.agent_email == "sam@example.com" \
        else []
    assert kinds == expected
    _relay(desk, reply(original, "#assign Dana\n", to="ana@example.org"))
    assert not [i for i in desk.store.outbox() if i.recipient == "dana@example.com"
                and i.kind.startswith("handover-")], "Dana gave it to herself"


def test_a_leads_assign_in_reply_to_an_escalation_tells_the_new_agent(tmp_path: Path) -> None:
    """The lead answers the escalation with #assign: the thread moves and its new agent is
    told, though the lead is no agent and the deadline has passed."""
    desk = _desk(tmp_path, extra='[sla]\nfirst_response = "1h"\nescalate_to = '
                                 f'"lead@example.com"\n{TRUSTED_RULES}')
    _original, thread = opened(desk)
    assert desk.ingestor.deadlines.run_due(T0 + timedelta(hours=2)) == 1
    [escalation] = [i for i in desk.store.outbox() if i.kind.startswith("escalation-")]
    other = "Sam" if desk.thread(thread).agent_email != "sam@example.com" else "Dana"
    outcome = desk.feed(reply(escalation.body, f"#assign {other}\n",
                              sender="Lee Lead <lead@example.com>"),
                        at=T0 + timedelta(hours=2, minutes=5))
    assert outcome.verdict.rule == "notice_reply", outcome.verdict.detail
    row = desk.thread(thread)
    assert row.agent_name.startswith(other) and row.state == "awaiting_agent"
    [notice] = [i for i in desk.store.outbox() if i.kind.startswith("handover-")]
    assert notice.recipient == row.agent_email
    assert "by Lee Lead" in unflowed(_mail(notice.body).get_body(("plain",)).get_content())
