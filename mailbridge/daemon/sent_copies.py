"""Copies of what the customer was told, in the support mailbox's Sent folder.

Public API: `SentCopier` (`run(stopping)`, `wake()`, `copy_round()`), `COPY_HORIZON`,
`CLAIM_LEASE`, `COPY_BATCH`.

Every acknowledgement, status update and relayed reply that the sender got accepted is
appended, exactly as sent and flagged \\Seen, to the Sent folder (`io.sent_folder`), in
the order it was sent. The copy follows the sending and never holds it up: the sender
wakes this part once its outcomes are recorded. A missing folder or a refused APPEND is
logged once per problem (again only when the problem changes, and once when copies go
through again), counted in `mailbridge_sent_copies_total{outcome}`, and the items wait:
the next try comes after a capped, growing backoff, and until then nothing newer is
appended before them. The watched Sent folder knows each copy by its Message-ID, which was
recorded with the outbox row (`daemon.ingest`, `daemon.deadlines`, `daemon.staff`).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Protocol

from mailbridge.clock import Clock
from mailbridge.daemon.waiting import sleep_until
from mailbridge.errors import StoreUnavailableError
from mailbridge.io.backoff import Backoff
from mailbridge.io.imap_connect import THROTTLE_CAP
from mailbridge.io.sent_folder import CopyError
from mailbridge.logs import fields, redact
from mailbridge.metrics.families import Metrics
from mailbridge.store.db import Store
from mailbridge.store.sent_copies import claim_copies, next_copy_time, record_copies

log = logging.getLogger(__name__)

COPY_HORIZON = timedelta(days=7)
"""Mail sent longer ago than this is not copied any more (a folder missing for weeks)."""
CLAIM_LEASE = timedelta(minutes=5)
"""How long a claimed item is left to its instance before another may take it."""
COPY_BATCH = 20
"""Items claimed per round."""
STORE_RETRY = 10.0


class Folder(Protocol):
    """The Sent folder (`mailbridge.io.sent_folder.SentFolder`); blocking calls."""

    def append(self, body: bytes, *, when: datetime) -> str: ...

    def close(self) -> None: ...


class SentCopier:
    """Appends sent items' copies in order; sleeps until woken or a retry falls due."""

    def __init__(self, store: Store, folder: Folder, clock: Clock, metrics: Metrics, *,
                 backoff: Backoff | None = None, idle_poll: float | None = None,
                 claimer_lease: timedelta = CLAIM_LEASE, horizon: timedelta = COPY_HORIZON,
                 batch: int = COPY_BATCH, account: str = "") -> None:
        self.store = store
        self.folder = folder
        self.clock = clock
        self.metrics = metrics
        self.backoff = backoff or Backoff(initial=2.0, cap=300.0)
        self.idle_poll = idle_poll
        """Look at least this often (seconds): on a shared store another instance may have
        left copies behind. None: only when woken or a retry falls due."""
        self.lease = claimer_lease
        self.horizon = horizon
        self.batch = batch
        self.account = account
        """`folder`'s IMAP account (`ImapSettings.account`): whose customers' copies it takes."""
        self.problem: str | None = None
        """The reason copies fail now, as last logged; None while they go through."""
        self._wake = asyncio.Event()
        self._retry_in: float | None = None

    def wake(self) -> None:
        """Mail was sent; call on the event loop's thread."""
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        try:
            while not stopping.is_set():
                self._wake.clear()
                try:
                    more = await asyncio.to_thread(self.copy_round)
                except StoreUnavailableError as exc:
                    log.warning("sent_copy %s", fields(event="store_unavailable",
                                                       error=str(exc), retry_in_s=STORE_RETRY))
                    await sleep_until(asyncio.Event(), stopping, STORE_RETRY)
                    continue
                if more:
                    continue
                if self._retry_in is not None:  # in order: nothing newer goes first
                    await sleep_until(asyncio.Event(), stopping, self._retry_in)
                    continue
                await sleep_until(self._wake, stopping, await self._next_in())
        finally:
            await asyncio.to_thread(self.folder.close)

    async def _next_in(self) -> float | None:
        now = self.clock.now()
        next_at = await asyncio.to_thread(next_copy_time, self.store,
                                          since=now - self.horizon, account=self.account)
        timeout = self.idle_poll
        if next_at is not None:
            due_in = max(0.0, (next_at - now).total_seconds())
            timeout = due_in if timeout is None else min(timeout, due_in)
        return timeout

    def copy_round(self) -> bool:
        """Claim due items and append them in order until one fails; True when a full batch
        went through (more may be waiting). Blocking."""
        now = self.clock.now()
        items = claim_copies(self.store, now, since=now - self.horizon, lease=self.lease,
                             limit=self.batch, account=self.account)
        appended = []
        for index, item in enumerate(items):
            if not item.body:  # erased (`mailbridge forget`): nothing left to copy
                appended.append((item.id, now))
                continue
            try:
                self.folder.append(item.body, when=item.sent_at)
            except CopyError as exc:
                self.metrics.sent_copies.labels(exc.reason).inc()
                delay = max(self.backoff.next_delay(), min(exc.retry_after or 0.0, THROTTLE_CAP))
                self._retry_in = delay
                record_copies(self.store, appended, retry=[i.id for i in items[index:]],
                              retry_at=self.clock.now() + timedelta(seconds=delay))
                self._failed(exc, waiting=len(items) - index, delay=delay)
                return False
            self.metrics.sent_copies.labels("appended").inc()
            appended.append((item.id, self.clock.now()))
        record_copies(self.store, appended)
        self._retry_in = None
        self.backoff.reset()
        if self.problem is not None and appended:
            log.info("sent_copy %s", fields(event="recovered", after=self.problem,
                                             appended=len(appended)))
            self.problem = None
        return len(items) == self.batch

    def _failed(self, exc: CopyError, *, waiting: int, delay: float) -> None:
        """Log a problem once (again when it changes); later tries of it only at debug."""
        level = logging.DEBUG if exc.reason == self.problem else logging.WARNING
        self.problem = exc.reason
        log.log(level, "sent_copy %s", fields(event="failed", reason=exc.reason,
                                              error=redact(str(exc)), waiting=waiting,
                                              retry_in_s=round(delay, 1)))
