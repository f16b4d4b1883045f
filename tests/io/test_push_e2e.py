"""Dovecot's push_notification plugin (OX driver) calling the real daemon at /push/dovecot.

Dovecot is configured as the README says (plugins for LMTP, METADATA with the login set by
doveadm, the driver's url with user:pass@) and mail is delivered by LMTP. To show that a
push, not IDLE, found a message, the server offers no IDLE and the daemon polls once an
hour: an acknowledgement within seconds can only have come from the push. That a push ends
an IDLE wait is shown on the watcher itself, which would otherwise wait 30 s.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from mailbridge.clock import SystemClock
from mailbridge.config import load_config
from mailbridge.io.imap_watcher import IDLE_CHECK_SECONDS, Fetched, ImapWatcher
from mailbridge.metrics.families import Metrics
from mailbridge.store.db import Store
from mailbridge.store.engine import engine_for
from mailbridge.store.migrations import migrate
from tests.daemon import Daemon, write_config
from tests.mails import customer_mail
from tests.servers import Dovecot, SmtpPeer, free_port, wait_for

pytestmark = pytest.mark.slow

NO_IDLE = "imap_capability = IMAP4rev1 LITERAL+ UIDPLUS ENABLE"
HOURLY_POLL = 'poll_interval = "1h"'
PUSH_AUTH = 'push_username = "dovecot"\npush_password_file = "push-password"\n'
PASSWORD = "pUsh-s3cret_0"


class Setup:
    """A Dovecot that pushes to a daemon; built unstarted, as the url names the daemon."""

    def __init__(self, tmp_path: Path, peer: SmtpPeer, *, extra_config: str = "",
                 extra_imap: str = "", auth: bool = True, credentials: str = "",
                 push_user: str | None = None, url: str | None = None,
                 driver_options: str = "") -> None:
        self.dovecot = Dovecot(tmp_path / "dovecot", extra_config=extra_config,
                               push_user=push_user)
        (tmp_path / "mb").mkdir()
        (tmp_path / "mb" / "push-password").write_text(PASSWORD + "\n")
        config = write_config(tmp_path / "mb", self.dovecot, peer, extra_imap=extra_imap,
                              extra_http=PUSH_AUTH if auth else "")
        self.daemon = Daemon(config)
        userinfo = credentials or (f"dovecot:{PASSWORD}@" if auth else "")
        self.dovecot.push_url = (url or f"http://{userinfo}{self.daemon.listen}/push/dovecot") \
            + driver_options

    def pushes(self, outcome: str) -> float:
        return self.daemon.metric("mailbridge_push_notifications_total", outcome=outcome)

    def acked(self) -> float:
        return self.daemon.metric("mailbridge_acks_sent_total", mailbox="INBOX")


@pytest.fixture
def setups() -> Iterator[list[Setup]]:
    made: list[Setup] = []
    yield made
    for setup in made:
        if setup.daemon.process is not None:
            setup.daemon.stop()
        setup.dovecot.stop()


def _deliver(setup: Setup, n: int) -> None:
    """Customer n's mail by LMTP, as an MTA passes it on (the ack goes to the envelope's)."""
    setup.dovecot.deliver(customer_mail(n), sender=f"customer{n}@example.org")


def _start(setups: list[Setup], setup: Setup) -> Setup:
    setups.append(setup)
    setup.dovecot.start()
    setup.daemon.start()
    wait_for(lambda: "event=connected" in setup.daemon.log(), timeout=15,
             message=setup.daemon.log)
    return setup


def test_a_push_acknowledges_mail_when_idle_cannot(
        tmp_path: Path, smtp_peer: SmtpPeer, setups: list[Setup]) -> None:
    """With no IDLE and an hourly poll, mail delivered by LMTP is acknowledged through the
    authenticated push; Dovecot's log shows no push error."""
    setup = _start(setups, Setup(tmp_path, smtp_peer, extra_config=NO_IDLE,
                                 extra_imap=HOURLY_POLL))
    assert "idle=False" in setup.daemon.log()
    for n in (1, 2):
        _deliver(setup, n)
        [*_, ack] = smtp_peer.wait_for_count(n, timeout=15)
        assert ack.rcpt_tos == [f"customer{n}@example.org"]
    assert setup.pushes("woken") == 2 and setup.pushes("unauthorized") == 0
    assert setup.dovecot.push_errors() == []
    assert "customer1@example.org" not in setup.daemon.log()  # no address at info


def test_wrong_credentials_are_refused_and_idle_still_acknowledges(
        tmp_path: Path, smtp_peer: SmtpPeer, setups: list[Setup]) -> None:
    """A push with the wrong password gets 401 (Dovecot logs it) and wakes nothing; the
    mail is still acknowledged, through IDLE."""
    setup = _start(setups, Setup(tmp_path, smtp_peer, credentials="dovecot:wrong@"))
    _deliver(setup, 1)
    smtp_peer.wait_for_count(1, timeout=15)
    wait_for(setup.dovecot.push_errors, timeout=10, message=setup.dovecot.log_tail)
    assert "401" in setup.dovecot.push_errors()[0]
    assert (setup.pushes("unauthorized"), setup.pushes("woken")) == (1, 0)
    assert "push event=unauthorized" in setup.daemon.log()
    assert "wrong" not in setup.daemon.log()


