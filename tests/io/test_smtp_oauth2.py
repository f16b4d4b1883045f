"""SMTP logins with OAuth2: the transport, the shared token source and a token endpoint.

The token endpoint (`tests.oauth2_token_endpoint`) rotates the refresh token on every
refresh, and the old one dies; the SMTP peer (aiosmtpd, STARTTLS) accepts AUTH XOAUTH2
only with a token that endpoint issued and that is still alive, and no password login.
Our clock is a `FakeClock`: it decides when the source refreshes.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session
from prometheus_client import CollectorRegistry

from mailbridge.clock import FakeClock
from mailbridge.config import SmtpSettings
from mailbridge.config.oauth2 import OAuth2Settings
from mailbridge.errors import TransientError
from mailbridge.io.backoff import Backoff
from mailbridge.io.oauth2 import TokenError, TokenSource
from mailbridge.io.smtp_sender import SmtpTransport
from mailbridge.metrics.families import Metrics
from tests.oauth2_token_endpoint import TokenEndpoint
from tests.servers import SmtpPeer, _RecordingHandler

USER = "support@example.com"


class _OAuth2Handler(_RecordingHandler):
    """Requires AUTH XOAUTH2 with a live token of `endpoint` before MAIL."""

    def __init__(self, peer: SmtpPeer, endpoint: TokenEndpoint) -> None:
        super().__init__(peer)
        self.endpoint = endpoint
        self.refusals = 0

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        fields = dict(part.split("=", 1) for part in
                      base64.b64decode(args[1]).decode().split("\x01") if "=" in part)
        token = fields.get("auth", "").removeprefix("Bearer ")
        if fields.get("user") == USER and self.endpoint.valid(token):
            return AuthResult(success=True, auth_data=USER)
        self.refusals += 1
        answer = await server.challenge_auth('{"status":"401","schemes":"Bearer"}')
        assert answer == b"", answer  # the client's empty line, never the token again
        return AuthResult(success=False, handled=False)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        if not session.authenticated:
            return "530 5.7.0 Authentication required"
        return await super().handle_MAIL(server, session, envelope, address, mail_options)


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    endpoint = TokenEndpoint(lifetime=600.0).start()
    yield endpoint
    endpoint.stop()


@contextlib.contextmanager
def oauth2_peer(endpoint: TokenEndpoint) -> Iterator[tuple[SmtpPeer, _OAuth2Handler]]:
    """An SMTP peer over TLS that takes only XOAUTH2 with a live token of `endpoint`."""
    peer = SmtpPeer(tls=True)
    handler = peer._handler = _OAuth2Handler(peer, endpoint)
    with peer:
        yield peer, handler


@pytest.fixture
def peer(endpoint: TokenEndpoint) -> Iterator[tuple[SmtpPeer, _OAuth2Handler]]:
    with oauth2_peer(endpoint) as running:
        yield running


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2025, 3, 3, 9, 0, tzinfo=UTC))


def _source(endpoint: TokenEndpoint, tmp_path: Path, clock: FakeClock,
            metrics: Metrics | None = None) -> TokenSource:
    file = tmp_path / "oauth2-refresh-token"
    if not file.exists():
        file.write_text(endpoint.refresh_token + "\n")
    settings = OAuth2Settings(provider="custom", token_url=endpoint.url,
                              client_id=endpoint.client_id)
    return TokenSource.from_config(settings, state_dir=tmp_path, clock=clock, metrics=metrics,
                                   backoff=Backoff(initial=60.0, cap=60.0))


def _transport(peer: SmtpPeer, tokens: TokenSource, clock: FakeClock) -> SmtpTransport:
    settings = SmtpSettings(host=peer.host, port=peer.port, tls="starttls",
                            ca_file=peer.ca_pem_path, auth="oauth2", username=USER)
    return SmtpTransport(settings, local_hostname="test.example", clock=clock, tokens=tokens)


def _mail(n: int) -> bytes:
    return f"Subject: ack {n}\r\nMessage-ID: <{n}@test>\r\n\r\nThanks.\r\n".encode()


def test_many_refreshes_during_a_stream_lose_nothing_and_send_nothing_twice(
        endpoint: TokenEndpoint, peer: tuple[SmtpPeer, _OAuth2Handler], clock: FakeClock,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    smtp, _handler = peer
    tokens = _source(endpoint, tmp_path, clock)
    transport = _transport(smtp, tokens, clock)
    stop = threading.Event()
    seen: list[str] = []

    def other_logins() -> None:  # the watchers and the relay's upstream, at the same time
        while not stop.is_set():
            seen.append(tokens.access_token())

    others = [threading.Thread(target=other_logins) for _ in range(3)]
    for thread in others:
        thread.start()
    try:
        for n in range(20):
            clock.advance(timedelta(seconds=500))  # past three quarters of 600 s: refresh
            transport.close()  # a new connection, a new login
            transport.send("", f"customer{n}@example.org", _mail(n))
    finally:
        stop.set()
        for thread in others:
            thread.join()
        transport.close()
    got = smtp.wait_for_count(20)
    assert sorted(m.data.split(b"\r\n")[0] for m in got) == \
        sorted(f"Subject: ack {n}".encode() for n in range(20))
    assert len(got) == 20
    assert endpoint.refreshes >= 20 and endpoint.failures == 0  # never a dead refresh token
    file = tmp_path / "oauth2-refresh-token"
    assert file.read_text().strip() == endpoint.refresh_token
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    _no_secret_logged(caplog, [*endpoint.issued(), endpoint.refresh_token])


def test_the_rotated_refresh_token_survives_a_restart(
        endpoint: TokenEndpoint, peer: tuple[SmtpPeer, _OAuth2Handler], clock: FakeClock,
        tmp_path: Path) -> None:
    first = _source(endpoint, tmp_path, clock)
    first.access_token()
    original = endpoint.refresh_token
    assert (tmp_path / "oauth2-refresh-token").read_text().strip() == original
    restarted = _source(endpoint, tmp_path, clock)  # reads the file the first one wrote
    transport = _transport(peer[0], restarted, clock)
    transport.send("", "customer@example.org", _mail(1))
    transport.close()
    assert peer[0].wait_for_count(1) and endpoint.failures == 0


def test_a_revoked_grant_is_counted_and_retried_with_backoff(
        endpoint: TokenEndpoint, peer: tuple[SmtpPeer, _OAuth2Handler], clock: FakeClock,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, [], [])
    tokens = _source(endpoint, tmp_path, clock, metrics)
    transport = _transport(peer[0], tokens, clock)
    endpoint.revoke_grant()
    with pytest.raises(TransientError):
        transport.send("", "customer@example.org", _mail(1))
    failures = {"reason": "invalid_grant"}
    assert registry.get_sample_value("mailbridge_oauth2_refresh_failures_total", failures) == 1
    with pytest.raises(TokenError):  # within the backoff: no new request
        tokens.access_token()
    assert endpoint.failures == 1 and tokens.next_refresh_in() > 0
    clock.advance(timedelta(seconds=61))
    with pytest.raises(TokenError):
        tokens.access_token()
    assert endpoint.failures == 2
    assert registry.get_sample_value("mailbridge_oauth2_refresh_failures_total", failures) == 2
    assert any("invalid_grant" in r.getMessage() for r in caplog.records)


def test_a_token_the_server_refuses_is_refreshed_once_and_the_send_goes_through(
        endpoint: TokenEndpoint, peer: tuple[SmtpPeer, _OAuth2Handler], clock: FakeClock,
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    smtp, handler = peer
    registry = CollectorRegistry()
    tokens = _source(endpoint, tmp_path, clock, Metrics(registry, [], []))
    transport = _transport(smtp, tokens, clock)
    transport.send("", "first@example.org", _mail(1))
    transport.close()
    endpoint.expire_all()  # the server now refuses the token we hold, not yet due
    before = endpoint.refreshes
    transport.send("", "second@example.org", _mail(2))
    transport.close()
    assert len(smtp.wait_for_count(2)) == 2
    assert handler.refusals == 1 and endpoint.refreshes == before + 1
    assert registry.get_sample_value("mailbridge_oauth2_token_expiry_timestamp_seconds") == \
        clock.now().timestamp() + 600
    _no_secret_logged(caplog, [*endpoint.issued(), endpoint.refresh_token])


def _no_secret_logged(caplog: pytest.LogCaptureFixture, secrets: list[str]) -> None:
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__.get("args", ""))
        leaked: list[Any] = [s for s in secrets if s in text]
        assert not leaked, record.getMessage()
