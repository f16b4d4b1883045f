"""Supervised parts: a bug in one of the daemon's long-running parts is logged, counted, and the
part starts again, while health and the watchdog say so.

Public API: `Supervisor(metrics, clock, *, backoff)` with `start(name, run, stopping, ...)`
(an asyncio part), `reporter(name, component)` (a part that runs its own thread, such as an
IMAP watcher, and reports its faults itself), `forget(name)` and `down()`;
`stalled(watchers, now)`, the watcher threads that ended or hang. Each part belongs to one of
`COMPONENTS` (`mailbridge.metrics.families`), the bounded values of the `component` label.

A part is a coroutine function that returns once `stopping` is set. When it raises, or returns
before that, the supervisor logs the error at error level with its traceback, marks the part
down (`mailbridge_component_up{component}` 0, /healthz 503 naming it, no watchdog ping), waits
a capped backoff and starts it again, counting the restart in
`mailbridge_component_restarts_total{component}`. A part that ran longer than the backoff's
cap before failing starts again after the shortest wait. When `stopping` is set while a part
waits, it starts once more at once, so that it can finish its work (the sender drains).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from mailbridge.clock import Clock
from mailbridge.daemon.waiting import sleep_until
from mailbridge.io.backoff import Backoff
from mailbridge.io.imap_watcher import ImapWatcher
from mailbridge.logs import fields
from mailbridge.metrics.families import COMPONENTS, Metrics

log = logging.getLogger(__name__)

RESTART_INITIAL = 1.0
RESTART_CAP = 60.0
"""Seconds: the first restart waits 0.5-1 s, a part that keeps failing at most a minute.
The watchdog (WatchdogSec=120s) restarts the whole process when a part stays down."""


def default_backoff() -> Backoff:
    return Backoff(initial=RESTART_INITIAL, cap=RESTART_CAP)


def stalled(watchers: Sequence[ImapWatcher], now: float) -> list[str]:
    """The watchers whose thread has ended, or has been in one call for longer than two
    read timeouts and a minute (`now`: `time.monotonic()`, as their heartbeat)."""
    found = []
    for watcher in watchers:
        if not watcher.running:
            found.append(f"watcher {watcher.mailbox} (thread ended)")
        elif now - watcher.heartbeat > 2 * watcher.settings.read_timeout + 60:
            found.append(f"watcher {watcher.mailbox} (stuck)")
    return found


@dataclass
class _Part:
    name: str
    component: str
    error: str = ""
    """Why the part is down (the exception's type); "" while it runs."""


class PartReporter:
    """How a part with its own thread reports a fault and its restart (thread-safe)."""

    def __init__(self, supervisor: Supervisor, name: str) -> None:
        self._supervisor = supervisor
        self._name = name

    def failed(self, exc: BaseException | None, retry_in: float) -> None:
        self._supervisor.failed(self._name, exc, retry_in)

    def restarted(self) -> None:
        self._supervisor.restarted(self._name)


class Supervisor:
    """The parts of one service, whether each is up, and their restarts."""

    def __init__(self, metrics: Metrics, clock: Clock, *,
                 backoff: Callable[[], Backoff] = default_backoff) -> None:
        self.metrics = metrics
        self.clock = clock
        self.backoff = backoff
        self._parts: dict[str, _Part] = {}
        self._lock = threading.Lock()

    # -- the parts' state (any thread) ------------------------------------------------------

    def _add(self, name: str, component: str) -> None:
        assert component in COMPONENTS, component
        with self._lock:
            self._parts[name] = _Part(name, component)
        self.metrics.component_restarts.labels(component)
        self._publish(component)

    def forget(self, name: str) -> None:
        """The part ended on purpose (a watcher whose lease went elsewhere)."""
        with self._lock:
            part = self._parts.pop(name, None)
        if part is not None:
            self._publish(part.component)

    def failed(self, name: str, exc: BaseException | None, retry_in: float) -> None:
        """Log the part's fault with its traceback and mark it down until `restarted`."""
        with self._lock:
            part = self._parts.get(name)
            if part is None:  # forgotten meanwhile: its thread is on its way out
                return
            part.error = type(exc).__name__ if exc is not None else "ended"
        self._publish(part.component)
        log.error("component %s", fields(
            event="failed", component=part.component, part=name, error=part.error,
            detail=str(exc)[:200] if exc is not None else "returned before the stop",
            restart_in_s=round(retry_in, 1)), exc_info=exc)

    def restarted(self, name: str) -> None:
        with self._lock:
            part = self._parts.get(name)
            if part is None:
                return
            error, part.error = part.error, ""
        self.metrics.component_restarts.labels(part.component).inc()
        log.info("component %s", fields(event="restarted", component=part.component, part=name,
                                        after=error))
        self._publish(part.component)

    def _publish(self, component: str) -> None:
        with self._lock:
            states = [p.error for p in self._parts.values() if p.component == component]
        if states:
            self.metrics.component_up.labels(component).set(0 if any(states) else 1)

    def down(self) -> list[str]:
        """The parts waiting to restart, each with its error: "sender (RuntimeError)"."""
        with self._lock:
            return [f"{p.name} ({p.error})" for p in self._parts.values() if p.error]

    def _is_down(self, name: str) -> bool:
        with self._lock:
            part = self._parts.get(name)
            return part is not None and bool(part.error)

    # -- parts on the event loop --------------------------------------------------------------

    def reporter(self, name: str, component: str) -> PartReporter:
        """Register a part that runs in its own thread and reports its faults itself."""
        self._add(name, component)
        return PartReporter(self, name)

    def start(self, name: str, run: Callable[[], Awaitable[None]], stopping: asyncio.Event, *,
              component: str | None = None,
              before_restart: Callable[[], Awaitable[None]] | None = None) -> asyncio.Task[None]:
        """Run `run()` as part `name` until it returns with `stopping` set.

        `before_restart` runs before each restart (the sender fails what it was sending).
        """
        self._add(name, component or name)
        return asyncio.create_task(self._supervise(name, run, stopping, before_restart),
                                   name=name)

    async def _supervise(self, name: str, run: Callable[[], Awaitable[None]],
                         stopping: asyncio.Event,
                         before_restart: Callable[[], Awaitable[None]] | None) -> None:
        backoff = self.backoff()
        never = asyncio.Event()
        restarting = False
        while True:
            started = self.clock.monotonic()
            error: BaseException | None = None
            try:
                if restarting:
                    if before_restart is not None:
                        await before_restart()
                    self.restarted(name)
                await run()
            except Exception as exc:  # the part's top level: log once, back off, restart
                error = exc
            else:
                if stopping.is_set():
                    return
            was_stopping = stopping.is_set()
            if self.clock.monotonic() - started > backoff.cap:
                backoff.reset()
            delay = backoff.next_delay()
            if restarting and self._is_down(name):
                # The restart itself failed (before_restart): still down; say so again.
                log.error("component %s", fields(event="restart_failed", part=name,
                                                  error=type(error).__name__),
                          exc_info=error)
            else:
                self.failed(name, error, delay)
            if was_stopping:
                return  # it failed while finishing: there is nothing left to wait for
            await sleep_until(never, stopping, delay)
            restarting = True
