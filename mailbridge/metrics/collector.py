"""The gauges computed from the store at scrape time, so they are true after a restart.

Public API: `StoreCollector(store, policies, horizon=..., now=...)`, a prometheus_client
custom collector; register it on the daemon's registry. `collect()` is synchronous and
runs in the HTTP worker thread (`mailbridge.io.http` renders /metrics there), never on
the event loop: it runs its own short read-only query (`mailbridge.store.snapshot`).

Labels come from configuration only. A thread whose policy is no longer configured
counts under "default", as `mailbridge.daemon.deadlines` treats it. Every configured series is
exported, at 0 when nothing matches, so a quiet policy reads 0 rather than being absent.
When the store cannot be read, the store-derived gauges are left out and
`mailbridge_scrape_store_success` is 0.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta

from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy.exc import SQLAlchemyError

from mailbridge.config.sla import DEFAULT_POLICY
from mailbridge.core import sla
from mailbridge.core.policy import Policy
from mailbridge.logs import fields
from mailbridge.metrics.families import sla_targets
from mailbridge.store.db import Store
from mailbridge.store.snapshot import Snapshot, read_snapshot
from mailbridge.store.statements import OPEN_STATES

log = logging.getLogger(__name__)

SeriesKey = tuple[str, ...]


class StoreCollector:
    """Open, overdue and at-risk threads, the oldest unanswered message, the outbox."""

    def __init__(self, store: Store, policies: Sequence[Policy], *, horizon: timedelta,
                 now: Callable[[], datetime]) -> None:
        self.store = store
        self.policies = {p.name: p for p in policies}
        self.horizon = horizon
        self.now = now
        self._failing = False

    def describe(self) -> Iterator[Metric]:
        """The names this collector exports, without touching the store."""
        yield from self._families()
        yield from self._status(True, time.monotonic())

    def collect(self) -> Iterator[Metric]:
        started = time.monotonic()
        now = self.now()
        try:
            snapshot = read_snapshot(self.store, now, self.horizon)
        except SQLAlchemyError as exc:
            if not self._failing:  # log once per outage, not once per scrape
                log.warning("metrics %s", fields(event="store_unreadable",
                                                 error=type(exc).__name__, detail=str(exc)[:200]))
            self._failing = True
            yield from self._status(False, started)
            return
        if self._failing:
            log.info("metrics %s", fields(event="store_readable"))
        self._failing = False
        yield from self._families(snapshot, now)
        yield from self._status(True, started)

    # -- families ----------------------------------------------------------------------------

    def _status(self, ok: bool, started: float) -> Iterator[Metric]:
        yield GaugeMetricFamily("mailbridge_scrape_store_success",
                                "1 if the store could be read for this scrape.", value=int(ok))
        yield GaugeMetricFamily("mailbridge_scrape_store_duration_seconds",
                                "Seconds this scrape spent reading the store.",
                                value=max(0.0, time.monotonic() - started))

    def _families(self, snapshot: Snapshot | None = None,
                  now: datetime | None = None) -> Iterator[Metric]:
        open_threads: dict[SeriesKey, float] = {}
        overdue: dict[SeriesKey, float] = {}
        at_risk: dict[SeriesKey, float] = {}
        oldest: dict[SeriesKey, datetime | None] = {}
        for policy in self.policies.values():
            for state in OPEN_STATES:
                open_threads[(policy.name, policy.priority, state)] = 0
            for kind in sla_targets(policy):
                overdue[(kind, policy.name, policy.priority)] = 0
                at_risk[(kind, policy.name, policy.priority)] = 0
            oldest[(policy.name, policy.priority)] = None
        for group in snapshot.groups if snapshot else ():
            policy = self._policy(group.policy)
            name, priority = policy.name, policy.priority
            _add(open_threads, (name, priority, group.state), group.threads)
            if group.state != sla.AWAITING_AGENT:
                continue
            kinds = sla_targets(policy)
            if group.response_kind in kinds:
                _add(overdue, (group.response_kind, name, priority), group.response_overdue)
                _add(at_risk, (group.response_kind, name, priority), group.response_at_risk)
            if "resolution" in kinds:
                _add(overdue, ("resolution", name, priority), group.resolution_overdue)
                _add(at_risk, ("resolution", name, priority), group.resolution_at_risk)
            waiting, before = group.oldest_waiting, oldest.get((name, priority))
            if waiting is not None and (before is None or waiting < before):
                oldest[(name, priority)] = waiting
        yield _gauge("mailbridge_threads_open", "Open threads, by state.",
                     ["policy", "priority", "state"], open_threads)
        yield _gauge("mailbridge_threads_overdue",
                     "Threads awaiting an agent whose deadline has passed.",
                     ["sla", "policy", "priority"], overdue)
        yield _gauge("mailbridge_threads_at_risk",
                     "Threads awaiting an agent whose deadline is within [sla] "
                     "at_risk_horizon.", ["sla", "policy", "priority"], at_risk)
        ages = {key: 0.0 if when is None or now is None else max(0.0, (now - when)
                                                                   .total_seconds())
                for key, when in oldest.items()}
        yield _gauge("mailbridge_oldest_unanswered_age_seconds",
                     "Wall-clock seconds the oldest customer message still awaiting an "
                     "answer has waited; 0 when none waits.", ["policy", "priority"], ages)
        depth = snapshot.outbox_depth if snapshot else 0
        outbox_oldest = snapshot.outbox_oldest if snapshot else None
        yield GaugeMetricFamily("mailbridge_outbox_depth",
                                "Outbox items waiting to be sent or being sent.", value=depth)
        age = 0.0 if outbox_oldest is None or now is None else max(
            0.0, (now - outbox_oldest).total_seconds())
        yield GaugeMetricFamily("mailbridge_outbox_oldest_age_seconds",
                                "Seconds the oldest unsent outbox item has waited; 0 when "
                                "the outbox is empty.", value=age)

    def _policy(self, name: str) -> Policy:
        return self.policies.get(name) or self.policies[DEFAULT_POLICY]


def _add(series: dict[SeriesKey, float], key: SeriesKey, value: float) -> None:
    series[key] = series.get(key, 0) + value


def _gauge(name: str, documentation: str, labels: list[str],
           series: dict[SeriesKey, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for key, value in sorted(series.items()):
        family.add_metric(list(key), value)
    return family
