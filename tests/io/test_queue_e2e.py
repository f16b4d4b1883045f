"""Where the customer stands, end to end through Dovecot and an SMTP peer: the queue
position in acknowledgements, and status updates that say who has the request, whether it
was opened (\\Seen in the support mailbox), the place in the queue and the time in both
zones, spaced and limited as configured, on a fake clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from email.utils import format_datetime, parseaddr
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import select

from mailbridge.clock import FakeClock
from mailbridge.config import load_config
from mailbridge.daemon.service import Service
from mailbridge.io.imap_seen import SeenFlags
from mailbridge.store.db import Store
from mailbridge.store.tables import Thread
from tests.daemon import run_service, write_config
from tests.mails import customer_mail
from tests.servers import Dovecot, SmtpPeer, free_port, until

pytestmark = pytest.mark.slow

SAM = '[[agents]]\nname = "Sam Okafor"\nemail = "sam@example.com"\n'


def one_agent_config(tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer,
                     **extra: str) -> Path:
    """The test desk with Dana as its only agent: every thread is in her queue."""
    path = write_config(tmp_path / "mb", dovecot, smtp_peer, **extra)
    text = path.read_text(encoding="utf-8")
    assert SAM in text
    path.write_text(text.replace(SAM, ""), encoding="utf-8")
    return path


def plain(msg: EmailMessage) -> str:
    """The decoded text part, its lines joined: what a customer reads, unwrapped."""
    part = msg.get_body(("plain",))
    assert part is not None
    return " ".join(part.get_content().split())


def senders_by_uid(dovecot: Dovecot) -> list[str]:
    """The From address of each message in the INBOX, in UID order."""
    with dovecot.connect() as client:
        client.select_folder("INBOX", readonly=True)
        found = client.fetch(client.search("ALL"), ["BODY.PEEK[HEADER.FIELDS (FROM)]"])
    return [parseaddr(found[uid][b"BODY[HEADER.FIELDS (FROM)]"].decode().partition(":")[2])[1]
            for uid in sorted(found)]


def test_three_customers_of_one_agent_learn_their_place(
        tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """The first customer's acknowledgement says theirs is next, the second's that one
    request is ahead, the third's that two are.

    First in the mailbox's order: Dovecot gives a Maildir's new mail its UIDs when a
    session syncs the folder, so mail delivered one after the other within a second may be
    numbered in another order while the daemon's session is reading the folder (seen under
    load). Arrived in the same second, the three are due at the same time; the mailbox's
    order decides."""
    path = one_agent_config(tmp_path, dovecot, smtp_peer)
    customers = [f"c{n}@example.org" for n in (1, 2, 3)]

    async def scenario(service: Service) -> None:
        for n, addr in enumerate(customers, start=1):
            dovecot.deliver(customer_mail(n, addr=addr), sender=addr)
        await until(lambda: len(smtp_peer.messages) == 3, 15, "not three acknowledgements")

    run_service(Service(load_config(path), clock=FakeClock(datetime.now(UTC))), scenario)
    acks = {m.rcpt_tos[0]: plain(m.message) for m in smtp_peer.messages}
    first, second, third = senders_by_uid(dovecot)
    assert sorted((first, second, third)) == customers
    assert "Right now yours is next." in acks[first]
    assert "Right now 1 request is ahead of yours." in acks[second]
    assert "Right now 2 requests are ahead of yours." in acks[third]
    assert all("Dana Whitfield will answer you personally" in ack for ack in acks.values())


def from_new_york(raw: bytes) -> bytes:
    """The mail as a client in New York (UTC-05:00 in winter, UTC-04:00 in summer) dates it."""
    msg = message_from_bytes(raw, policy=default)
    del msg["Date"]
    msg["Date"] = format_datetime(datetime.now(ZoneInfo("America/New_York")))
    return msg.as_bytes()


def mark_seen(dovecot: Dovecot, sender: str) -> None:
    """An agent opens the customer's message in their mail client: \\Seen on it."""
    with dovecot.connect() as client:
        client.select_folder("INBOX")
        [uid] = client.search(["FROM", sender])
        client.add_flags([uid], [b"\\Seen"])


