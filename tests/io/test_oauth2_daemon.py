"""The daemon end to end with `[imap] auth = "oauth2"` and `[smtp] auth = "oauth2"`.

Real servers: Dovecot whose oauth2 passdb asks the test's introspection endpoint, which
vouches for the tokens of the test's token endpoint (`tests.oauth2_token_endpoint`: every
refresh rotates the refresh token and the old one dies), and aiosmtpd accepting only AUTH
XOAUTH2 with such a token. Refreshes are driven by the test, not by wall-clock expiry: the
access tokens live an hour, and the test kills every token issued so far (`expire_all`), so
the next login is refused and the daemon refreshes at once. Dovecot's auth failure delay is
off in the test rig (`auth_failure_delay = 0`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailbridge.cli import main
from tests.daemon import Daemon, write_config
from tests.io.test_smtp_oauth2 import _OAuth2Handler, oauth2_peer
from tests.mails import customer_mail
from tests.oauth2_server import TokenIssuer
from tests.oauth2_token_endpoint import TokenEndpoint
from tests.servers import DOVECOT_BINARY, INSTALL_HINT, Dovecot, SmtpPeer, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def endpoint() -> Iterator[TokenEndpoint]:
    """Access tokens that live an hour: only a refused login makes the daemon refresh."""
    endpoint = TokenEndpoint(lifetime=3600.0).start()
    yield endpoint
    endpoint.stop()


@pytest.fixture
def oauth2_dovecot(tmp_path: Path, endpoint: TokenEndpoint) -> Iterator[Dovecot]:
    if not DOVECOT_BINARY.exists():
        pytest.fail(f"{DOVECOT_BINARY} is missing: {INSTALL_HINT}", pytrace=False)
    with TokenIssuer() as issuer:
        issuer.trust(endpoint.valid, Dovecot.username)
        with Dovecot(tmp_path / "dovecot", oauth2_introspection_url=issuer.introspect_url,
                     oauth2_mechanisms="xoauth2") as server:
            yield server


@pytest.fixture
def peer(endpoint: TokenEndpoint) -> Iterator[tuple[SmtpPeer, _OAuth2Handler]]:
    """The XOAUTH2-only SMTP peer of `tests.io.test_smtp_oauth2`, trusting this endpoint."""
    with oauth2_peer(endpoint) as running:
        yield running


def _config(tmp_path: Path, dovecot: Dovecot, smtp: SmtpPeer, endpoint: TokenEndpoint) -> Path:
    """The daemon's config: both logins by OAuth2, the grant's refresh token in its file."""
    path = write_config(tmp_path / "mb", dovecot, smtp, imap_tls="implicit",
                        extra_imap=f'auth = "oauth2"\nca_file = "{dovecot.ca_pem_path}"',
                        extra_store='lease_timeout = "4s"', extra=f"""