def test_a_push_for_another_login_is_answered_and_ignored(
        tmp_path: Path, smtp_peer: SmtpPeer, setups: list[Setup]) -> None:
    """A push naming a login nobody watches gets 2xx (no error in Dovecot's log) and is
    counted as not_watched; IDLE acknowledges the mail. (With user_from_metadata the driver
    sends the METADATA's login instead of the Dovecot user's.)"""
    setup = _start(setups, Setup(tmp_path, smtp_peer, push_user="sales@example.com",
                                 driver_options=" user_from_metadata"))
    _deliver(setup, 1)
    smtp_peer.wait_for_count(1, timeout=15)
    wait_for(lambda: setup.pushes("not_watched") == 1, timeout=10, message=setup.daemon.log)
    assert setup.pushes("woken") == 0 and setup.dovecot.push_errors() == []
    assert "push event=not_watched folder=INBOX" in setup.daemon.log()
    assert "sales@example.com" not in setup.daemon.log()  # the login only at debug


def test_push_and_idle_racing_give_one_ack(
        tmp_path: Path, smtp_peer: SmtpPeer, setups: list[Setup]) -> None:
    """Dovecot's push and IDLE both announce each message, and a flood of forged pushes
    comes on top, ending IDLE again and again: every customer still gets exactly one
    acknowledgement, and the IMAP session stays up."""
    setup = _start(setups, Setup(tmp_path, smtp_peer, auth=False))
    stop = threading.Event()
    forged = threading.Thread(target=_flood, args=(setup.daemon.listen, stop))
    forged.start()
    try:
        for n in range(1, 6):
            _deliver(setup, n)
        smtp_peer.wait_for_count(5, timeout=20)
    finally:
        stop.set()
        forged.join()
    _deliver(setup, 6)  # acknowledged after any second ack of 1-5
    received = smtp_peer.wait_for_count(6, timeout=20)
    wait_for(lambda: setup.acked() == 6, timeout=10, message=setup.daemon.log)
    assert sorted(m.rcpt_tos[0] for m in received) == [
        f"customer{n}@example.org" for n in range(1, 7)]
    assert setup.pushes("woken") > 6 and setup.dovecot.push_errors() == []
    assert "event=disconnected" not in setup.daemon.log()  # woken from IDLE, not dropped


def _flood(listen: str, stop: threading.Event) -> None:
    body = json.dumps({"user": "support@example.com", "event": "messageNew",
                       "folder": "INBOX"}).encode()
    while not stop.is_set():
        request = urllib.request.Request(f"http://{listen}/push/dovecot", data=body,
                                         method="PUT")
        with urllib.request.urlopen(request, timeout=5) as reply:
            assert reply.status == 204


def test_delivery_goes_on_while_the_push_endpoint_is_down(
        tmp_path: Path, smtp_peer: SmtpPeer, setups: list[Setup]) -> None:
    """With nothing listening at the driver's url, LMTP still delivers (Dovecot logs the
    failed push) and IDLE acknowledges the mail."""
    setup = _start(setups, Setup(tmp_path, smtp_peer,
                                 url=f"http://127.0.0.1:{free_port()}/push/dovecot"))
    _deliver(setup, 1)
    smtp_peer.wait_for_count(1, timeout=15)
    wait_for(setup.dovecot.push_errors, timeout=10, message=setup.dovecot.log_tail)
    assert setup.pushes("woken") == 0


def test_a_wake_ends_the_idle_wait_at_once(tmp_path: Path, dovecot: Dovecot) -> None:
    """The watcher's wake() ends an IDLE wait that would last 30 s without new mail, and the
    watcher looks at the mailbox again, each time, in the same IMAP session."""
    config = load_config(write_config(tmp_path / "mb", dovecot, SmtpPeer()))
    assert config.imap is not None
    store = Store(engine_for(f"sqlite:///{tmp_path}/store.sqlite3"))
    migrate(store.engine)
    registry = CollectorRegistry()
    seen: list[Fetched] = []
    watcher = ImapWatcher(config.imap, mailbox="INBOX", store=store, deliver=seen.extend,
                          clock=SystemClock(), metrics=Metrics(registry, ["INBOX"]))
    assert IDLE_CHECK_SECONDS >= 30
    watcher.start()
    try:
        looked = wait_for(lambda: watcher.last_sync, timeout=15, message="never logged in")
        for _ in range(3):
            watcher.wake()
            looked = wait_for(lambda before=looked: watcher.last_sync != before
                              and watcher.last_sync, timeout=10,
                              message="the wake did not end the IDLE wait")
        dovecot.append(customer_mail(1))
        wait_for(lambda: len(seen) == 1, timeout=15, message="the watcher missed mail")
        assert watcher.connected
        assert registry.get_sample_value("mailbridge_imap_reconnects_total",
                                         {"mailbox": "INBOX"}) == 0
    finally:
        watcher.stop()
