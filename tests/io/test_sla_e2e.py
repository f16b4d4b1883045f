"""SLA end to end: agent replies in the Sent folder, and deadlines passing on a fake clock."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from mailbridge.clock import FakeClock
from mailbridge.config import load_config
from mailbridge.daemon.service import Service
from mailbridge.store.db import Store
from mailbridge.store.tables import KnownId, Thread, ThreadEvent
from tests.daemon import REPO, Daemon, write_config
from tests.mails import OUR_MX, TRUSTED_RULES, VOUCHED, customer_mail, mta_headers
from tests.servers import Dovecot, SmtpPeer, until, wait_for

pytestmark = pytest.mark.slow


def agent_reply(original: bytes, *, agent: str = "Dana Whitfield <dana@example.com>") -> bytes:
    parent = message_from_bytes(original, policy=default)
    msg = EmailMessage()
    msg["From"] = agent
    msg["To"] = str(parent["From"])
    msg["Cc"] = "support@example.com"
    msg["Subject"] = "Re: " + str(parent["Subject"])
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg["In-Reply-To"] = str(parent["Message-ID"])
    msg["References"] = str(parent["Message-ID"])
    msg.set_content("Hello, I have refunded the second charge.")
    return msg.as_bytes()


def threads_json(config: Path, *states: str) -> list[dict[str, object]]:
    args = [sys.executable, "-m", "mailbridge", "threads", "--config", str(config), "--json"]
    for state in states:
        args += ["--state", state]
    out = subprocess.run(args, capture_output=True, text=True, check=True, cwd=REPO).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_an_agent_reply_in_sent_stops_the_clock_and_shows_in_threads(
        tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """A reply filed in Sent by the agent's client moves the thread to awaiting_customer."""
    config = write_config(tmp_path / "mb", dovecot, smtp_peer, extra_imap='sent_folders = ["Sent"]')
    with Daemon(config) as daemon:
        original = customer_mail(1, addr="ana@example.org", subject="Charged twice")
        dovecot.append(original)
        smtp_peer.wait_for_count(1, timeout=10)
        [waiting] = threads_json(config)
        assert waiting["state"] == "awaiting_agent"
        assert waiting["next_deadline_kind"] == "first_response"
        dovecot.append(agent_reply(original), folder="Sent")
        wait_for(lambda: threads_json(config)[0]["state"] == "awaiting_customer", timeout=15,
                 message=daemon.log)
        [answered] = threads_json(config, "awaiting_customer")
        assert answered["thread"] == waiting["thread"]
        assert answered["next_deadline"] is None
        store = daemon.store()
        reply = store.messages()[-1]
        store.close()
        assert (reply.mailbox, reply.rule, reply.thread_id) == \
            ("Sent", "agent_reply", waiting["thread"])
    assert len(smtp_peer.messages) == 1, "an agent's reply is never acknowledged"


