"""The scheduler: sleeps until the next thing is due, then lets `Deadlines` act on it.

Public API: `Scheduler(deadlines, store, clock)` with `run(stopping)` and `wake()`.

It never scans every open thread on a timer: the next due time is an indexed
MIN over `threads.next_due_at`, and ingest wakes it when a new message changes
a thread. After a restart it acts on everything that fell due while it was
down, once, because acting and moving `next_due_at` share a transaction.

It also wakes for the next shift digest (`Deadlines.digests`, `daemon.digests`), whose
time comes from the agents' shifts, not from the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime

from mailbridge.clock import Clock
from mailbridge.daemon.deadlines import Deadlines
from mailbridge.daemon.waiting import sleep_until
from mailbridge.errors import StoreUnavailableError
from mailbridge.io.backoff import Backoff
from mailbridge.logs import fields
from mailbridge.store.db import Store

log = logging.getLogger(__name__)

MAX_SLEEP_SECONDS = 3600.0
"""Look again at least hourly, in case the wall clock jumped."""


class Scheduler:
    def __init__(self, deadlines: Deadlines, store: Store, clock: Clock, *,
                 on_work: Callable[[], None] | None = None) -> None:
        self.deadlines = deadlines
        self.store = store
        self.clock = clock
        self.on_work = on_work
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Something changed; call on the event loop's thread."""
        self._wake.set()

    async def run(self, stopping: asyncio.Event) -> None:
        backoff = Backoff(initial=0.5, cap=10.0)
        while not stopping.is_set():
            self._wake.clear()
            try:
                done = await asyncio.to_thread(self._run_due, self.clock.now())
                if not done:
                    await self._sleep(stopping)
                    continue
            except StoreUnavailableError as exc:
                # Claimed work rolled back with the connection: it is done again later.
                delay = backoff.next_delay()
                log.warning("scheduler %s", fields(event="store_unavailable", error=str(exc),
                                                   retry_in_s=round(delay, 1)))
                await sleep_until(asyncio.Event(), stopping, delay)
                continue
            backoff.reset()
            log.info("scheduler %s", fields(event="acted", threads=done))
            if self.on_work is not None:
                self.on_work()

    def _run_due(self, now: datetime) -> int:
        deadlines = self.deadlines  # swapped by a reload between rounds, never within one
        return deadlines.run_due(now) + deadlines.digests.run_due(now)

    async def _sleep(self, stopping: asyncio.Event) -> None:
        next_at = await asyncio.to_thread(self.store.next_due_time)
        now = self.clock.now()
        digest_at = self.deadlines.digests.next_time(now)
        next_at = digest_at if next_at is None else min(next_at, digest_at)
        timeout = min(MAX_SLEEP_SECONDS, max(0.0, (next_at - now).total_seconds()))
        await sleep_until(self._wake, stopping, timeout)
