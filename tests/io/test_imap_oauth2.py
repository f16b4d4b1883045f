"""IMAP login with OAuth2 against a real Dovecot whose passdb introspects tokens at an issuer
served by the test: XOAUTH2, OAUTHBEARER when only that is offered, a refused token
reported and replaced once, and no token in any log record."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, LoginError
from prometheus_client import CollectorRegistry

from mailbridge.clock import SystemClock
from mailbridge.config import ImapSettings, load_config
from mailbridge.errors import TransientError
from mailbridge.io.imap_connect import log_in, open_client
from mailbridge.io.imap_watcher import Fetched, ImapWatcher
from mailbridge.io.sent_folder import SentFolder
from mailbridge.metrics.families import Metrics
from mailbridge.store.db import Store
from mailbridge.store.engine import engine_for
from mailbridge.store.migrations import migrate
from tests.daemon import write_config
from tests.mails import customer_mail
from tests.oauth2_server import IssuedTokens, TokenIssuer
from tests.servers import DOVECOT_BINARY, INSTALL_HINT, Dovecot, SmtpPeer, wait_for
from tests.tcp_cut import CuttableLink

pytestmark = pytest.mark.slow


@pytest.fixture
def issuer() -> Iterator[TokenIssuer]:
    with TokenIssuer() as running:
        yield running


def _dovecot(tmp_path: Path, issuer: TokenIssuer, mechanisms: str = "xoauth2 oauthbearer",
             ) -> Dovecot:
    if not DOVECOT_BINARY.exists():
        pytest.fail(f"{DOVECOT_BINARY} is missing: {INSTALL_HINT}", pytrace=False)
    return Dovecot(tmp_path / "dovecot", oauth2_introspection_url=issuer.introspect_url,
                   oauth2_mechanisms=mechanisms)


@pytest.fixture
def dovecot(tmp_path: Path, issuer: TokenIssuer) -> Iterator[Dovecot]:
    with _dovecot(tmp_path, issuer) as server:
        yield server


def _settings(tmp_path: Path, dovecot: Dovecot, tls: str = "implicit") -> ImapSettings:
    path = write_config(tmp_path / "mb", dovecot, SmtpPeer(), imap_tls=tls,
                        extra_imap=f'ca_file = "{dovecot.ca_pem_path}"')
    imap = load_config(path).imap
    assert imap is not None
    return imap


def _logged_in(settings: ImapSettings, tokens: IssuedTokens) -> IMAPClient:
    client = open_client(settings)
    log_in(client, settings, tokens)
    return client


class _Refused:
    """A token source whose every token the issuer has revoked."""

    def __init__(self, issuer: TokenIssuer) -> None:
        self.issuer = issuer
        self.refusals: list[str] = []

    def access_token(self) -> str:
        token = self.issuer.issue(Dovecot.username)
        self.issuer.revoke(token)
        return token

    def refused(self, token: str) -> None:
        self.refusals.append(token)


def test_password_login_is_refused_for_the_oauth2_user(dovecot: Dovecot) -> None:
    """With the oauth2 passdb the user's password alone logs nobody in."""
    with (IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=10) as client,
          pytest.raises(LoginError)):
        client.login(dovecot.username, dovecot.password)


def test_watcher_logs_in_with_xoauth2_and_sees_new_mail(
        tmp_path: Path, issuer: TokenIssuer, dovecot: Dovecot,
        caplog: pytest.LogCaptureFixture) -> None:
    """The watcher logs in with XOAUTH2, sees mail appended from another connection, and no
    token reaches a log record, even at debug."""
    caplog.set_level(logging.DEBUG)
    settings = _settings(tmp_path, dovecot)
    tokens = IssuedTokens(issuer, dovecot.username)
    store = Store(engine_for(f"sqlite:///{tmp_path}/store.sqlite3"))
    migrate(store.engine)
    seen: list[Fetched] = []

    def deliver(batch: Sequence[Fetched]) -> None:
        seen.extend(batch)

    watcher = ImapWatcher(settings, mailbox="INBOX", store=store, deliver=deliver,
                          clock=SystemClock(), metrics=Metrics(CollectorRegistry(), ["INBOX"]),
                          tokens=tokens)
    watcher.start()
    try:
        wait_for(lambda: watcher.connected, timeout=15, message="the watcher never logged in")
        dovecot.append(customer_mail(1))
        wait_for(lambda: len(seen) == 1, timeout=15, message="the watcher missed the mail")
    finally:
        watcher.stop()
    assert seen[0].message is not None
    assert tokens.refusals == []
    _assert_no_token(caplog, tokens.given)


def test_refused_token_is_reported_and_a_fresh_one_logs_in(
        tmp_path: Path, issuer: TokenIssuer, dovecot: Dovecot,
        caplog: pytest.LogCaptureFixture) -> None:
    """An expired token is refused, the source hears of it, and the next token logs in."""
    caplog.set_level(logging.DEBUG)
    expired = issuer.issue(dovecot.username, lifetime=0)
    tokens = IssuedTokens(issuer, dovecot.username, first=expired)
    with _logged_in(_settings(tmp_path, dovecot), tokens) as client:
        client.select_folder("INBOX", readonly=True)
    assert _mechanisms(caplog) == ["XOAUTH2"]
    assert tokens.refusals == [expired]
    assert len(tokens.given) == 2 and tokens.given[1] != expired
    _assert_no_token(caplog, tokens.given)


