"""The daemon: builds every part from the Config and runs them under one asyncio loop.

Public API: `Service` (`serve()`, `request_stop()`, `ingest_raw()`, `ready`, `health()`).

Lifecycle, as in uvicorn's server: `startup()` opens the store, the HTTP
endpoint, the outbox sender, one watcher thread per mailbox and (when enabled)
the agents' submission relay, then tells
systemd READY=1 (before IMAP login, so a mail-server outage is not a start
failure); `main_loop()` waits for SIGTERM/SIGINT and pings the watchdog while every
part is up; `shutdown()` stops the watchers, lets the sender drain what is due, and exits.
The sender, scheduler, membership, relay and each watcher run under a `Supervisor`: a bug
in one is logged with its traceback and counted, and that part starts again.

Several instances may share one store (`membership`): an instance watches only the
mailboxes whose lease it holds, starting and stopping watchers as leases come and go;
its sender and scheduler claim work that its peers skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import signal
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from prometheus_client import CollectorRegistry

from mailbridge.clock import Clock, SystemClock
from mailbridge.config import Config
from mailbridge.core.model import InboundMessage
from mailbridge.daemon.ingest import Incoming, Ingestor, Outcome, Source
from mailbridge.daemon.membership import Change, Membership
from mailbridge.daemon.notify import sd_notify, watchdog_interval
from mailbridge.daemon.policies import build_policies
from mailbridge.daemon.retention import Pruner
from mailbridge.daemon.scheduler import Scheduler
from mailbridge.daemon.sender import OutboxSender, RetryPolicy
from mailbridge.daemon.staff import FORWARDED_RULES, RELAY_MAILBOX, prepare_relayed
from mailbridge.daemon.supervisor import Supervisor, default_backoff, stalled
from mailbridge.errors import TransientError
from mailbridge.io.backoff import Backoff
from mailbridge.io.http import HttpServer, http_auth
from mailbridge.io.imap_watcher import Fetched, ImapWatcher
from mailbridge.io.relay import (
    Credentials,
    RelayHandler,
    RelayServer,
    Submission,
    Submitted,
    upstream_transport,
)
from mailbridge.io.smtp_sender import SmtpTransport, Transport
from mailbridge.logs import fields
from mailbridge.mail.parse import parse_message
from mailbridge.metrics.collector import StoreCollector
from mailbridge.metrics.families import Metrics
from mailbridge.store.db import Store
from mailbridge.store.outbox import OutboxRow

log = logging.getLogger(__name__)

SHARED_OUTBOX_POLL = 1.0
"""Seconds between looks at a shared (PostgreSQL) outbox when nothing woke the sender: the
instance that queues mail wakes only its own sender, and the others help with a backlog."""
MESSAGES_PER_TRANSACTION = 20
"""A mailbox catching up records this many messages per transaction: fewer commits, while
the sender still gets the (SQLite) write lock between them."""


def message_hash(message_id: str | None) -> str | None:
    """A short, stable id for logs: Message-IDs can carry addresses."""
    if not message_id:
        return None
    return hashlib.sha256(message_id.encode("utf-8", "replace")).hexdigest()[:12]


class Service:
    def __init__(self, config: Config, *, clock: Clock | None = None,
                 registry: CollectorRegistry | None = None, transport: Transport | None = None,
                 on_outcome: Callable[[Outcome], None] | None = None,
                 on_sent: Callable[[OutboxRow], None] | None = None,
                 relay_transport: Transport | None = None,
                 open_store: Callable[[str], Store] = Store.open,
                 restart_backoff: Callable[[], Backoff] = default_backoff) -> None:
        self.config = config
        self.open_store = open_store
        self.clock = clock or SystemClock()
        self.registry = registry or CollectorRegistry()
        mailboxes = [config.imap.mailbox, *config.imap.sent_folders] if config.imap else []
        policies = build_policies(config)
        self.policies = (policies.default, *policies.policies)
        self.metrics = Metrics(self.registry, mailboxes, self.policies)
        self.metrics.config_loaded(self.clock.now())
        self._collector: StoreCollector | None = None
        self.supervisor = Supervisor(self.metrics, self.clock, backoff=restart_backoff)
        self.transport = transport
        self.relay_transport = relay_transport
        """The relay's upstream (default: `[relay] upstream_*`), when the relay is enabled."""
        self.relay: RelayServer | None = None
        if config.relay.enabled:
            self.metrics.add_mailbox(RELAY_MAILBOX)
        self.on_outcome = on_outcome
        self.on_sent = on_sent
        self.ready = False
        self.store: Store | None = None
        self.ingestor: Ingestor | None = None
        self.sender: OutboxSender | None = None
        self.scheduler: Scheduler | None = None
        self.http: HttpServer | None = None
        self.watchers: list[ImapWatcher] = []
        """One per mailbox whose lease this instance holds (`membership`)."""
        self.membership: Membership | None = None
        self.started = asyncio.Event()
        """Set once startup() is done: the store is open and /healthz answers."""
        self._stop = asyncio.Event()
        self._stopping_sender = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- lifecycle -----------------------------------------------------------------

    async def serve(self) -> int:
        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self.request_stop)
        try:
            await self.startup()
            await self.main_loop()
        finally:
            await self.shutdown()
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.remove_signal_handler(sig)
        return 0

    def request_stop(self) -> None:
        if not self._stop.is_set():
            log.info("service %s", fields(event="stopping"))
            self._stop.set()

    async def startup(self) -> None:
        self._loop = asyncio.get_running_loop()
        config = self.config
        self.store = await asyncio.to_thread(self.open_store, config.store.url)
        # Before the sender starts: joining fails what a dead instance (or our previous
        # run) left `sending`, and takes the free mailboxes.
        self.membership = Membership(self.store, self.clock, mailboxes=self._mailboxes(),
                                     lease_timeout=config.store.lease_timeout,
                                     synced=self._last_sync,
                                     state_dir=config.daemon.state_dir)
        joined = await asyncio.to_thread(self.membership.join)
        self.ingestor = Ingestor.create(config, self.store, self.clock)
        self.ingestor.deadlines.on_outcome = self.metrics.sla_outcome
        self._collector = StoreCollector(self.store, self.policies,
                                         horizon=config.sla.at_risk_horizon, now=self.clock.now)
        self.registry.register(self._collector)
        self.http = HttpServer(config.http.host, config.http.port, self.registry,
                               self.health, auth=http_auth(config.http))
        await self.http.start()
        transport = self.transport or self._smtp_transport()
        retry = RetryPolicy()
        if config.smtp is not None:
            retry = RetryPolicy(config.smtp.retry_initial, config.smtp.retry_max,
                                config.smtp.give_up_after)
        routes: dict[str, Transport] = {}
        if config.relay.enabled:
            routes[RELAY_MAILBOX] = self.relay_transport or upstream_transport(
                config.relay, local_hostname=config.support.domain)
        self.sender = OutboxSender(self.store, transport, self.clock, self.metrics, retry,
                                   on_sent=self.on_sent, claimer=self.membership.id,
                                   routes=routes,
                                   idle_poll=SHARED_OUTBOX_POLL if self.store.shared else None)
        supervise = self.supervisor.start
        self._tasks.append(supervise(
            "sender", functools.partial(self.sender.run, self._stopping_sender),
            self._stopping_sender, before_restart=self._sender_restarting))
        self.scheduler = Scheduler(self.ingestor.deadlines, self.store, self.clock,
                                   on_work=self.sender.wake)
        self._tasks.append(supervise(
            "scheduler", functools.partial(self.scheduler.run, self._stop), self._stop))
        pruner = Pruner(self.store, self.clock, retention=config.store.retention,
                        metrics=self.metrics)
        self._tasks.append(supervise(
            "retention", functools.partial(pruner.run, self._stop), self._stop))
        await self._leases_changed(joined)
        self._tasks.append(supervise("membership", functools.partial(
            self.membership.run, self._stop, self._leases_changed), self._stop))
        if config.relay.enabled:
            credentials = Credentials.from_config(config)
            if not len(credentials):
                log.warning("relay %s", fields(event="no_logins", hint="give agents a "
                                               "password_hash or password_file"))
            handler = RelayHandler(credentials=credentials,
                                   support_addresses=frozenset(config.support.addresses),
                                   submit=self._relay_submit, clock=self.clock)
            self.relay = RelayServer(config.relay, handler)
            await self.relay.start()  # a relay that cannot listen fails the start
            self._tasks.append(supervise(
                "relay", functools.partial(self.relay.serve, self._stop), self._stop))
        self.ready = True
        self.started.set()
        sd_notify("READY=1")
        log.info("service %s", fields(event="ready", http=f"{config.http.host}:{self.http.port}",
                                      mailboxes=len(self.watchers)))

    def _mailboxes(self) -> list[str]:
        imap = self.config.imap
        return [imap.mailbox, *imap.sent_folders] if imap is not None else []

    def _last_sync(self, mailbox: str) -> datetime | None:
        """The watcher's last sync, for its lease row; called from a worker thread."""
        found = [w.last_sync for w in list(self.watchers) if w.mailbox == mailbox]
        return found[0] if found else None

    async def _leases_changed(self, change: Change) -> None:
        """Watch the mailboxes this instance now holds; stop watching those it lost."""
        for watcher in [w for w in self.watchers if w.mailbox in change.lost]:
            self.watchers.remove(watcher)
            await asyncio.to_thread(watcher.stop)
            self.supervisor.forget(f"watcher {watcher.mailbox}")
        imap = self.config.imap
        if imap is None or self.store is None:
            return
        for mailbox in sorted(change.gained):
            watcher = ImapWatcher(imap, mailbox=mailbox, store=self.store,
                                  deliver=functools.partial(self._deliver_threadsafe, mailbox),
                                  clock=self.clock, metrics=self.metrics,
                                  supervision=self.supervisor.reporter(f"watcher {mailbox}",
                                                                       "watcher"))
            watcher.start()
            self.watchers.append(watcher)

    def _smtp_transport(self) -> Transport:
        if self.config.smtp is None:
            raise RuntimeError("no [smtp] section and no transport given")
        smtp = self.config.smtp
        return SmtpTransport(smtp, local_hostname=smtp.helo or self.config.support.domain)

    async def main_loop(self) -> None:
        interval = watchdog_interval()
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=interval)
            if interval is not None and self.health() is None:
                sd_notify("WATCHDOG=1")

    def health(self) -> str | None:
        """None while every part is up; else what is not (/healthz's 503, no watchdog ping):
        a part waiting to restart, a watcher thread that ended or is stuck in a call."""
        if not self.ready:
            return "starting" if not self._stop.is_set() else "stopping"
        down = self.supervisor.down() + stalled(self.watchers, time.monotonic())
        down += [f"{task.get_name()} (ended)" for task in self._tasks if task.done()]
        return f"down: {', '.join(down)}" if down else None

    async def _sender_restarting(self) -> None:
        """Whether what the sender was sending when it failed went out is unknown: fail it,
        never send it twice, as after a crash."""
        assert self.store is not None and self.membership is not None
        failed = await asyncio.to_thread(
            self.store.recover_interrupted, self.clock.now(), claimers=[self.membership.id],
            why="the sender restarted after an error")
        if failed:
            log.warning("outbox %s", fields(event="interrupted", items=failed))

    async def shutdown(self) -> None:
        self.ready = False
        sd_notify("STOPPING=1")
        if self.relay is not None:
            await self.relay.close()
        for watcher in self.watchers:
            await asyncio.to_thread(watcher.stop)
        self._stopping_sender.set()
        if self.sender is not None:
            self.sender.wake()
        timeout = self.config.daemon.shutdown_timeout.total_seconds()
        if self._tasks:
            _done, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.membership is not None and self.store is not None:
            with contextlib.suppress(TransientError):
                await asyncio.to_thread(self.membership.leave)
        if self.http is not None:
            await self.http.close()
        if self._collector is not None:
            self.registry.unregister(self._collector)
            self._collector = None
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
        log.info("service %s", fields(event="stopped"))

    # -- ingest ----------------------------------------------------------------------

    def _deliver_threadsafe(self, mailbox: str, batch: Sequence[Fetched]) -> None:
        """Called on a watcher thread: record a fetched batch in one transaction; if that
        fails (a bug in one message, a race with another instance), one at a time."""
        items = [Incoming(Source(mailbox=mailbox, uidvalidity=item.uidvalidity, uid=item.uid),
                          item.message, item.internaldate or self.clock.now(), item.size,
                          item.error) for item in batch]
        for start in range(0, len(items), MESSAGES_PER_TRANSACTION):
            self._deliver_chunk(mailbox, items[start:start + MESSAGES_PER_TRANSACTION])

    def _deliver_chunk(self, mailbox: str, items: Sequence[Incoming]) -> None:
        outcomes = self._record_batch(mailbox, items) if len(items) > 1 else None
        if outcomes is None:
            outcomes = [self._record(item, self._step(item)) for item in items]
        self._wake_for(outcomes)  # once per chunk: each wake-up costs the loop a query

    def _step(self, item: Incoming) -> Callable[[], Outcome]:
        if item.message is None:
            return functools.partial(
                self._ingestor().record_failure, item.source, item.error, size=item.size,
                received=item.received, now=self.clock.now())
        return functools.partial(self._ingest, item.message, item.source, item.received)

    def _record_batch(self, mailbox: str, items: Sequence[Incoming]) -> list[Outcome] | None:
        """`items` in one transaction; None when that failed and each must go alone."""
        try:
            outcomes = self._ingestor().ingest_many(items, now=self.clock.now())
        except TransientError:  # the store is down: the watcher fetches them again later
            raise
        except Exception as exc:  # each is decided again, alone
            log.info("message %s", fields(event="batch_retried", mailbox=mailbox,
                                          messages=len(items), error=type(exc).__name__))
            return None
        for outcome in outcomes:
            self._recorded(outcome)
        return outcomes

    def ingest_raw(self, raw: bytes, source: Source) -> Outcome | None:
        """Record one complete message (the demo's and local tools' ingest path).

        Blocking: call it from a worker thread.
        """
        message = parse_message(raw)
        item = Incoming(source, message, self.clock.now(), len(raw))
        outcome = self._record(item, self._step(item))
        self._wake_for([outcome])
        return outcome

    def _relay_submit(self, submission: Submission) -> Submitted:
        """Record and queue one relayed message (`io.relay`); runs in a worker thread."""
        config = self.config
        prepared = prepare_relayed(
            submission.data, agent=submission.agent, envelope_from=submission.envelope_from,
            recipients=submission.recipients,
            support_addresses=frozenset(config.support.addresses),
            domain=config.support.domain, now=submission.accepted_at)
        if prepared is None:
            return Submitted("from_refused")
        message, relayed = prepared
        outcome = self._ingestor().relay(message, relayed, received=submission.accepted_at,
                                         now=self.clock.now())
        self._wake_sender()
        if outcome.thread is not None:
            self._wake_scheduler()
        self.metrics.message(RELAY_MAILBOX, outcome.verdict.rule)
        log.info("message %s", fields(
            event="relayed", source=RELAY_MAILBOX, msgid=message_hash(outcome.message_id),
            rule=outcome.verdict.rule, thread=outcome.thread, queued=outcome.queued,
            peer=submission.peer))
        if self.on_outcome is not None:
            self.on_outcome(outcome)
        if outcome.verdict.rule == "duplicate":
            return Submitted("duplicate")
        return Submitted("queued" if outcome.verdict.rule in FORWARDED_RULES else "kept")

    def _wake_sender(self) -> None:
        if self._loop is not None and self.sender is not None:
            self._loop.call_soon_threadsafe(self.sender.wake)

    def _wake_scheduler(self) -> None:
        if self._loop is not None and self.scheduler is not None:
            self._loop.call_soon_threadsafe(self.scheduler.wake)

    def _ingest(self, message: InboundMessage, source: Source, received: datetime) -> Outcome:
        return self._ingestor().ingest(message, source, received=received, now=self.clock.now())

    def _ingestor(self) -> Ingestor:
        assert self.ingestor is not None, "startup() first"
        return self.ingestor

    def _record(self, item: Incoming, step: Callable[[], Outcome]) -> Outcome:
        try:
            outcome = step()
        except TransientError:  # the store is down: the watcher fetches it again later
            raise
        except Exception as exc:  # never lose a message to a bug: record why instead
            log.exception("message %s", fields(event="error", source=item.source.describe()))
            outcome = self._ingestor().record_failure(
                item.source, f"{type(exc).__name__}: {exc}", size=item.size,
                received=item.received, now=self.clock.now())
        self._recorded(outcome)
        return outcome

    def _wake_for(self, outcomes: Sequence[Outcome]) -> None:
        if any(o.ack_message_id is not None or o.queued for o in outcomes):
            self._wake_sender()
        if any(o.thread is not None for o in outcomes):
            self._wake_scheduler()  # a thread's next due time may have moved

    def _recorded(self, outcome: Outcome) -> None:
        """What follows a committed outcome: the metric, the log line (the caller wakes the
        sender and the scheduler, once for all it recorded)."""
        source = outcome.source
        if outcome.recorded:
            self.metrics.message(source.mailbox, outcome.verdict.rule)
            log.info("message %s", fields(
                event="recorded", source=source.describe(), msgid=message_hash(outcome.message_id),
                action="acknowledge" if outcome.verdict.reply else "ignore",
                rule=outcome.verdict.rule, thread=outcome.thread))
        if self.on_outcome is not None:
            self.on_outcome(outcome)
