"""The outbox sender loop: deliver due outbox items once, retrying temporary failures.

Public API: `OutboxSender`, `RetryPolicy`, `SendBug`, `CLAIM_BATCH`.

It claims due items from the store in batches, hands each to a `Transport`
(`mailbridge.io.smtp_sender`), and records the outcome: sent, retried later with backoff
(`TransientError`), failed (`PermanentError`, or a bug while sending: never resent), or
unknown (`DeliveryUnknownError`: the server may have it; never resent either).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailbridge.clock import Clock
from mailbridge.daemon.waiting import sleep_until
from mailbridge.errors import (
    DeliveryUnknownError,
    PermanentError,
    StoreUnavailableError,
    TransientError,
)
from mailbridge.io.backoff import Backoff, retry_delay
from mailbridge.io.smtp_sender import Transport
from mailbridge.logs import fields, redact
from mailbridge.metrics.families import Metrics
from mailbridge.store.db import Store
from mailbridge.store.outbox import Finished, OutboxRow

log = logging.getLogger(__name__)

CLAIM_BATCH = 20
"""Due items taken per store transaction. Each claim waits for the store's write lock,
which ingest holds while a mailbox catches up; one at a time, acks trailed far behind, and
20 sent a backlog about 15% faster than 10 (benchmarks/RESULTS.md). A crash fails (never
resends) at most this many."""


class SendBug(PermanentError):
    """Sending raised something no transport should: whether the mail went out is unknown."""


@dataclass(frozen=True)
class _Attempt:
    item: OutboxRow
    error: TransientError | PermanentError | None
    at: datetime
    seconds: float


@dataclass(frozen=True)
class RetryPolicy:
    initial: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(minutes=15)
    give_up_after: timedelta = timedelta(days=2)


class OutboxSender:
    """Delivers due outbox items; sleeps until the next one is due or it is woken."""

    def __init__(self, store: Store, transport: Transport, clock: Clock, metrics: Metrics,
                 retry: RetryPolicy, *, on_sent: Callable[[OutboxRow], None] | None = None,
                 claimer: str | None = None, routes: Mapping[str, Transport] | None = None,
                 idle_poll: float | None = None, batch: int = CLAIM_BATCH,
                 on_recorded: Callable[[], None] | None = None) -> None:
        self.store = store
        self.on_recorded = on_recorded
        """Called on the loop once outcomes that include a sent item are committed (the
        copies in the Sent folder follow them: `daemon.sent_copies`)."""
        self.routes = dict(routes or {})
        """Transports by outbox mailbox ("relay": the relay's upstream); else `transport`."""
        self.claimer = claimer
        """The instance id recorded on each claimed item (`store.peers`)."""
        self.transport = transport
        self.clock = clock
        self.metrics = metrics
        self.retry = retry
        self.on_sent = on_sent
        self.idle_poll = idle_poll
        """Look at the outbox at least this often (seconds): other instances queue mail too,
        and nothing wakes this one for it. None: only when woken or an item falls due."""
        self.batch = batch
        """Items claimed per transaction; a crash fails (never resends) at most this many."""
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Something was queued; call on the event loop's thread."""
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Deliver until `stopping` is set and nothing more is due now (a drain).

        Items a crash left `sending` are failed before this starts (`store.peers.reap`).
        While the store is unavailable it backs off, keeping the outcome it has yet to
        record; an outcome it can never record leaves the item `sending`, so that it is
        failed as interrupted, never sent again.
        """
        finished: list[Finished] = []
        backoff = Backoff(initial=0.5, cap=10.0)
        never = asyncio.Event()
        try:
            while True:
                self._wake.clear()
                try:
                    items = await asyncio.to_thread(
                        self.store.claim_outbox_batch, self.clock.now(), finished=finished,
                        claimer=self.claimer, limit=self.batch)
                    self._recorded(finished)
                    finished = []
                    if not items:
                        if stopping.is_set():
                            return
                        await self._sleep(stopping)
                        continue
                except StoreUnavailableError as exc:
                    if stopping.is_set():
                        return
                    delay = backoff.next_delay()
                    log.warning("outbox %s", fields(event="store_unavailable", error=str(exc),
                                                    retry_in_s=round(delay, 1)))
                    await sleep_until(never, stopping, delay)
                    continue
                backoff.reset()
                finished = await self._deliver(items)  # claimed: sent even while stopping
        finally:
            if finished:
                with contextlib.suppress(StoreUnavailableError):
                    await asyncio.to_thread(self.store.finish_outbox_batch, finished)
                    self._recorded(finished)
            for transport in (self.transport, *self.routes.values()):
                await asyncio.to_thread(transport.close)

    def _recorded(self, finished: Sequence[Finished]) -> None:
        if self.on_recorded is not None and any(f.state == "sent" for f in finished):
            self.on_recorded()

    async def _sleep(self, stopping: asyncio.Event) -> None:
        next_at = await asyncio.to_thread(self.store.next_outbox_time)
        timeout = self.idle_poll
        if next_at is not None:
            due_in = max(0.0, (next_at - self.clock.now()).total_seconds())
            timeout = due_in if timeout is None else min(timeout, due_in)
        await sleep_until(self._wake, stopping, timeout)

    async def _deliver(self, items: Sequence[OutboxRow]) -> list[Finished]:
        """Send claimed items, one after the other in one worker thread; return their
        outcomes for the store to record."""
        attempts = await asyncio.to_thread(self._send_each, items)
        return [self._outcome(attempt) for attempt in attempts]

    def _send_each(self, items: Sequence[OutboxRow]) -> list[_Attempt]:
        attempts = []
        for item in items:
            started = self.clock.monotonic()
            error: TransientError | PermanentError | None = None
            try:
                transport = self.routes.get(item.mailbox, self.transport)
                transport.send(item.envelope_from, item.recipient, item.body)
            except (TransientError, PermanentError) as exc:
                error = exc
            except Exception as exc:  # a bug must not lose the outcomes of the others
                log.exception("ack %s", fields(event="send_error", thread=item.thread_id))
                # Whether it went out is unknown: fail it, never send it again.
                error = SendBug(f"internal error while sending: {type(exc).__name__}")
            attempts.append(_Attempt(item, error, self.clock.now(),
                                     self.clock.monotonic() - started))
        return attempts

    def _outcome(self, attempt: _Attempt) -> Finished:
        item, now = attempt.item, attempt.at
        if isinstance(attempt.error, TransientError):
            return self._retry_later(item, str(attempt.error))
        if isinstance(attempt.error, DeliveryUnknownError):
            return self._unknown(item, str(attempt.error))
        if isinstance(attempt.error, PermanentError):
            reason = "internal" if isinstance(attempt.error, SendBug) else "smtp_permanent"
            return self._fail(item, str(attempt.error), reason)
        latency = max(0.0, (now - item.arrived_at).total_seconds())
        self.metrics.delivered(item.kind, item.mailbox, latency)
        log.info("ack %s", fields(event="sent", thread=item.thread_id, kind=item.kind,
                                  attempt=item.attempts, send_ms=round(attempt.seconds * 1000)))
        if self.on_sent is not None:
            self.on_sent(item)
        return Finished(item.id, "sent", now)

    def _retry_later(self, item: OutboxRow, error: str) -> Finished:
        now = self.clock.now()
        self.metrics.failed(item.kind, item.mailbox, "smtp_temporary")
        if now - item.arrived_at > self.retry.give_up_after:
            return self._fail(item, f"gave up after {item.attempts} attempts: {error}", None)
        delay = retry_delay(item.attempts, initial=self.retry.initial.total_seconds(),
                            cap=self.retry.cap.total_seconds())
        log.warning("ack %s", fields(event="retry", thread=item.thread_id, attempt=item.attempts,
                                     retry_in_s=round(delay, 1), error=redact(error)))
        return Finished(item.id, "pending", now, error, now + timedelta(seconds=delay))

    def _unknown(self, item: OutboxRow, error: str) -> Finished:
        """The server may have accepted it: at most one ack, so it is never sent again."""
        self.metrics.unknown(item.kind, item.mailbox)
        log.warning("ack %s", fields(event="unknown", thread=item.thread_id,
                                     attempt=item.attempts, error=redact(error)))
        return Finished(item.id, "unknown", self.clock.now(), error)

    def _fail(self, item: OutboxRow, error: str, reason: str | None) -> Finished:
        if reason is not None:
            self.metrics.failed(item.kind, item.mailbox, reason)
        log.error("ack %s", fields(event="failed", thread=item.thread_id, attempt=item.attempts,
                                   error=redact(error)))
        return Finished(item.id, "failed", self.clock.now(), error)