def test_an_unanswered_thread_gets_one_update_one_escalation_one_breach(
        tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """With a fake clock past the deadline: one status update, one escalation, one breach."""
    path = write_config(tmp_path / "mb", dovecot, smtp_peer,
                        extra_sla='escalate_to = "lead@example.com"\nmax_status_updates = 1',
                        extra_rules=TRUSTED_RULES.removeprefix("[rules]\n"))
    start = datetime.now(UTC)
    clock = FakeClock(start)

    async def scenario() -> None:
        service = Service(load_config(path), clock=clock)
        await service.startup()
        try:
            assert service.scheduler is not None
            dovecot.append(customer_mail(1, addr="ana@example.org", subject="Still broken"))
            await until(lambda: len(smtp_peer.messages) == 1, 10, "no ack")
            # 3h35m: the update (and the agent's nudge); 4h05m: breach and escalation;
            # a day later: nothing more.
            for minutes, expected in ((215, 3), (245, 4), (24 * 60, 4)):
                clock.set(start + timedelta(minutes=minutes))
                service.scheduler.wake()
                await until(lambda n=expected: len(smtp_peer.messages) >= n, 10,
                             f"expected {expected} messages at +{minutes} min")
            await until(lambda: service.store is not None and
                         service.store.next_due_time() is None, 10, "work left due")
        finally:
            service.request_stop()
            await service.shutdown()

    asyncio.run(scenario())
    mails = smtp_peer.messages
    kinds = [(m.rcpt_tos[0], str(m.message["Subject"])) for m in mails]
    assert [rcpt for rcpt, _ in kinds] == ["ana@example.org", "ana@example.org",
                                           "dana@example.com", "lead@example.com"], kinds
    assert "overdue" in kinds[3][1].lower()
    update = mails[1].message
    assert update["In-Reply-To"] is not None and update["Auto-Submitted"] == "auto-replied"
    store = Store.open(load_config(path).store.url)
    with store.transaction() as tx:
        events = [e.kind for e in tx.session.exec(select(ThreadEvent)).all()]
    store.close()
    assert events.count("breach") == 1 and events.count("escalation") == 1
    assert events.count("status_update") == 1


def reply_to_notice(dovecot: Dovecot, notice: EmailMessage, sender: str, body: str) -> None:
    """Press Reply on a staff notice: the reply goes to its Reply-To, threaded under it, and
    our mail server, vouching for the staff domain (`core.trust`), delivers it by LMTP."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = str(notice["Reply-To"])
    msg["Subject"] = "Re: " + str(notice["Subject"])
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg["In-Reply-To"] = str(notice["Message-ID"])
    msg["References"] = str(notice["Message-ID"])
    msg.set_content(body)
    dovecot.deliver(mta_headers(msg.as_bytes(), results=VOUCHED.removeprefix(f"{OUR_MX}; ")),
                    sender=str(msg["From"].addresses[0].addr_spec))


def test_replies_to_a_nudge_and_an_escalation_are_notes_and_commands(
        tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """A nudge and an escalation carry Reply-To the desk and a recorded Message-ID; the
    agent's "On it" with #pending, delivered by LMTP as our server vouched for it, is a note
    and a command, never an answer to the customer, and the lead's #assign reassigns."""
    path = write_config(tmp_path / "mb", dovecot, smtp_peer,
                        extra_sla='escalate_to = "lead@example.com"\nmax_status_updates = 1',
                        extra_rules=TRUSTED_RULES.removeprefix("[rules]\n"))
    start = datetime.now(UTC)
    clock = FakeClock(start)
    seen: dict[str, object] = {}

    async def scenario() -> None:
        service = Service(load_config(path), clock=clock)
        await service.startup()
        store = service.store
        assert service.scheduler is not None and store is not None

        def rows(table: type[Any]) -> list[Any]:
            with store.transaction() as tx:  # type: ignore[union-attr]
                return list(tx.session.exec(select(table)).all())

        def to(address: str) -> list[EmailMessage]:
            return [m.message for m in smtp_peer.messages if m.rcpt_tos == [address]]

        try:
            dovecot.append(customer_mail(1, addr="ana@example.org", subject="Still broken"))
            dovecot.append(customer_mail(2, addr="bo@example.org", subject="Locked out"))
            await until(lambda: len(smtp_peer.messages) == 2, 10, "no acks")
            by_customer = {t.customer: t for t in rows(Thread)}
            ana, bo = by_customer["ana@example.org"], by_customer["bo@example.org"]
            # 3h35m: a status update to each customer and a nudge to each agent.
            clock.set(start + timedelta(minutes=215))
            service.scheduler.wake()
            await until(lambda: len(smtp_peer.messages) == 6, 10, "no nudges")
            [nudge] = [m for m in to(ana.agent_email) if m["X-Mailbridge-Thread"] == ana.id]
            assert str(nudge["Reply-To"]) == "Example Support <support@example.com>"
            known = {k.message_id: (k.thread_id, k.direction) for k in rows(KnownId)}
            assert known[str(nudge["Message-ID"])] == (ana.id, "notice")

            agent = f"{ana.agent_name} <{ana.agent_email}>"
            reply_to_notice(dovecot, nudge, agent, "#pending\n\nOn it, calling her now.\n")
            await until(lambda: any(m.rule == "notice_reply" for m in store.messages()), 10,
                         "the reply to the nudge was not recorded")
            # 4h05m: bo's deadline passes: the lead is told, and reassigns by replying.
            clock.set(start + timedelta(minutes=245))
            service.scheduler.wake()
            await until(lambda: len(to("lead@example.com")) == 1, 10, "no escalation")
            [escalation] = to("lead@example.com")
            assert escalation["X-Mailbridge-Thread"] == bo.id
            other = "Sam Okafor" if bo.agent_name == "Dana Whitfield" else "Dana Whitfield"
            first_name = other.partition(" ")[0]
            reply_to_notice(dovecot, escalation, "Lee Lead <lead@example.com>",
                            f"#assign {first_name}\n\nPlease take this.\n")
            await until(lambda: sum(m.rule == "notice_reply" for m in store.messages()) == 2,
                         10, "the lead's reply was not recorded")
            seen.update(threads={t.id: t for t in rows(Thread)}, other=other, ana=ana.id,
                        bo=bo.id, events=[(e.thread_id, e.kind, e.detail)
                                          for e in rows(ThreadEvent)],
                        agent=ana.agent_name, sent=len(smtp_peer.messages))
        finally:
            service.request_stop()
            await service.shutdown()

    asyncio.run(scenario())
    threads: dict[str, Thread] = seen["threads"]  # type: ignore[assignment]
    ana, bo = threads[str(seen["ana"])], threads[str(seen["bo"])]
    events: list[tuple[str, str, str]] = seen["events"]  # type: ignore[assignment]
    assert (ana.id, "note", f"{seen['agent']}: On it, calling her now.") in events
    assert (ana.id, "pending", f"waiting on the customer, set by {seen['agent']}") in events
    assert ana.state == "awaiting_customer" and ana.first_response_at is None, \
        "a note is not an answer"
    assert not any(kind == "agent_reply" for _, kind, _ in events)
    assert (bo.agent_name, bo.state, bo.first_response_at) == (seen["other"], "awaiting_agent",
                                                               None)
    assert (bo.id, "assigned", f"to {seen['other']} by Lee Lead") in events
    assert (bo.id, "note", "Lee Lead: Please take this.") in events
    customers = [m for m in smtp_peer.messages if m.rcpt_tos[0].endswith("@example.org")]
    assert len(customers) == 4, "two acks and two updates; the notes reached no customer"