def test_status_updates_say_who_has_it_whether_it_was_opened_and_where_it_stands(
        tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """With a 10-minute periodic update, 30 minutes' spacing and two updates at most, on a
    fake clock: each customer gets two updates, 30 minutes apart, then none. Each greets them
    by name, says the thread is with Dana, whether their message was opened in the support
    mailbox (\\Seen), their place in the queue, and the time in both zones."""
    path = one_agent_config(tmp_path, dovecot, smtp_peer, extra_sla=(
        'periodic_update = "10m"\nstatus_update_before = "30m"\nmax_status_updates = 2'))
    ana, bo = "ana@example.org", "bo@example.org"
    start = datetime.now(UTC)
    clock = FakeClock(start)

    def updates() -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for m in smtp_peer.messages:
            if m.rcpt_tos[0] in (ana, bo) and "we have not forgotten you" in plain(m.message):
                found.setdefault(m.rcpt_tos[0], []).append(plain(m.message))
        return found

    async def scenario(service: Service) -> None:
        store, scheduler = service.store, service.scheduler
        assert store is not None and scheduler is not None
        # Arrival times a minute apart: the server's INTERNALDATE counts whole seconds, and
        # two requests of the same second count as ahead of each other.
        dovecot.append(from_new_york(customer_mail(1, name="Ana Souza", addr=ana)),
                       msg_time=start)
        dovecot.append(from_new_york(customer_mail(2, name="Bo Lind", addr=bo)),
                       msg_time=start + timedelta(minutes=1))
        await until(lambda: len(smtp_peer.messages) == 2, 15, "no acknowledgements")
        mark_seen(dovecot, ana)
        clock.set(start + timedelta(minutes=11))
        scheduler.wake()
        await until(lambda: sum(map(len, updates().values())) == 2, 15, "no first updates")
        # The next may come 30 minutes after these, not 10: the scheduler sleeps until then.
        due = await asyncio.to_thread(store.next_due_time)
        assert due == start + timedelta(minutes=41), due
        mark_seen(dovecot, bo)
        clock.set(start + timedelta(minutes=42))
        scheduler.wake()
        await until(lambda: sum(map(len, updates().values())) == 4, 15, "no second updates")
        clock.set(start + timedelta(hours=5))  # past the deadlines: breaches, no update
        scheduler.wake()
        await until(lambda: store.next_due_time() is None, 15, "work left due")

    run_service(Service(load_config(path), clock=clock), scenario)
    sent = updates()
    assert [len(sent[ana]), len(sent[bo])] == [2, 2], sent
    first_ana, first_bo = sent[ana][0], sent[bo][0]
    assert first_ana.startswith("Hello Ana Souza,") and first_bo.startswith("Hello Bo Lind,")
    assert "Your request is with Dana Whitfield. It has been opened but not answered yet." \
        in first_ana
    assert "Your request is with Dana Whitfield. It has not been opened yet." in first_bo
    assert "Right now yours is next." in first_ana
    assert "Right now 1 request is ahead of yours." in first_bo
    assert "It has been opened but not answered yet." in sent[bo][1]  # opened meanwhile
    store = Store.open(load_config(path).store.url)
    with store.transaction() as tx:
        threads = {t.customer: t for t in tx.session.exec(select(Thread)).all()}
    store.close()
    for customer, text in ((ana, first_ana), (bo, first_bo)):
        due = threads[customer].response_due_at
        assert due is not None
        desk = due.astimezone(ZoneInfo("Europe/Berlin"))
        theirs = due.astimezone(ZoneInfo("America/New_York"))
        assert f"by {desk:%H:%M} (Berlin time), that is " in text
        assert f"{theirs:%H:%M} your time." in text
        assert "still on it" not in text


def test_the_flags_of_messages_the_mailbox_cannot_vouch_for_are_unknown(
        tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer,
        caplog: pytest.LogCaptureFixture) -> None:
    """\\Seen is read without marking anything; a message of an older UIDVALIDITY, one
    that is gone, one of another account, and every message of an unreachable server are
    left out, not unseen."""
    imap = load_config(write_config(tmp_path / "mb", dovecot, smtp_peer)).imap
    assert imap is not None
    uid = dovecot.append(customer_mail(1))
    with dovecot.connect() as client:
        validity = int(client.select_folder("INBOX", readonly=True)[b"UIDVALIDITY"])
    assert uid is not None
    flags = SeenFlags(imap)
    ours = (imap.account, "INBOX", validity, uid)
    wanted = [ours, (imap.account, "INBOX", validity - 1, uid),
              (imap.account, "INBOX", validity, uid + 100),
              (f"billing@example.com@127.0.0.1:{dovecot.port}", "INBOX", validity, uid)]
    assert flags(wanted) == {ours: False}
    assert b"\\Seen" not in dovecot.flags(uid), "looking marked the message read"
    mark_seen(dovecot, "customer1@example.org")
    assert flags(wanted) == {ours: True}
    unreachable = imap.model_copy(update={"port": free_port()})
    assert SeenFlags(unreachable)([(unreachable.account, *ours[1:])]) == {}
    assert any("flags_unavailable" in r.getMessage() for r in caplog.records)
