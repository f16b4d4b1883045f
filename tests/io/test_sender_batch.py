"""The outbox sender with a claimed batch: one item's unexpected failure costs only that item."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from mailbridge.clock import SystemClock
from mailbridge.config import SmtpSettings
from mailbridge.daemon.sender import OutboxSender, RetryPolicy
from mailbridge.io.smtp_sender import SmtpTransport
from mailbridge.metrics.families import Metrics
from mailbridge.store.db import Store
from tests.outbox import outbox_item
from tests.servers import SmtpPeer


class BuggyTransport(SmtpTransport):
    """A real SMTP transport with a bug that strikes one recipient (fault injection)."""

    def send(self, envelope_from: str, recipient: str, data: bytes) -> None:
        if recipient == "c1@example.org":
            raise UnicodeError("a bug in our sending code")
        super().send(envelope_from, recipient, data)


def test_a_bug_while_sending_fails_that_item_and_the_batch_goes_on() -> None:
    """Three acks claimed together, the second hits a bug: the others reach the peer and are
    recorded sent; the second is recorded failed, never retried (it may have gone out)."""
    store = Store.open("sqlite://")
    now = datetime.now(UTC)
    with store.transaction() as tx:
        for n in range(3):
            tx.add(outbox_item(f"T{n}", due=now, recipient=f"c{n}@example.org"))
    with SmtpPeer() as peer:
        transport = BuggyTransport(SmtpSettings(host=peer.host, port=peer.port, tls="none"),
                                   local_hostname="test.example")
        registry = CollectorRegistry()
        sender = OutboxSender(store, transport, SystemClock(), Metrics(registry, ["INBOX"]),
                              RetryPolicy())

        async def scenario() -> None:
            stopping = asyncio.Event()
            stopping.set()  # a drain: deliver what is due now, then return
            await asyncio.wait_for(sender.run(stopping), 10)

        asyncio.run(scenario())
        assert sorted(r for m in peer.messages for r in m.rcpt_tos) == [
            "c0@example.org", "c2@example.org"]
    states = {i.recipient: (i.state, i.last_error) for i in store.outbox()}
    assert states["c0@example.org"][0] == states["c2@example.org"][0] == "sent"
    assert states["c1@example.org"] == ("failed", "internal error while sending: UnicodeError")
    assert registry.get_sample_value("mailbridge_ack_failures_total",
                                     {"mailbox": "INBOX", "reason": "internal"}) == 1
    store.close()
