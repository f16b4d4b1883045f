"""Where the customer stands, end to end through Dovecot and an SMTP peer: the queue
position in acknowledgements, and status updates that say who has the request, whether it
was opened (\\Seen in the support mailbox), the place in the queue and the time in both
zones, spaced and limited as configured, on a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailbridge.clock import FakeClock
from mailbridge.config import load_config
from mailbridge.daemon.service import Service
from tests.daemon import run_service, write_config
from tests.mails import customer_mail
from tests.servers import Dovecot, SmtpPeer, until

pytestmark = pytest.mark.slow

SAM = '[[agents]]\nname = "Sam Okafor"\nemail = "sam@example.com"\n'


def one_agent_config(tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer,
                     **extra: str) -> Path:
    """The test desk with Dana as its only agent: every thread is in her queue."""
    path = write_config(tmp_path / "mb", dovecot, smtp_peer, **extra)
    text = path.read_text(encoding="utf-8")
    assert SAM in text
    path.write_text(text.replace(SAM, ""), encoding="utf-8")
    return path


def plain(msg: EmailMessage) -> str:
    """The decoded text part, its lines joined: what a customer reads, unwrapped."""
    part = msg.get_body(("plain",))
    assert part is not None
    return " ".join(part.get_content().split())


def test_three_customers_of_one_agent_learn_their_place(
        tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """The first customer's acknowledgement says theirs is next, the second's that one
    request is ahead, the third's that two are."""
    path = one_agent_config(tmp_path, dovecot, smtp_peer)
    customers = [f"c{n}@example.org" for n in (1, 2, 3)]

    async def scenario(service: Service) -> None:
        for n, addr in enumerate(customers, start=1):
            dovecot.deliver(customer_mail(n, addr=addr), sender=addr)
        await until(lambda: len(smtp_peer.messages) == 3, 15, "not three acknowledgements")

    run_service(Service(load_config(path), clock=FakeClock(datetime.now(UTC))), scenario)
    acks = {m.rcpt_tos[0]: plain(m.message) for m in smtp_peer.messages}
    assert "Right now yours is next." in acks[customers[0]]
    assert "Right now 1 request is ahead of yours." in acks[customers[1]]
    assert "Right now 2 requests are ahead of yours." in acks[customers[2]]
    assert all("Dana Whitfield will answer you personally" in ack for ack in acks.values())
