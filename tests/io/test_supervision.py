"""Supervised parts: a bug in the sender, the scheduler or a watcher is logged with its
traceback, counted, shown on /healthz, and the part starts again; a message that trips a bug
is recorded with its arrival time while the rest of its batch goes on.

The service runs in this process against Dovecot and an SMTP peer. The only stand-in is the
fault: a store that raises an unexpected error once from one method, when armed.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mailbridge.config import load_config
from mailbridge.daemon.service import Service
from mailbridge.io.backoff import Backoff
from mailbridge.store.db import Store
from tests.daemon import run_service, write_config
from tests.mails import customer_mail
from tests.servers import Dovecot, SmtpPeer, wait_for

pytestmark = pytest.mark.slow


class InjectedBug(RuntimeError):
    """The fault the tests inject: an error no part expects."""


class FaultyStore(Store):
    """The real store, whose method `armed` raises `InjectedBug` once."""

    armed: str = ""
    calls_after: int = 0
    """Calls of the armed method that went through after the fault."""

    def _fault(self, method: str) -> None:
        if FaultyStore.armed == method:
            FaultyStore.armed = ""
            FaultyStore.calls_after = 0
            raise InjectedBug(f"injected into {method}")
        FaultyStore.calls_after += 1

    def claim_outbox_batch(self, *args: Any, **kwargs: Any) -> Any:
        self._fault("claim_outbox_batch")
        return super().claim_outbox_batch(*args, **kwargs)

    def next_due_time(self) -> datetime | None:
        self._fault("next_due_time")
        return super().next_due_time()

    def cursor(self, account: str, mailbox: str) -> tuple[int, int] | None:
        self._fault("cursor")
        return super().cursor(account, mailbox)


def slow_restarts() -> Backoff:
    """1-2 s before a restart: long enough for a test to see the part down."""
    return Backoff(initial=2.0, cap=2.0)


def healthz(service: Service) -> tuple[int, str]:
    assert service.http is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{service.http.port}/healthz",
                                    timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sample(service: Service, name: str, component: str) -> float | None:
    return service.registry.get_sample_value(name, {"component": component})


def run(config: Path, scenario: Callable[[Service], Awaitable[None]]) -> None:
    run_service(Service(load_config(config), open_store=FaultyStore.open,
                        restart_backoff=slow_restarts), scenario)


async def until(predicate: Callable[[], object], timeout: float = 10.0,
                message: str | Callable[[], str] = "condition not met") -> None:
    await asyncio.to_thread(wait_for, predicate, timeout, 0.02, message)


def fault_logged(caplog: pytest.LogCaptureFixture, component: str) -> bool:
    """Whether the part's fault was logged at error level with its traceback."""
    return any(r.levelno == logging.ERROR and r.exc_info and "event=failed" in r.getMessage()
               and f"component={component} " in r.getMessage() for r in caplog.records)


@pytest.fixture(autouse=True)
def _disarm() -> None:
    FaultyStore.armed = ""


@pytest.fixture
def config(tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> Path:
    return write_config(tmp_path / "mb", dovecot, smtp_peer)


@pytest.mark.parametrize(("component", "method"), [
    ("sender", "claim_outbox_batch"), ("scheduler", "next_due_time")])
def test_a_bug_in_a_part_is_logged_counted_shown_and_the_part_restarts(
        config: Path, dovecot: Dovecot, smtp_peer: SmtpPeer, caplog: pytest.LogCaptureFixture,
        component: str, method: str) -> None:
    """The part's error is logged with its traceback, /healthz names it while it waits, and
    once it is back (restarts 1, up 1) a new customer's mail is acknowledged."""
    caplog.set_level(logging.INFO)
    FaultyStore.armed = method

    async def scenario(service: Service) -> None:
        await until(lambda: fault_logged(caplog, component), message="no error logged")
        assert sample(service, "mailbridge_component_up", component) == 0
        status, body = await asyncio.to_thread(healthz, service)
        assert status == 503 and component in body, body
        await until(lambda: sample(service, "mailbridge_component_up", component) == 1)
        assert sample(service, "mailbridge_component_restarts_total", component) == 1
        assert (await asyncio.to_thread(healthz, service)) == (200, "ok\n")
        await asyncio.to_thread(dovecot.append, customer_mail(1))
        [ack] = await asyncio.to_thread(smtp_peer.wait_for_count, 1, 15.0)
        assert ack.rcpt_tos == ["customer1@example.org"]
        await until(lambda: FaultyStore.calls_after > 0, message="the part never ran again")
        for other in {"sender", "scheduler", "membership"} - {component}:
            assert sample(service, "mailbridge_component_restarts_total", other) == 0

    run(config, scenario)
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    assert record.exc_info is not None and record.exc_info[0] is InjectedBug


def test_a_bug_in_a_watcher_restarts_its_session(
        config: Path, dovecot: Dovecot, smtp_peer: SmtpPeer,
        caplog: pytest.LogCaptureFixture) -> None:
    """A watcher whose session hits a bug is counted as restarted, and then sees new mail."""
    caplog.set_level(logging.INFO)
    FaultyStore.armed = "cursor"

    async def scenario(service: Service) -> None:
        await until(lambda: sample(service, "mailbridge_component_restarts_total",
                                   "watcher") == 1, message="the watcher was not restarted")
        assert sample(service, "mailbridge_component_up", "watcher") == 1
        await asyncio.to_thread(dovecot.append, customer_mail(1))
        await asyncio.to_thread(smtp_peer.wait_for_count, 1, 15.0)

    run(config, scenario)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    assert [r.exc_info[0] for r in errors if r.exc_info] == [InjectedBug]
    assert "component=watcher part=\"watcher " in errors[0].getMessage()  # INBOX or Sent


POISON_ACK = ('{% if "POISON" in subject %}{{ 1 // 0 }}{% endif %}'
              "Hello {{ greeting_name }}, {{ agent_name }} answers {{ due_words }}. "
              "{{ ref_tag }}\n")


def test_a_message_that_trips_a_bug_is_recorded_and_its_batch_goes_on(
        tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """Of three messages fetched together, the one whose acknowledgement cannot be written is
    recorded with its IMAP arrival time and the error; the other two are acknowledged."""
    own = tmp_path / "mb" / "templates" / "en"
    own.mkdir(parents=True)
    (own / "ack.txt.j2").write_text(POISON_ACK, encoding="utf-8")
    config = write_config(tmp_path / "mb", dovecot, smtp_peer,
                          extra='\n[templates]\ndir = "templates"\n')
    arrived = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
    dovecot.append(customer_mail(1))
    dovecot.append(customer_mail(2, subject="POISON pill"), msg_time=arrived)
    dovecot.append(customer_mail(3))

    async def scenario(service: Service) -> None:
        await asyncio.to_thread(smtp_peer.wait_for_count, 2, 15.0)
        assert service.store is not None
        store = service.store
        await until(lambda: len(store.messages()) == 3)
        rows = store.messages()
        assert [r.rule for r in rows] == ["new_thread", "internal_error", "new_thread"]
        assert "ZeroDivisionError" in rows[1].reason
        assert rows[1].received_at.astimezone(UTC) == arrived
        assert sample(service, "mailbridge_component_restarts_total", "watcher") == 0

    run(config, scenario)
    assert sorted(r for m in smtp_peer.messages for r in m.rcpt_tos) == [
        "customer1@example.org", "customer3@example.org"]
