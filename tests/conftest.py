"""Pytest fixtures that hand each test its own real mail servers (see ``tests/servers.py``).

Scope choice: every fixture is function-scoped and fresh. Dovecot starts in about 0.05 s and
stops in about 0.03 s here (it is a child process with a generated config, not a system
service), so a session-scoped server plus cleanup between tests would save almost nothing,
while tests that stop/restart it, or leave IDLE sessions, flags or folders behind, would
leak state into each other. Each Dovecot lives in the test's ``tmp_path``; nothing is shared.

PostgreSQL is the machine's server (``tests/postgres.py``): each test that asks for
``postgres_url`` gets a database of its own, created in about 0.1 s and dropped after it.

A missing Dovecot binary fails the test with instructions instead of skipping it: a skipped
integration suite looks green while testing nothing.

Commands run in the test's process set up logging as the real command line does (the root
logger's level and handlers); every test gets them back as they were, so no test depends on
which command ran before it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import postgres
from tests.servers import DOVECOT_BINARY, INSTALL_HINT, Dovecot, SmtpPeer


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in ("", "mail.log", "imapclient", "sqlalchemy")]
    saved = [(logger, logger.level, list(logger.handlers)) for logger in loggers]
    yield
    for logger, level, handlers in saved:
        logger.setLevel(level)
        logger.handlers[:] = handlers


@pytest.fixture
def dovecot(tmp_path: Path) -> Iterator[Dovecot]:
    """A started Dovecot IMAP server for this test only, with empty INBOX and Sent."""
    if not DOVECOT_BINARY.exists():
        pytest.fail(f"{DOVECOT_BINARY} is missing: {INSTALL_HINT}", pytrace=False)
    server = Dovecot(tmp_path / "dovecot")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_peer() -> Iterator[SmtpPeer]:
    """A started SMTP peer (plain, no STARTTLS) that records and can refuse mail."""
    with SmtpPeer() as peer:
        yield peer


@pytest.fixture
def smtp_peer_tls(tmp_path: Path) -> Iterator[SmtpPeer]:
    """A started SMTP peer offering STARTTLS with a certificate ``ca_pem_path`` verifies."""
    with SmtpPeer(tls=True, directory=tmp_path / "smtp-tls") as peer:
        yield peer


@pytest.fixture(scope="session")
def _postgres_server() -> Iterator[str]:
    """The admin URL of a PostgreSQL server that answers.

    The machine's server when it lets us in (trust auth on 127.0.0.1, as on CI), else a
    private cluster of our own (a fresh Debian install asks for a password on TCP); an
    explicit $MAILBRIDGE_TEST_POSTGRES that does not answer fails the test with help.
    """
    if postgres.server_answers():
        postgres.drop_orphans()
        yield postgres.ADMIN_URL
        return
    if "MAILBRIDGE_TEST_POSTGRES" in os.environ:
        pytest.fail(f"no PostgreSQL answers at {postgres.ADMIN_URL}: {postgres.INSTALL_HINT}",
                    pytrace=False)
    cluster = postgres.PrivateCluster().init()
    try:
        yield cluster.admin_url
    finally:
        cluster.destroy()


@pytest.fixture
def postgres_url(_postgres_server: str) -> Iterator[str]:
    """The URL of an empty PostgreSQL database for this test only."""
    with postgres.scratch_database(_postgres_server) as url:
        yield url
