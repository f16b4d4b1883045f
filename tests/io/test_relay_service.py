"""The relay inside the service: outages upstream, mail commands, duplicates, the throttle.

The service runs in this process on its own event loop; clients are smtplib in worker
threads, verifying the relay's certificate with its CA.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import TypeVar

import pytest
from sqlmodel import select

from mailbridge.clock import SystemClock
from mailbridge.config import Config, RelaySettings, load_config
from mailbridge.config.passwords import hash_password, parse_hash
from mailbridge.core.model import Agent
from mailbridge.core.throttle import LoginThrottle, ThrottleRules
from mailbridge.daemon.ingest import Source
from mailbridge.daemon.service import Service
from mailbridge.io.relay import Credentials, RelayHandler, RelayServer, Submission, Submitted
from mailbridge.store.tables import Thread, ThreadEvent
from tests.configs import MINIMAL
from tests.daemon import run_service
from tests.mails import TRUSTED_RULES, VOUCHED, customer_mail
from tests.servers import SmtpPeer, TlsFiles, free_port, make_tls_files, wait_for

pytestmark = pytest.mark.slow
T = TypeVar("T")
DANA_PW, SAM_PW = "dana-pw-1", "sam-pw-2"


@dataclass
class Setup:
    config: Config
    tls: TlsFiles
    acks: SmtpPeer
    upstream: SmtpPeer
    port: int


@pytest.fixture
def setup(tmp_path: Path, smtp_peer: SmtpPeer) -> Iterator[Setup]:
    tls = make_tls_files(tmp_path / "tls")
    port = free_port()
    with SmtpPeer() as upstream:
        path = tmp_path / "mailbridge.toml"
        path.write_text(f"""
{MINIMAL}password_hash = "{hash_password(DANA_PW, n=2**10)}"

[[agents]]
name = "Sam Okafor"
email = "sam@example.com"
password_hash = "{hash_password(SAM_PW, n=2**10)}"

[sla]
next_response = "8h"

{TRUSTED_RULES}
[smtp]
host = "{smtp_peer.host}"
port = {smtp_peer.port}
tls = "none"
retry_initial = "1s"
retry_max = "1s"

[relay]
enabled = true
listen = "127.0.0.1:{port}"
certificate = "{tls.cert_pem_path}"
key = "{tls.key_pem_path}"
hostname = "localhost"
upstream_host = "{upstream.host}"
upstream_port = {upstream.port}
upstream_tls = "none"

[store]
url = "sqlite:///{tmp_path}/mailbridge.sqlite3"

[http]
listen = "127.0.0.1:0"

[daemon]
state_dir = "{tmp_path}"
""", encoding="utf-8")
        yield Setup(load_config(path), tls, smtp_peer, upstream, port)


def run(setup: Setup, scenario: Callable[[Service], Awaitable[None]]) -> None:
    run_service(Service(setup.config), scenario)


async def call(fn: Callable[..., T], *args: object) -> T:
    return await asyncio.to_thread(fn, *args)


def send(setup: Setup, msg: EmailMessage, *, user: str = "dana@example.com",
         password: str = DANA_PW, sender: str | None = None) -> tuple[int, bytes]:
    """Submit `msg` over STARTTLS (verified) with AUTH; return the reply to DATA."""
    context = ssl.create_default_context(cafile=str(setup.tls.ca_pem_path))
    with smtplib.SMTP("127.0.0.1", setup.port, timeout=10) as client:
        client.starttls(context=context)
        client.login(user, password)
        client.mail(sender or user)
        client.rcpt(str(msg["To"]).rpartition("<")[2].rstrip(">"))
        return client.data(msg.as_bytes())


def new_thread(service: Service, setup: Setup, n: int = 1) -> tuple[bytes, str]:
    """A customer's new mail, recorded as if from the INBOX; returns it and its thread."""
    original = customer_mail(n, addr=f"customer{n}@example.org", subject=f"Question {n}")
    outcome = service.ingest_raw(original, Source("INBOX", 1, n))
    assert outcome is not None and outcome.thread is not None
    return original, outcome.thread


def answer(original: bytes, body: str, *, agent: str = "Dana Whitfield <dana@example.com>",
           thread: str = "") -> EmailMessage:
    from email import message_from_bytes
    from email.policy import default

    parent = message_from_bytes(original, policy=default)
    msg = EmailMessage()
    msg["From"] = agent
    msg["To"] = str(parent["From"])
    msg["Subject"] = f"Re: {parent['Subject']} [#{thread}]" if thread else \
        f"Re: {parent['Subject']}"
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg["In-Reply-To"] = str(parent["Message-ID"])
    msg["Date"] = "Mon, 02 Mar 2026 10:30:00 +0100"
    msg.set_content(body)
    return msg


