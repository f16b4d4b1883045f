"""The outbox sender after a quiet spell and at the ambiguous end of DATA, against a real SMTP
peer that closes idle connections and a real store; the sender's clock is a fake one, so a
retry would show as an item still pending, not as time spent."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry

from mailbridge.clock import FakeClock
from mailbridge.config import SmtpSettings
from mailbridge.daemon.sender import OutboxSender, RetryPolicy
from mailbridge.io.smtp_sender import SmtpTransport
from mailbridge.metrics.families import FAILURE_REASONS, Metrics
from mailbridge.store.db import Store
from tests.outbox import T0, outbox_item
from tests.servers import SmtpPeer


class Desk:
    """A store, a peer that closes connections idle for 0.2 s, and the sender between."""

    def __init__(self, peer: SmtpPeer) -> None:
        self.peer = peer
        self.store = Store.open("sqlite://")
        self.clock = FakeClock(T0)
        self.registry = CollectorRegistry()
        transport = SmtpTransport(SmtpSettings(host=peer.host, port=peer.port, tls="none"),
                                  local_hostname="test.example", clock=self.clock)
        self.sender = OutboxSender(self.store, transport, self.clock,
                                   Metrics(self.registry, ["INBOX"]), RetryPolicy())

    def queue(self, thread: str) -> None:
        with self.store.transaction() as tx:
            tx.add(outbox_item(thread, due=self.clock.now(), recipient=f"{thread}@example.org"))

    def drain(self) -> None:
        """Deliver what is due on the fake clock's now, then return."""
        async def scenario() -> None:
            stopping = asyncio.Event()
            stopping.set()
            await asyncio.wait_for(self.sender.run(stopping), 10)

        asyncio.run(scenario())

    def item(self, thread: str) -> tuple[str, int, str]:
        found = next(i for i in self.store.outbox() if i.thread_id == thread)
        return found.state, found.attempts, found.last_error

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, {"mailbox": "INBOX", **labels})

    def failures(self) -> float:
        return sum(self.metric("mailbridge_ack_failures_total", reason=reason) or 0.0
                   for reason in FAILURE_REASONS)


@pytest.fixture(params=[True, False], ids=["pipelining", "one-by-one"])
def desk(request: pytest.FixtureRequest) -> Iterator[Desk]:
    with SmtpPeer(pipelining=request.param, idle_timeout=0.2) as peer:
        desk = Desk(peer)
        yield desk
        desk.store.close()


def test_the_first_ack_after_a_quiet_hour_goes_out_on_its_first_attempt(desk: Desk) -> None:
    """The server closed the kept connection while nothing happened: the next ack is sent
    on the first attempt, none is counted failed and none waits for a retry."""
    desk.queue("T0")
    desk.drain()
    desk.peer.wait_for_closed(1)
    desk.clock.advance(timedelta(hours=1))
    desk.queue("T1")
    desk.drain()
    assert desk.item("T1") == ("sent", 1, "")
    assert [m.rcpt_tos for m in desk.peer.wait_for_count(2)] == [["T0@example.org"],
                                                                ["T1@example.org"]]
    assert desk.metric("mailbridge_acks_sent_total") == 2
    assert desk.failures() == 0


def test_an_ack_without_a_reply_after_its_final_dot_is_unknown_and_never_sent_again(
        desk: Desk) -> None:
    """The peer hangs up after the final dot: the item is recorded unknown with the reason,
    counted once, and neither this drain nor a later one sends it again."""
    desk.peer.drop_after_data()
    desk.queue("T0")
    desk.drain()
    state, attempts, error = desk.item("T0")
    assert (state, attempts) == ("unknown", 1)
    assert "may have accepted it" in error
    assert desk.metric("mailbridge_ack_unknown_total") == 1
    assert desk.failures() == 0
    desk.clock.advance(timedelta(days=3))
    desk.queue("T1")
    desk.drain()
    assert desk.item("T0")[0] == "unknown" and desk.item("T1")[0] == "sent"
    assert [m.rcpt_tos for m in desk.peer.wait_for_count(2)] == [["T0@example.org"],
                                                                ["T1@example.org"]]
    assert desk.metric("mailbridge_ack_unknown_total") == 1