[oauth2]
provider = "custom"
token_url = "{endpoint.url}"
device_authorization_url = "{endpoint.device_url}"
client_id = "{endpoint.client_id}"
""")
    text = path.read_text(encoding="utf-8")
    assert 'tls = "none"\nretry_initial' in text
    path.write_text(text.replace(
        'tls = "none"\nretry_initial',
        f'tls = "starttls"\nca_file = "{smtp.ca_pem_path}"\nauth = "oauth2"\nretry_initial'),
        encoding="utf-8")
    _login(tmp_path / "mb" / "oauth2-refresh-token", endpoint.refresh_token)
    return path


def _login(file: Path, refresh_token: str) -> None:
    """What `mailbridge oauth2-login` leaves: a new file (0600) renamed over the old one."""
    new = file.with_name(".oauth2-login")
    new.write_text(refresh_token + "\n", encoding="utf-8")
    os.chmod(new, 0o600)
    os.replace(new, file)


def _deliver(dovecot: Dovecot, customer: str, number: int) -> None:
    dovecot.deliver(customer_mail(number, addr=customer), sender=customer)


def _acked(smtp: SmtpPeer) -> Counter[str]:
    return Counter(rcpt for m in smtp.messages for rcpt in m.rcpt_tos)


def _wait_acked(smtp: SmtpPeer, customers: list[str], daemon: Daemon,
                timeout: float = 30.0) -> None:
    wait_for(lambda: set(customers) <= set(_acked(smtp)), timeout=timeout,
             message=lambda: f"acked {sorted(_acked(smtp))}; log:\n{daemon.log()[-3000:]}")


def _healthz(daemon: Daemon) -> tuple[int, str]:
    with urllib.request.urlopen(f"http://{daemon.listen}/healthz", timeout=5) as resp:
        return resp.status, resp.read().decode()


def test_a_stream_of_mail_through_many_refreshes_is_acked_once_each_and_survives_a_restart(
        tmp_path: Path, oauth2_dovecot: Dovecot, peer: tuple[SmtpPeer, _OAuth2Handler],
        endpoint: TokenEndpoint) -> None:
    """Six rounds of customer mail, every token killed between rounds (the sender's and, after
    a Dovecot restart, the watchers' logins refused and refreshed): each customer gets one ack,
    no dead refresh token is ever used, and a restarted daemon logs in with the rotated
    token from the file."""
    smtp, handler = peer
    config = _config(tmp_path, oauth2_dovecot, smtp, endpoint)
    token_file = config.parent / "oauth2-refresh-token"
    customers: list[str] = []
    with Daemon(config) as daemon:
        wait_for(lambda: daemon.metric("mailbridge_imap_connected", mailbox="INBOX") == 1,
                 timeout=20, interval=0.2, message=daemon.log)
        for round_ in range(6):
            refreshes = endpoint.refreshes
            endpoint.expire_all()  # the next login is refused: a refresh, a rotation
            smtp.stop()  # the sender's open connection ends: it logs in again
            smtp.start()
            if round_ % 2:  # and so do the watchers, first
                oauth2_dovecot.restart()
            for n in range(3):
                number = round_ * 3 + n
                customers.append(f"customer{number}@example.org")
                _deliver(oauth2_dovecot, f"customer{number}@example.org", number)
            _wait_acked(smtp, customers, daemon)
            wait_for(lambda before=refreshes: endpoint.refreshes > before, timeout=20,
                     message=daemon.log)
        wait_for(lambda: daemon.metric("mailbridge_imap_connected", mailbox="INBOX") == 1,
                 timeout=30, interval=0.2, message=daemon.log)
        assert token_file.read_text().strip() == endpoint.refresh_token
        assert daemon.stop() == 0
    assert endpoint.refreshes >= 7 and endpoint.failures == 0  # never a dead refresh token
    assert handler.refusals >= 1  # tokens live an hour: each refresh followed a refused login
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600

    with Daemon(config) as daemon:  # the rotated token, read from the file
        customers.append("after-restart@example.org")
        _deliver(oauth2_dovecot, "after-restart@example.org", 99)
        _wait_acked(smtp, customers, daemon)
        assert endpoint.failures == 0
        log = daemon.log()
    assert _acked(smtp) == Counter(customers)  # one ack each, nothing twice
    for secret in [endpoint.refresh_token, *endpoint.issued()]:
        assert secret not in log


class _Notes:
    """systemd's notification socket: what the daemon tells it, in order. In a short
    temporary directory: a socket's path is limited to 107 bytes."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="mb-notify-")
        self.path = Path(self._dir.name) / "notify.sock"
        self.seen: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._thread = threading.Thread(target=self._read, daemon=True)

    def __enter__(self) -> _Notes:
        self._sock.bind(str(self.path))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sock.close()
        self._dir.cleanup()

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            while data := self._sock.recv(4096):
                self.seen.append(data.decode())


def _status(config: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    main(["status", "--config", str(config)])
    return capsys.readouterr().out


def test_a_revoked_grant_keeps_the_daemon_up_degraded_until_a_new_login(
        tmp_path: Path, oauth2_dovecot: Dovecot, peer: tuple[SmtpPeer, _OAuth2Handler],
        endpoint: TokenEndpoint, capsys: pytest.CaptureFixture[str]) -> None:
    """Revoked: the same process keeps running and feeding systemd's watchdog (its status
    line says degraded), /healthz answers 200 "degraded" naming the mailboxes, the sender
    and the login to run, `status` says so (and never calls the token endpoint), failures
    are counted; after `mailbridge oauth2-login` (a device login the test's endpoint
    approves) it recovers by itself and the mail that came meanwhile is acknowledged once."""
    smtp, _handler = peer
    config = _config(tmp_path, oauth2_dovecot, smtp, endpoint)
    notes = _Notes()
    with notes, Daemon(config, env={"NOTIFY_SOCKET": str(notes.path),
                                    "WATCHDOG_USEC": "400000"}) as daemon:
        assert daemon.process is not None
        pid = daemon.process.pid
        wait_for(lambda: daemon.metric("mailbridge_imap_connected", mailbox="INBOX") == 1,
                 timeout=20, interval=0.2, message=daemon.log)
        assert _healthz(daemon) == (200, "ok\n")
        calls = (endpoint.refreshes, endpoint.failures)
        assert "degraded" not in _status(config, capsys)
        assert (endpoint.refreshes, endpoint.failures) == calls  # status asked nobody

        endpoint.revoke_grant()
        endpoint.expire_all()
        oauth2_dovecot.restart()  # the watchers log in again: refused, no token to be had
        _deliver(oauth2_dovecot, "meanwhile@example.org", 1)
        wait_for(lambda: _healthz(daemon)[1].startswith("degraded:"), timeout=20,
                 message=daemon.log)
        status, body = _healthz(daemon)
        assert status == 200
        assert "oauth2 (mailbox INBOX, mailbox Sent, sender): the OAuth2 grant was refused " \
               "(invalid_grant)" in body
        assert f"run `mailbridge oauth2-login --config {config}` again" in body
        wait_for(lambda: daemon.metric("mailbridge_oauth2_refresh_failures_total",
                                       reason="invalid_grant") >= 2, timeout=30,
                 interval=0.2, message=daemon.log)  # retried with backoff, each failure counted

        def degraded_status() -> str:
            out = _status(config, capsys)
            return out if "degraded:" in out else ""
        shown = wait_for(degraded_status, timeout=10, interval=0.5)  # the next heartbeat
        assert "the OAuth2 grant was refused (invalid_grant)" in shown
        assert f"run `mailbridge oauth2-login --config {config}` again" in shown
        assert endpoint.refreshes == calls[0]
        assert _acked(smtp) == Counter()  # nothing sent without a token, nothing lost either

        login = subprocess.run(  # the user consents again
            [sys.executable, "-m", "mailbridge", "oauth2-login", "--config", str(config)],
            capture_output=True, text=True, timeout=60, check=False)
        assert login.returncode == 0, login.stderr
        wait_for(lambda: _healthz(daemon) == (200, "ok\n"), timeout=20, message=daemon.log)
        _wait_acked(smtp, ["meanwhile@example.org"], daemon, timeout=60)
        wait_for(lambda: daemon.metric("mailbridge_imap_connected", mailbox="INBOX") == 1,
                 timeout=60, interval=0.2, message=daemon.log)
        _deliver(oauth2_dovecot, "after@example.org", 2)
        _wait_acked(smtp, ["after@example.org"], daemon)
        wait_for(lambda: "degraded" not in _status(config, capsys), timeout=10, interval=0.5)
        assert daemon.process is not None and daemon.process.pid == pid  # never restarted
        wait_for(lambda: "STATUS=running" in notes.seen, timeout=5)
    degraded = [n for n, note in enumerate(notes.seen) if note.startswith("STATUS=degraded: ")]
    assert degraded, notes.seen
    assert "the OAuth2 grant was refused (invalid_grant)" in notes.seen[degraded[0]]
    after = notes.seen[degraded[0]:notes.seen.index("STATUS=running")]
    assert after.count("WATCHDOG=1") >= 2  # fed all along: systemd restarts nothing
    assert _acked(smtp) == Counter({"meanwhile@example.org": 1, "after@example.org": 1})