def thread_row(service: Service, thread_id: str) -> Thread:
    assert service.store is not None
    with service.store.transaction() as tx:
        row = tx.thread(thread_id)
        assert row is not None
        return row


def events(service: Service, thread_id: str) -> list[tuple[str, str]]:
    assert service.store is not None
    with service.store.transaction() as tx:
        rows = tx.session.exec(select(ThreadEvent).where(ThreadEvent.thread_id == thread_id)
                               .order_by(ThreadEvent.id)).all()  # type: ignore[arg-type]
        return [(e.kind, e.detail) for e in rows]


def test_an_upstream_outage_keeps_the_reply_queued_until_it_is_back(setup: Setup) -> None:
    """The agent gets 250 at once; the reply waits in the outbox and goes out exactly once."""
    setup.upstream.stop()

    async def scenario(service: Service) -> None:
        original, thread = await call(new_thread, service, setup)
        await call(setup.acks.wait_for_count, 1)
        code, text = await call(send, setup, answer(original, "Refunded.", thread=thread))
        assert (code, text) == (250, b"2.0.0 Accepted: recorded and queued for delivery")
        assert thread_row(service, thread).state == "awaiting_customer", "clock stopped at 250"
        assert service.store is not None
        await asyncio.to_thread(wait_for, lambda: any(
            i.kind.startswith("relay-") and i.attempts >= 1 and i.state == "pending"
            for i in service.store.outbox()), 10.0)  # type: ignore[union-attr]
        setup.upstream.start()
        [sent] = await call(setup.upstream.wait_for_count, 1, 15.0)
        assert sent.rcpt_tos == ["customer1@example.org"]
        store = service.store
        await asyncio.to_thread(wait_for, lambda: [
            i for i in store.outbox() if i.kind.startswith("relay-") and i.state == "sent"])
        [item] = [i for i in store.outbox() if i.kind.startswith("relay-")]
        assert item.attempts >= 2, "the first attempt failed and was retried"

    run(setup, scenario)
    assert len(setup.upstream.messages) == 1


def test_command_only_mail_is_applied_and_not_sent_on(setup: Setup) -> None:
    """#close with nothing else: the thread is resolved, nothing goes to the customer, and
    no response is recorded."""
    async def scenario(service: Service) -> None:
        original, thread = await call(new_thread, service, setup)
        reply = answer(original, "#close\n#note Solved on the phone.\n\n-- \nDana\n",
                       thread=thread)
        code, text = await call(send, setup, reply)
        assert (code, text) == (250, b"2.0.0 Commands applied, nothing to send")
        row = thread_row(service, thread)
        assert row.state == "resolved" and row.first_response_at is None
        assert ("note", "Dana Whitfield: Solved on the phone.") in events(service, thread)
        assert ("resolved", "closed by Dana Whitfield") in events(service, thread)

    run(setup, scenario)
    assert setup.upstream.messages == []


def test_a_wrong_command_is_refused_at_the_end_of_data_and_nothing_else_happens(
        setup: Setup) -> None:
    """Unknown commands: a 554 listing each, short ASCII lines; no command applied, no
    response, nothing recorded, relayed or mailed."""
    async def scenario(service: Service) -> None:
        original, thread = await call(new_thread, service, setup)
        await call(setup.acks.wait_for_count, 1)
        code, reply = await call(send, setup, answer(
            original, "#pending\n#snooze 2d\n#assign Zoë\n\nHello, back soon.\n",
            thread=thread))
        text = reply.decode("ascii")
        assert code == 554
        lines = text.splitlines()
        assert lines[0] == "5.6.0 Not sent, nothing recorded: the commands at the top have " \
                           "problems"
        assert lines[1].startswith("5.6.0 #snooze 2d: unknown command")
        assert any(line.startswith("5.6.0 #assign Zoe: no agent is called that")
                   for line in lines), lines
        assert all(len(line) <= 6 + 76 for line in lines), lines
        row = thread_row(service, thread)
        assert row.state == "awaiting_agent" and row.first_response_at is None
        assert [kind for kind, _ in events(service, thread)] == ["opened"]
        assert service.store is not None
        assert [m.mailbox for m in service.store.messages()] == ["INBOX"]
        assert [i.kind for i in service.store.outbox()] == ["ack"]

    run(setup, scenario)
    assert setup.upstream.messages == [] and len(setup.acks.messages) == 1


