"""Erasure on SQLite and PostgreSQL: after `erase`, a customer's address, name and subjects
appear nowhere in a dump of the store, while their threads' timings stay. The store is filled
through the real ingest and scheduler paths."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest
from sqlalchemy import select, update

from mailbridge.cli.forget import forget
from mailbridge.clock import FakeClock
from mailbridge.config import load_config
from mailbridge.daemon.ingest import Ingestor
from mailbridge.store.db import Store
from mailbridge.store.erasure import ERASED_CUSTOMER, erase
from mailbridge.store.statements import OUTBOX
from mailbridge.store.summaries import summaries
from mailbridge.store.tables import KnownId, OutboxItem
from tests.configs import MAILBOX, MINIMAL
from tests.dump import dump_text
from tests.mails import TRUSTED_RULES, customer_mail, reply_to
from tests.store.test_flow import Desk
from tests.test_staff import reply

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # a Monday
NAME, ADDRESS = "Jane Q. Customer", "Jane.Doe@Example.ORG"
SUBJECTS = ("Zebra crossing 4711 broken", "Second question about invoices 9981")
NEIGHBOUR = "xjane.doe@example.org"
"""Another customer, whose address contains hers."""


@pytest.fixture
def desk(store: Store, tmp_path: Path) -> Iterator[Desk]:
    config_file = tmp_path / "mailbridge.toml"
    config_file.write_text(f'{MINIMAL}{MAILBOX}[sla]\nfirst_response = "4h"\n'
                           f'escalate_to = "lead@example.com"\n{TRUSTED_RULES}'
                           f'[daemon]\nstate_dir = "{tmp_path}"\n')
    yield Desk(Ingestor.create(load_config(config_file), store, FakeClock(T0)), store)


def hers(n: int, subject: str, **headers: str) -> bytes:
    return customer_mail(n, name=NAME, addr=ADDRESS, subject=subject, **headers)


def fill(desk: Desk) -> dict[str, str]:
    """Her two threads (one answered late after a status update, a nudge and an escalation,
    with an agent's note naming her; one just opened, its ack unsent), her auto-reply, a
    relayed mail to her, and the neighbour's thread with a note that names her."""
    first = hers(1, SUBJECTS[0])
    a = desk.feed(first, T0).thread
    assert a is not None
    while desk.ingestor.deadlines.run_due(T0 + timedelta(hours=5)):
        pass
    desk.feed(reply(first, f"#note {NAME} phoned about {SUBJECTS[0]}\nWe are on it."),
              T0 + timedelta(hours=6))
    b = desk.feed(hers(2, SUBJECTS[1]), T0 + timedelta(hours=7)).thread
    auto = desk.feed(hers(3, f"Out of office: {SUBJECTS[0]}", Auto_Submitted="auto-replied"),
                     T0 + timedelta(hours=7, minutes=5))
    assert auto.thread is None and b not in (None, a)
    other = customer_mail(4, name="Xavier Jane", addr=NEIGHBOUR, subject="My own matter")
    c = desk.feed(other, T0 + timedelta(hours=7, minutes=10)).thread
    desk.feed(reply(other, f"#note asked whether {ADDRESS.lower()} is a colleague\nSure."),
              T0 + timedelta(hours=7, minutes=20))
    with desk.store.transaction() as tx:
        tx.insert(OutboxItem, thread_id="", kind="relay-1-0", mailbox="relay",
                  message_id="<relayed-1@example.com>", envelope_from="dana@example.com",
                  recipient=ADDRESS, body=f"To: {NAME} <{ADDRESS}>\r\n\r\nHi\r\n".encode(),
                  state="sent", attempts=1, next_attempt_at=T0, created_at=T0, arrived_at=T0,
                  sent_at=T0, last_error="")
        for owner in (NEIGHBOUR, ADDRESS):  # Message-IDs that embed an address
            tx.insert(KnownId, message_id=f"<1234.{owner}>", thread_id=c, direction="in")
    assert b is not None and c is not None
    return {"answered": a, "new": b, "neighbour": c}


def assert_gone(store_url: str) -> str:
    """The dump, lower case, after checking it names neither her address (as an address of
    its own, not inside the neighbour's), nor her name, nor her subjects."""
    dump = dump_text(store_url).lower()
    assert not re.search(rf"(?<![\w.+-]){re.escape(ADDRESS.lower())}", dump), ADDRESS
    for needle in (NAME, *SUBJECTS):
        assert needle.lower() not in dump, needle
    return dump


def test_her_address_name_and_subjects_appear_nowhere_and_her_timings_stay(
        desk: Desk, store: Store, store_url: str) -> None:
    """After erasure: no trace in a dump; thread rows anonymous and resolved with their
    timings and breaches; her unsent mail failed "erased"; the neighbour untouched."""
    threads = fill(desk)
    dump = dump_text(store_url).lower()
    assert all(needle.lower() in dump for needle in (ADDRESS, NAME, *SUBJECTS))
    before = {s.thread: s for s in summaries(store)}
    unsent = [i.id for i in store.outbox() if i.state == "pending"
              and i.thread_id in (threads["answered"], threads["new"])]

    erased = erase(store, ADDRESS.upper(), T0 + timedelta(hours=8))

    dump = assert_gone(store_url)
    assert NEIGHBOUR in dump and "my own matter" in dump and "xavier jane" in dump
    assert "asked whether [erased] is a colleague" in dump, "only her address is cut out"
    assert f"<1234.{NEIGHBOUR}>" in dump
    assert (erased.threads_anonymised, erased.threads_closed) == (2, 2)
    assert erased.outbox_failed == len(unsent) >= 1
    assert erased.messages >= 4 and erased.known_ids >= 3 and erased.events >= 1
    after = {s.thread: s for s in summaries(store)}
    for key in ("answered", "new"):
        old, new = before[threads[key]], after[threads[key]]
        assert new.state == "resolved"
        assert (new.first_response_seconds, new.first_response_met, new.breaches,
                new.policy, new.agent) == (old.first_response_seconds, old.first_response_met,
                                           old.breaches, old.policy, old.agent)
    assert after[threads["answered"]].breaches == ("first_response",)
    assert after[threads["neighbour"]].state == before[threads["neighbour"]].state
    with store.transaction() as tx:
        row = tx.thread(threads["answered"])
        assert row is not None and row.customer == ERASED_CUSTOMER and row.next_due_at is None
        assert (row.customer_name, row.customer_offset) == ("", None)  # as status updates greet
    failed = {i.id: i for i in store.outbox()}
    assert all(failed[i].state == "failed" and failed[i].last_error == "erased"
               for i in unsent)
    assert not any(erase(store, ADDRESS, T0 + timedelta(hours=9)).counts().values())


def test_her_next_mail_starts_afresh(desk: Desk, store: Store) -> None:
    """A reply to an erased thread's acknowledgement, reference and all, opens a new thread."""
    threads = fill(desk)
    [ack] = [i for i in store.outbox() if i.thread_id == threads["answered"] and i.kind == "ack"]
    ack_subject = str(message_from_bytes(ack.body, policy=default)["Subject"])
    erase(store, ADDRESS, T0 + timedelta(hours=8))
    again = customer_mail(9, name=NAME, addr=ADDRESS, subject=ack_subject,
                          In_Reply_To=ack.message_id, References=ack.message_id)
    outcome = desk.feed(again, T0 + timedelta(hours=9))
    assert outcome.verdict.rule == "new_thread"
    assert outcome.thread not in threads.values()


def test_mail_being_sent_is_waited_for(desk: Desk, store: Store) -> None:
    """An item the sender holds is left alone until it is done, then erased; `forget`
    polls until then."""
    threads = fill(desk)
    with store.transaction() as tx:
        tx.session.connection().execute(
            update(OUTBOX).where(OUTBOX.c.thread_id == threads["new"]).values(state="sending"))
    clock = FakeClock(T0 + timedelta(hours=8))
    first = erase(store, ADDRESS, clock.now())
    assert first.in_flight == 1

    def sent(_seconds: float) -> None:  # the sender finishes while forget waits
        with store.transaction() as tx:
            tx.session.connection().execute(update(OUTBOX).where(
                OUTBOX.c.state == "sending").values(state="sent"))

    total = forget(store, ADDRESS, clock, sleep=sent)
    assert total.in_flight == 0
    with store.reading() as conn:
        body, recipient = conn.execute(select(OUTBOX.c.body, OUTBOX.c.recipient).where(
            OUTBOX.c.thread_id == threads["new"])).one()
    assert (bytes(body), recipient) == (b"", "")


def test_erasure_runs_beside_a_writer(desk: Desk, store: Store, store_url: str) -> None:
    """Erasing through a second connection pool (as the command beside the daemon) while mail
    from others keeps being recorded: both finish, and her data is gone."""
    fill(desk)
    other = Store.open(store_url)
    errors: list[BaseException] = []
    done = threading.Event()

    def write() -> None:
        try:
            n = 100
            while not done.is_set() and n < 160:
                n += 1
                original = customer_mail(n, addr=f"busy{n}@example.org")
                desk.feed(original, T0 + timedelta(hours=8))
                desk.feed(reply_to(original), T0 + timedelta(hours=8, minutes=1))
        except BaseException as exc:  # reported below
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        total = forget(other, ADDRESS, FakeClock(T0 + timedelta(hours=8)))
    finally:
        done.set()
        writer.join(timeout=60)
        other.close()
    assert not errors and total.threads_anonymised == 2
    assert_gone(store_url)
