"""Outbox rows for tests that start from a queued acknowledgement."""

from __future__ import annotations

from datetime import UTC, datetime

from mailbridge.store.tables import OutboxItem

T0 = datetime(2026, 11, 22, 20, 0, tzinfo=UTC)


def outbox_item(thread: str, *, due: datetime = T0, kind: str = "ack",
                recipient: str = "ana@example.org") -> OutboxItem:
    """A pending item of `thread` (queued at T0), due at `due`, with a small but complete
    message."""
    return OutboxItem(thread_id=thread, kind=kind, mailbox="INBOX", message_id=f"<{thread}@x>",
                      envelope_from="", recipient=recipient,
                      body=b"Subject: x\r\n\r\nx\r\n", next_attempt_at=due, created_at=T0,
                      arrived_at=T0)