def test_commands_mailed_to_the_support_address_from_an_agent_apply(setup: Setup) -> None:
    """#assign and #priority in mail from an agent address to support steer the thread;
    the same lines from a customer are plain text."""
    async def scenario(service: Service) -> None:
        original, thread = await call(new_thread, service, setup)
        command = answer(original, "#assign sam\n#priority urgent\n", thread=thread)
        command.replace_header("To", "support@example.com")
        command["Authentication-Results"] = VOUCHED  # our mail server's word (core.trust)
        await call(service.ingest_raw, command.as_bytes(), Source("INBOX", 1, 50))
        row = thread_row(service, thread)
        assert (row.agent_name, row.agent_email, row.priority) == \
            ("Sam Okafor", "sam@example.com", "urgent")
        assert row.assignment.startswith("assigned by"), "threads shows why Sam has it"
        assert row.state == "awaiting_agent", "commands alone are not an answer"
        customer = answer(original, "#close\nplease", agent="Ana <customer1@example.org>",
                          thread=thread)
        customer.replace_header("To", "support@example.com")
        customer["Return-Path"] = "<customer1@example.org>"
        outcome = await call(service.ingest_raw, customer.as_bytes(), Source("INBOX", 1, 51))
        assert outcome is not None and outcome.verdict.rule == "follow_up"
        assert thread_row(service, thread).state == "awaiting_agent"

    run(setup, scenario)


def test_a_resent_message_and_its_sent_folder_copy_are_duplicates(setup: Setup) -> None:
    """The same Message-ID twice through the relay, then in Sent: sent on once, one reply."""
    async def scenario(service: Service) -> None:
        original, thread = await call(new_thread, service, setup)
        reply = answer(original, "Refunded.", thread=thread)
        assert (await call(send, setup, reply))[0] == 250
        code, text = await call(send, setup, reply)
        assert (code, text) == (250, b"2.0.0 Accepted: this message was received before")
        outcome = await call(service.ingest_raw, reply.as_bytes(), Source("Sent", 1, 1))
        assert outcome is not None and outcome.verdict.rule == "duplicate"
        await call(setup.upstream.wait_for_count, 1)

    run(setup, scenario)
    assert len(setup.upstream.messages) == 1


# -- the relay server alone: implicit TLS, AUTH LOGIN, the throttle ---------------------------


def test_implicit_tls_auth_login_and_lockout(tmp_path: Path) -> None:
    """On implicit TLS, AUTH LOGIN works; repeated failures are slowed, then refused (454)
    even with the right password; another client is unaffected."""
    tls = make_tls_files(tmp_path / "tls")
    settings = RelaySettings(enabled=True, listen="127.0.0.1:0", tls="implicit",
                             certificate=tls.cert_pem_path, key=tls.key_pem_path,
                             hostname="localhost", upstream_host="127.0.0.1")
    received: list[Submission] = []

    def submit(submission: Submission) -> Submitted:
        received.append(submission)
        return Submitted("queued")

    agent = Agent("Dana Whitfield", "dana@example.com")
    credentials = Credentials({agent.email: (agent, parse_hash(hash_password(DANA_PW, n=2**10)))})
    throttle = LoginThrottle(ThrottleRules(free_failures=1, delay=0.2, max_delay=0.2,
                                           lockout_after=3, lockout=60.0))
    handler = RelayHandler(credentials=credentials, support_addresses=frozenset(),
                           submit=submit, clock=SystemClock(), throttle=throttle)
    context = ssl.create_default_context(cafile=str(tls.ca_pem_path))

    def login(password: str) -> tuple[int, float]:
        with smtplib.SMTP_SSL("127.0.0.1", server.port, timeout=10, context=context) as c:
            c.ehlo("client.example.com")
            assert "LOGIN" in c.esmtp_features["auth"]
            started = datetime.now(UTC)
            c.user, c.password = agent.email, password
            try:  # one attempt, with the LOGIN challenges (smtplib's login() tries several)
                c.auth("LOGIN", c.auth_login, initial_response_ok=False)
            except smtplib.SMTPAuthenticationError as exc:
                return exc.smtp_code, (datetime.now(UTC) - started).total_seconds()
            c.mail(agent.email)
            c.rcpt("ana@example.org")
            assert c.data(b"From: dana@example.com\r\n\r\nHi\r\n")[0] == 250
            return 235, 0.0

    server = RelayServer(settings, handler)

    async def scenario() -> None:
        await server.start()
        try:
            assert (await asyncio.to_thread(login, DANA_PW))[0] == 235
            first = await asyncio.to_thread(login, "wrong")
            second = await asyncio.to_thread(login, "wrong")
            assert first[0] == 535 and second[0] == 535 and second[1] >= 0.2, (first, second)
            assert (await asyncio.to_thread(login, "wrong"))[0] == 535
            assert (await asyncio.to_thread(login, DANA_PW))[0] == 454, "locked out"
        finally:
            await server.close()

    asyncio.run(scenario())
    assert len(received) == 1 and received[0].recipients == ("ana@example.org",)
