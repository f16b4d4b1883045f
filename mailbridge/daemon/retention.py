"""The daily pruning run: deletes what `[store] retention` no longer keeps.

Public API: `Pruner(store, clock, retention, metrics)` with `run(stopping)` and `prune()`;
`PRUNE_INTERVAL`, `FIRST_RUN_DELAY`, `RETRY_DELAY`.

The queries are `store.retention`'s; this task only decides when. It sleeps until the next
run, a day after the last one (never a tight timer), and runs first a few minutes after
start, once a mailbox's catch-up is likely done, so a daemon restarted more often than
daily still prunes. A run is a series of small transactions; the daemon's writers take
their turns between them. On PostgreSQL every instance runs it: their steps claim disjoint
threads, so two at once are safe, and the second of them mostly finds nothing.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from mailbridge.clock import Clock
from mailbridge.daemon.waiting import sleep_until
from mailbridge.errors import StoreUnavailableError
from mailbridge.logs import fields
from mailbridge.metrics.families import Metrics
from mailbridge.store.db import Store
from mailbridge.store.retention import Pruned, prune_step

log = logging.getLogger(__name__)

PRUNE_INTERVAL = timedelta(days=1)
FIRST_RUN_DELAY = timedelta(minutes=5)
RETRY_DELAY = timedelta(minutes=10)
"""After the store was unavailable: the run is tried again this much later."""


class Pruner:
    def __init__(self, store: Store, clock: Clock, *, retention: timedelta,
                 metrics: Metrics | None = None,
                 first_run: timedelta = FIRST_RUN_DELAY, interval: timedelta = PRUNE_INTERVAL,
                 limit: int = 50) -> None:
        self.store = store
        self.clock = clock
        self.retention = retention
        self.metrics = metrics
        self.first_run = first_run
        self.interval = interval
        self.limit = limit

    async def run(self, stopping: asyncio.Event) -> None:
        delay = self.first_run
        while True:
            await sleep_until(asyncio.Event(), stopping, delay.total_seconds())
            if stopping.is_set():
                return
            try:
                await self.prune(stopping)
                delay = self.interval
            except StoreUnavailableError as exc:  # a step rolled back whole: no harm done
                log.warning("retention %s", fields(event="store_unavailable", error=str(exc),
                                                   retry_in_s=RETRY_DELAY.total_seconds()))
                delay = RETRY_DELAY

    async def prune(self, stopping: asyncio.Event | None = None) -> Pruned:
        """One run: steps until nothing older than the retention is left (or stopping)."""
        cutoff = self.clock.now() - self.retention
        total = Pruned()
        while stopping is None or not stopping.is_set():
            step = await asyncio.to_thread(prune_step, self.store, cutoff, self.limit)
            if not step:
                break
            total += step
            if self.metrics is not None:  # step by step: true even if a run is cut short
                self.metrics.pruned(threads=step.threads, messages=step.messages)
        log.info("retention %s", fields(
            event="pruned", threads=total.threads, messages=total.messages,
            events=total.events, outbox=total.outbox, known_ids=total.known_ids,
            cutoff=cutoff.isoformat(timespec="seconds")))
        if self.metrics is not None and (stopping is None or not stopping.is_set()):
            self.metrics.retention_last_run.set(self.clock.now().timestamp())
        return total