def test_revoked_token_in_the_appender_is_replaced(
        tmp_path: Path, issuer: TokenIssuer, dovecot: Dovecot) -> None:
    """The Sent-folder appender logs in with OAuth2 too, past a revoked token."""
    revoked = issuer.issue(dovecot.username)
    issuer.revoke(revoked)
    tokens = IssuedTokens(issuer, dovecot.username, first=revoked)
    folder = SentFolder(_settings(tmp_path, dovecot, tls="starttls"), fallback="Sent",
                        tokens=tokens)
    try:
        assert folder.append(b"Subject: copy\r\n\r\nHello\r\n",
                             when=datetime(2026, 3, 2, 9, 0, tzinfo=UTC)) == "Sent"
    finally:
        folder.close()
    assert tokens.refusals == [revoked]
    assert dovecot.uids("Sent") == [1]


def test_a_second_refusal_is_a_login_error(
        tmp_path: Path, issuer: TokenIssuer, dovecot: Dovecot) -> None:
    """Two refused tokens in a row end the login with a LoginError, both reported."""
    tokens = _Refused(issuer)
    client = open_client(_settings(tmp_path, dovecot))
    try:
        with pytest.raises(LoginError, match="refused twice"):
            log_in(client, _settings(tmp_path, dovecot), tokens)
    finally:
        client.shutdown()
    assert len(tokens.refusals) == 2


def test_a_connection_lost_during_the_login_is_no_refusal(
        tmp_path: Path, issuer: TokenIssuer, dovecot: Dovecot) -> None:
    """A server that goes away while it checks the token ends the login with the lost
    connection; the token is not reported refused and not tried again. The connection is
    cut between client and server (stopping Dovecot instead lets its login process answer
    'Authentication failed' first, now and then)."""
    outcome: list[BaseException] = []
    with CuttableLink(dovecot.host, dovecot.tls_port) as link:
        settings = _settings(tmp_path, dovecot).model_copy(update={"port": link.port})
        tokens = IssuedTokens(issuer, dovecot.username)
        client = open_client(settings)

        def login() -> None:
            try:
                log_in(client, settings, tokens)
            except BaseException as exc:  # handed to the test's thread
                outcome.append(exc)

        issuer.hold()
        thread = threading.Thread(target=login, daemon=True)
        thread.start()
        try:
            wait_for(lambda: issuer.held >= 1, timeout=10, message="Dovecot never introspected")
            link.cut()
            thread.join(15)
        finally:
            issuer.release()
            client.shutdown()
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], IMAPClientAbortError), outcome
    assert tokens.refusals == [] and len(tokens.given) == 1


class _NoGrant:
    """A token source whose grant was revoked: it has no token to give."""

    def access_token(self) -> str:
        raise TransientError("the refresh token was refused: invalid_grant")

    def refused(self, token: str) -> None:
        raise AssertionError("no token was handed out")


def test_a_source_without_a_token_is_a_login_error(tmp_path: Path, dovecot: Dovecot) -> None:
    """A token source that cannot give a token ends the login with a LoginError."""
    settings = _settings(tmp_path, dovecot)
    client = open_client(settings)
    try:
        with pytest.raises(LoginError, match="no OAuth2 access token"):
            log_in(client, settings, _NoGrant())
    finally:
        client.shutdown()


def test_oauthbearer_when_the_server_offers_only_that(
        tmp_path: Path, issuer: TokenIssuer, caplog: pytest.LogCaptureFixture) -> None:
    """A server offering OAUTHBEARER and not XOAUTH2 gets OAUTHBEARER, refusals included."""
    caplog.set_level(logging.DEBUG)
    with _dovecot(tmp_path, issuer, mechanisms="oauthbearer") as dovecot:
        revoked = issuer.issue(dovecot.username)
        issuer.revoke(revoked)
        tokens = IssuedTokens(issuer, dovecot.username, first=revoked)
        with _logged_in(_settings(tmp_path, dovecot), tokens) as client:
            client.select_folder("INBOX", readonly=True)
    assert _mechanisms(caplog) == ["OAUTHBEARER"]
    assert tokens.refusals == [revoked]
    _assert_no_token(caplog, tokens.given)


def _mechanisms(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The mechanisms of the logins that succeeded, as logged."""
    found = [(record.msg, record.args) for record in list(caplog.records)
             if record.name == "mailbridge.io.imap_connect"]
    return [(msg % args).rsplit("mechanism=", 1)[1] for msg, args in found
            if "event=logged_in" in str(args)]


def _assert_no_token(caplog: pytest.LogCaptureFixture, tokens: Sequence[str]) -> None:
    assert caplog.records, "nothing was logged: the check would prove nothing"
    for record in list(caplog.records):
        # The raw message and arguments, not getMessage(): a library's debug record whose
        # text does not fit its arguments must not hide a token (nor fail the check).
        text = f"{record.msg!s} {record.args!r} {record.exc_text or ''}"
        for token in tokens:
            assert token not in text, f"a token reached the log: {record.name}"
