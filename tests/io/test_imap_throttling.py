"""Microsoft 365's throttling answers and Gmail's IDLE limit, against a scripted IMAP server
served by the test (`tests.imap_script`): Dovecot can be made to do neither.

A throttled login or command is waited out, longer each time and never shorter than the
server suggests, and a token is not reported refused for it; IDLE is ended and issued
again every `idle_refresh` on the same connection.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from imapclient.exceptions import IMAPClientError, LoginError
from prometheus_client import CollectorRegistry

from mailbridge.clock import SystemClock
from mailbridge.config import ImapSettings, load_config
from mailbridge.daemon.health import degraded
from mailbridge.daemon.sent_copies import SentCopier
from mailbridge.daemon.supervisor import stalled
from mailbridge.io.backoff import Backoff
from mailbridge.io.imap_connect import throttling
from mailbridge.io.imap_watcher import Fetched, ImapWatcher
from mailbridge.io.sent_folder import CopyError, SentFolder
from mailbridge.metrics.families import Metrics
from mailbridge.store.db import Store
from mailbridge.store.tables import OutboxItem, Thread
from tests.configs import MAILBOX, MINIMAL
from tests.imap_script import ScriptedImap
from tests.servers import wait_for

THROTTLED = "NO [THROTTLED] Request is throttled."
SUGGESTING = "NO Request is throttled. Suggested Backoff Time: 1500 milliseconds"


class _Tokens:
    """A token source that counts what it is asked."""

    def __init__(self) -> None:
        self.given = 0
        self.refusals = 0

    def access_token(self) -> str:
        self.given += 1
        return f"token-{self.given}"

    def refused(self, token: str) -> None:
        self.refusals += 1


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path}/store.sqlite3")
    yield opened
    opened.close()


def _watcher(server: ScriptedImap, store: Store, *, throttle: Backoff, auth: str = "password",
             tokens: _Tokens | None = None, **imap: Any) -> ImapWatcher:
    settings = ImapSettings.model_validate({
        "host": "127.0.0.1", "port": server.port, "tls": "none",
        "username": "support@example.com", "password": "pw", "auth": auth,
        "read_timeout": "10s", **imap})

    def deliver(batch: Sequence[Fetched]) -> None:
        raise AssertionError(f"the scripted mailbox is empty: {batch}")

    return ImapWatcher(settings, mailbox="INBOX", store=store, deliver=deliver,
                       clock=SystemClock(), metrics=Metrics(CollectorRegistry(), ["INBOX"]),
                       tokens=tokens, throttle_backoff=throttle)


def _gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in pairwise(times)]


def test_the_answers_microsoft_throttles_with_are_recognised() -> None:
    """NO and BAD, with or without [THROTTLED], with the suggested wait in seconds; other
    refusals are not throttling."""
    found = throttling(IMAPClientError(f"select failed: {SUGGESTING}"))
    assert found is not None and found.suggested == 1.5
    found = throttling(LoginError("[THROTTLED] Request is throttled."))
    assert found is not None and found.suggested is None
    assert throttling(IMAPClientError("BAD Request is throttled. Suggested Backoff Time: "
                                      "299919 milliseconds")) is not None
    assert throttling(LoginError("[AUTHENTICATIONFAILED] Authentication failed.")) is None
    assert throttling(OSError("throttled")) is None


def test_a_throttled_oauth2_login_waits_what_the_server_suggests_and_keeps_its_token(
        store: Store, caplog: pytest.LogCaptureFixture) -> None:
    """Each AUTHENTICATE answered "throttled, wait 1.5 s": the next connection comes no
    sooner, the token is never reported refused (no refresh for it), one token per try."""
    with ScriptedImap({"AUTHENTICATE": SUGGESTING}) as server:
        tokens = _Tokens()
        watcher = _watcher(server, store, throttle=Backoff(initial=0.2, cap=0.4),
                           auth="oauth2", tokens=tokens)
        watcher.start()
        try:
            server.wait_for(lambda: len(server.connections) >= 3)
        finally:
            watcher.stop()
    assert all(gap >= 1.5 for gap in _gaps(server.connections[:3])), server.connections
    assert tokens.refusals == 0
    assert len(server.heard("AUTHENTICATE")) == tokens.given  # one try per connection
    throttled = [r for r in caplog.records if "event=throttled" in r.getMessage()]
    assert throttled and throttled[0].levelno == logging.WARNING
    assert "suggested_s=1.5" in throttled[0].getMessage()
    assert "mailbox=INBOX" in throttled[0].getMessage()


def test_throttling_after_a_catch_up_backs_off_longer_each_time(store: Store) -> None:
    """Login, SELECT and SEARCH work, IDLE is throttled: a session that caught up does not
    reset the throttle's backoff, so the reconnects come ever later (1-2 s, then 2-4 s),
    not every second as after an ordinary drop."""
    with ScriptedImap({"IDLE": THROTTLED}) as server:
        watcher = _watcher(server, store, throttle=Backoff(initial=2.0, cap=8.0))
        watcher.start()
        try:
            server.wait_for(lambda: len(server.connections) >= 3, timeout=30)
        finally:
            watcher.stop()
    first, second = _gaps(server.connections[:3])
    assert first >= 1.0 and second >= 2.0, server.connections
    assert {1, 2} <= {conn for conn, _ in server.heard("SEARCH")}  # each caught up


def test_idle_is_issued_again_every_idle_refresh_on_the_same_connection(store: Store) -> None:
    """With idle_refresh = 1s the watcher ends IDLE with DONE and issues it again about
    every second, without reconnecting (Gmail ends an IDLE after about 29 minutes, and
    idle_refresh is at most 29m)."""
    with ScriptedImap() as server:
        watcher = _watcher(server, store, throttle=Backoff(), idle_refresh="1s")
        watcher.start()
        try:
            server.wait_for(lambda: len(server.heard("IDLE")) >= 3)
        finally:
            watcher.stop()
        idles = server.heard("IDLE")[:3]
        dones = server.heard("DONE")
    assert {conn for conn, _ in idles} == {1} and len(server.connections) == 1
    assert all(gap >= 0.9 for gap in _gaps([at for _, at in idles]))
    assert len(dones) >= 2 and dones[0][1] < idles[1][1]  # DONE before the next IDLE


def test_a_throttled_sent_folder_login_is_unavailable_with_the_suggested_wait() -> None:
    """The Sent-copy appender's login throttled: a transient "unavailable" that carries the
    server's suggested wait for the copier's retry, and no token refused."""
    with ScriptedImap({"AUTHENTICATE": SUGGESTING}) as server:
        tokens = _Tokens()
        settings = ImapSettings.model_validate({
            "host": "127.0.0.1", "port": server.port, "tls": "none",
            "username": "support@example.com", "auth": "oauth2"})
        folder = SentFolder(settings, fallback="Sent", tokens=tokens)
        with pytest.raises(CopyError) as caught:
            folder.append(b"Subject: x\r\n\r\nx\r\n", when=datetime.now(UTC))
    assert (caught.value.reason, caught.value.retry_after) == ("unavailable", 1.5)
    assert tokens.refusals == 0 and len(server.connections) == 1


def test_a_refused_or_throttled_login_shows_the_mailbox_degraded_until_it_gets_in(
        store: Store, tmp_path: Path) -> None:
    """Health names the mailbox while its server refuses the login, then while it throttles
    us, and nothing once a session starts."""
    path = tmp_path / "mailbridge.toml"
    path.write_text(MINIMAL + MAILBOX)
    config = load_config(path)
    with ScriptedImap({"LOGIN": "NO [AUTHENTICATIONFAILED] Authentication failed."}) as server:
        watcher = _watcher(server, store, throttle=Backoff(initial=0.2, cap=0.4))
        watcher.start()
        try:
            [line] = wait_for(lambda: degraded(config, None, [watcher]), timeout=20)
            assert line == "mailbox INBOX: the server refuses the login: " \
                           "[AUTHENTICATIONFAILED] Authentication failed."
            server.answers["LOGIN"] = THROTTLED
            [line] = wait_for(lambda: [line for line in degraded(config, None, [watcher])
                                       if "throttles" in line], timeout=20)
            assert line.startswith("mailbox INBOX: the server throttles the connection: "
                                   "[THROTTLED] Request is throttled.; next try in ")
            del server.answers["LOGIN"]
            wait_for(lambda: watcher.connected, timeout=20)
            assert degraded(config, None, [watcher]) == []
        finally:
            watcher.stop()


class _ThrottledFolder:
    """The Sent folder as SentFolder reports a throttled server (its own test is above)."""

    def append(self, body: bytes, *, when: datetime) -> str:
        raise CopyError("unavailable", "IMAP APPEND to the Sent folder: Request is throttled. "
                        "Suggested Backoff Time: 120000 milliseconds", retry_after=120.0)

    def close(self) -> None:
        pass


def test_the_copier_retries_a_throttled_copy_no_sooner_than_the_server_suggests(
        store: Store) -> None:
    """The copy of a sent ack is tried again after the suggested 120 s, not after the
    copier's own 1-2 s backoff."""
    now = datetime.now(UTC)
    with store.transaction() as tx:
        tx.add(Thread(id="ABCDEF", created_at=now, customer="a@x", agent_name="D",
                      agent_email="d@x", first_response_due=now + timedelta(hours=4)))
        tx.add(OutboxItem(thread_id="ABCDEF", kind="ack", mailbox="INBOX", message_id="<a@x>",
                          envelope_from="", recipient="a@x", body=b"Subject: x\r\n\r\nx",
                          next_attempt_at=now, created_at=now, arrived_at=now, state="sent",
                          sent_at=now))
    copier = SentCopier(store, _ThrottledFolder(), SystemClock(),
                        Metrics(CollectorRegistry(), ["INBOX"]),
                        backoff=Backoff(initial=2.0, cap=300.0))
    assert copier.copy_round() is False
    [item] = store.outbox()
    assert item.appended_at is None and item.append_next_at is not None
    assert item.append_next_at >= now + timedelta(seconds=120)


def test_a_long_throttling_wait_keeps_the_watcher_alive_for_health(store: Store) -> None:
    """While it waits out a throttling (up to 15 minutes, longer than health allows a
    watcher to be silent) the watcher's heartbeat goes on, so health never calls it stuck and
    systemd's watchdog never restarts the daemon for it."""
    slow = "NO Request is throttled. Suggested Backoff Time: 6000 milliseconds"
    with ScriptedImap({"LOGIN": slow}) as server:
        watcher = _watcher(server, store, throttle=Backoff(initial=0.2, cap=0.4),
                           read_timeout="1s")
        watcher.start()
        try:
            wait_for(lambda: watcher.problem and "throttles" in watcher.problem, timeout=20)
            first = watcher.heartbeat
            wait_for(lambda: watcher.heartbeat >= first + 2, timeout=5)
            assert len(server.connections) == 1  # still waiting, not reconnected
            assert stalled([watcher], time.monotonic()) == []
        finally:
            watcher.stop()
