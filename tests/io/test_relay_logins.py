"""A burst of logins at the relay: the password checks wait in the relay's own small pool, and
the default thread pool, which the sender, scheduler and heartbeat share, stays free.

The relay is the real server on this test's event loop (implicit TLS); the clients are
smtplib in threads of their own, so that nothing but the relay's work and the probe uses the
default pool.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from mailbridge.clock import SystemClock
from mailbridge.config import RelaySettings, Secret
from mailbridge.config.passwords import ScryptHash, hash_password, parse_hash
from mailbridge.core.model import Agent
from mailbridge.core.throttle import Admission, LoginThrottle
from mailbridge.io.relay import (
    LOGIN_CHECKS,
    Credentials,
    RelayHandler,
    RelayServer,
    Submission,
    Submitted,
)
from tests.servers import make_tls_files

pytestmark = pytest.mark.slow
BURST = 20
PASSWORD = "dana relay pw"


class HeldChecks(Credentials):
    """The real password check, counted where it runs and held at a gate until the test has
    looked at the burst in flight."""

    def __init__(self, entries: Mapping[str, tuple[Agent, ScryptHash | Secret]]) -> None:
        super().__init__(entries)
        self.gate = threading.Event()
        self.running = self.most = self.done = 0
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def check(self, login: bytes, password: bytes) -> Agent | None:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.threads.add(threading.current_thread().name)
        try:
            assert self.gate.wait(60), "the test never let the checks go on"
            return super().check(login, password)
        finally:
            with self._lock:
                self.running -= 1
                self.done += 1


class CountingThrottle(LoginThrottle):
    """Counts login attempts as the relay admits them (on the event loop)."""

    admitted = 0

    def admit(self, key: str, now: float) -> Admission:
        self.admitted += 1
        return super().admit(key, now)


async def on_loop(predicate: Callable[[], bool], message: Callable[[], str],
                  timeout: float = 20.0) -> None:
    """Wait for `predicate` on the event loop itself (not in the default pool)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(message())
        await asyncio.sleep(0.01)


def test_a_burst_of_logins_leaves_the_default_pool_free(tmp_path: Path) -> None:
    """Twenty clients log in at once: at most two checks run at a time, in the relay's own
    threads; a job for the default pool, submitted while all twenty wait, finishes before
    any login does; then every login succeeds."""
    tls = make_tls_files(tmp_path / "tls")
    settings = RelaySettings(enabled=True, listen="127.0.0.1:0", tls="implicit",
                             certificate=tls.cert_pem_path, key=tls.key_pem_path,
                             hostname="localhost", upstream_host="127.0.0.1")
    agent = Agent("Dana Whitfield", "dana@example.com")
    credentials = HeldChecks({agent.email: (agent, parse_hash(hash_password(PASSWORD,
                                                                            n=2**12)))})
    throttle = CountingThrottle()

    def submit(submission: Submission) -> Submitted:
        return Submitted("queued")

    handler = RelayHandler(credentials=credentials, support_addresses=frozenset(),
                           submit=submit, clock=SystemClock(), throttle=throttle)
    server = RelayServer(settings, handler)
    context = ssl.create_default_context(cafile=str(tls.ca_pem_path))
    replies: list[int] = []

    def log_in() -> None:
        with smtplib.SMTP_SSL("127.0.0.1", server.port, timeout=60, context=context) as client:
            client.ehlo("client.example.com")
            client.user, client.password = agent.email, PASSWORD
            try:
                code, _ = client.auth("PLAIN", client.auth_plain)
            except smtplib.SMTPAuthenticationError as exc:
                code = exc.smtp_code
        replies.append(code)

    def state() -> str:
        return (f"admitted {throttle.admitted}, checking {credentials.running}, "
                f"at most {credentials.most}, done {credentials.done}")

    async def scenario() -> None:
        await server.start()
        clients = [threading.Thread(target=log_in, name=f"client-{n}") for n in range(BURST)]
        try:
            for client in clients:
                client.start()
            await on_loop(lambda: throttle.admitted == BURST and credentials.running > 0,
                          lambda: f"the burst never arrived: {state()}")
            # Every login is in: some are being checked, the rest wait for a thread.
            try:
                finished_first = await asyncio.wait_for(
                    asyncio.to_thread(lambda: credentials.done), timeout=20)
            except TimeoutError:
                raise AssertionError(f"the default pool is taken by logins: {state()}") from None
            assert finished_first == 0, "the default pool's job came after a login"
            assert credentials.most == LOGIN_CHECKS, state()
            credentials.gate.set()
            await on_loop(lambda: not any(c.is_alive() for c in clients),
                          lambda: f"the logins did not finish: {state()}", timeout=60)
        finally:
            credentials.gate.set()
            await server.close()
            for client in clients:
                client.join(60)

    asyncio.run(scenario())
    assert replies == [235] * BURST
    assert credentials.done == BURST and credentials.most == LOGIN_CHECKS
    assert all(name.startswith("relay-login") for name in credentials.threads), \
        credentials.threads
