"""The daemon: builds every part from the Config and runs them under one asyncio loop.

Public API: `Service` (`serve()`, `request_stop()`, `ingest_raw()`, `ready`, `health()`,
`degraded()`).

Lifecycle, as in uvicorn's server: `startup()` opens the store, the HTTP
endpoint, the outbox sender, one watcher thread per mailbox and (when enabled)
the agents' submission relay, then tells
systemd READY=1 (before IMAP login, so a mail-server outage is not a start
failure); `main_loop()` waits for SIGTERM/SIGINT and pings the watchdog while every
part is up (SIGHUP reloads the configuration: `mailbridge.daemon.reload`); `shutdown()`
stops the watchers, lets the sender drain what is due, and exits.
The sender, scheduler, membership, relay, the copies of sent mail in the Sent folder
(`sent_copies`, unless `[imap] copy_sent` is off) and each watcher run under a `Supervisor`:
a bug in one is logged with its traceback and counted, and that part starts again.

Several instances may share one store (`membership`): an instance watches only the
mailboxes whose lease it holds, starting and stopping watchers as leases come and go;
its sender and scheduler claim work that its peers skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
import time
from collections.abc import Callable
from datetime import datetime

from prometheus_client import CollectorRegistry

from mailbridge.clock import Clock, SystemClock
from mailbridge.config import Config, ImapSettings
from mailbridge.core.folders import Folder
from mailbridge.daemon.activation import relay_socket
from mailbridge.daemon.deadlines import Deadlines
from mailbridge.daemon.folders import resolve_sent_folders
from mailbridge.daemon.health import degraded
from mailbridge.daemon.ingest import Ingestor, Outcome, Source
from mailbridge.daemon.membership import Change, Membership
from mailbridge.daemon.notify import sd_notify, watchdog_interval
from mailbridge.daemon.policies import build_policies
from mailbridge.daemon.push import push_receiver
from mailbridge.daemon.recording import Recorder
from mailbridge.daemon.reload import Reloaded, Reloader, prepare
from mailbridge.daemon.retention import Pruner
from mailbridge.daemon.scheduler import Scheduler
from mailbridge.daemon.sender import OutboxSender, RetryPolicy
from mailbridge.daemon.sent_copies import SentCopier
from mailbridge.daemon.staff import RELAY_MAILBOX
from mailbridge.daemon.supervisor import Supervisor, default_backoff, stalled
from mailbridge.errors import StoreUnavailableError, TransientError
from mailbridge.io.backoff import Backoff
from mailbridge.io.http import HttpServer, http_auth
from mailbridge.io.imap_folders import discover_folders
from mailbridge.io.imap_seen import SeenFlags
from mailbridge.io.imap_watcher import ImapWatcher
from mailbridge.io.oauth2 import TokenSource
from mailbridge.io.relay import (
    Credentials,
    RelayHandler,
    RelayServer,
    upstream_transport,
)
from mailbridge.io.sent_folder import SentFolder
from mailbridge.io.smtp_sender import SmtpTransport, Transport
from mailbridge.logs import fields
from mailbridge.metrics.collector import StoreCollector
from mailbridge.metrics.families import Metrics
from mailbridge.store.db import Store
from mailbridge.store.outbox import OutboxRow

log = logging.getLogger(__name__)

STORE_RETRY_CAP = 30.0
"""Seconds, at most, between attempts to open a store whose server does not answer."""
SHARED_OUTBOX_POLL = 1.0
"""Seconds between looks at a shared (PostgreSQL) outbox when nothing woke the sender: the
instance that queues mail wakes only its own sender, and the others help with a backlog."""
SHARED_COPY_POLL = 60.0
"""Seconds between looks for copies another instance left behind (a shared store)."""


class Service:
    def __init__(self, config: Config, *, clock: Clock | None = None,
                 registry: CollectorRegistry | None = None, transport: Transport | None = None,
                 on_outcome: Callable[[Outcome], None] | None = None,
                 on_sent: Callable[[OutboxRow], None] | None = None,
                 relay_transport: Transport | None = None,
                 open_store: Callable[[str], Store] | None = None,
                 restart_backoff: Callable[[], Backoff] = default_backoff,
                 list_folders: Callable[[ImapSettings], list[Folder]] = discover_folders,
                 ) -> None:
        self.config = config
        self.list_folders = list_folders
        """The server's folders, asked once at start for the Sent folders."""
        self.open_store = open_store or functools.partial(
            Store.open, idle_in_transaction=config.store.lease_timeout.total_seconds() / 2)
        self.clock = clock or SystemClock()
        self.registry = registry or CollectorRegistry()
        mailboxes = [config.imap.mailbox] if config.imap else []  # Sent folders: startup()
        policies = build_policies(config)
        self.policies = (policies.default, *policies.policies)
        self.metrics = Metrics(self.registry, mailboxes, self.policies)
        self.metrics.config_loaded(self.clock.now())
        self.reloader = Reloader(self.metrics, self.clock, self.policies)
        self.tokens: TokenSource | None = None
        """The [oauth2] grant's access tokens, shared by every login that uses it."""
        if config.uses_oauth2 and config.oauth2 is not None:
            self.tokens = TokenSource.from_config(
                config.oauth2, state_dir=config.daemon.state_dir, clock=self.clock,
                metrics=self.metrics)
        if list_folders is discover_folders and self._imap_tokens is not None:
            self.list_folders = functools.partial(discover_folders, tokens=self._imap_tokens)
        self._collector: StoreCollector | None = None
        self.supervisor = Supervisor(self.metrics, self.clock, backoff=restart_backoff)
        self.transport = transport
        self.relay_transport = relay_transport
        """The relay's upstream (default: `[relay] upstream_*`), when the relay is enabled."""
        self.relay: RelayServer | None = None
        if config.relay.enabled:
            self.metrics.add_mailbox(RELAY_MAILBOX)
        self.recorder = Recorder(self._ingestor, self.clock, self.metrics,
                                 wake_sender=self._wake_sender,
                                 wake_scheduler=self._wake_scheduler, on_outcome=on_outcome)
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
        self._sent_configured: str | tuple[str, ...] | None = None
        """`[imap] sent_folders` as the file said at start, before "auto" was resolved."""

    # -- lifecycle -----------------------------------------------------------------

    async def serve(self) -> int:
        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(sig, self.request_stop)
        self._loop.add_signal_handler(signal.SIGHUP, self.reloader.request)
        try:
            await self.startup()
            await self.main_loop()
        finally:
            await self.shutdown()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                self._loop.remove_signal_handler(sig)
        return 0

    def request_stop(self) -> None:
        if not self._stop.is_set():
            log.info("service %s", fields(event="stopping"))
            self._stop.set()

    async def startup(self) -> None:
        self._loop = asyncio.get_running_loop()
        config = self.config
        store = await self._open_store()
        if store is None:
            return  # asked to stop while the store did not answer
        self.store = store
        config = await self._resolve_folders(config)  # before the leases
        # Before the sender starts: joining fails what a dead instance (or our previous
        # run) left `sending`, and takes the free mailboxes.
        self.membership = Membership(self.store, self.clock, mailboxes=self._mailboxes(),
                                     lease_timeout=config.store.lease_timeout,
                                     account=config.imap.account if config.imap else "",
                                     synced=self._last_sync,
                                     state_dir=config.daemon.state_dir,
                                     problems=self.degraded)
        joined = await asyncio.to_thread(self.membership.join)
        self.ingestor = Ingestor.create(config, self.store, self.clock)
        self._wire(self.ingestor.deadlines)
        self._collector = StoreCollector(self.store, self.policies,
                                         horizon=config.sla.at_risk_horizon, now=self.clock.now)
        self.registry.register(self._collector)
        self.http = HttpServer(config.http.host, config.http.port, self.registry,
                               self.health, auth=http_auth(config.http),
                               push=push_receiver(config, self.watchers, self.metrics),
                               degraded=self.degraded)
        await self.http.start()
        transport = self.transport or self._smtp_transport()
        retry = RetryPolicy()
        if config.smtp is not None:
            retry = RetryPolicy(config.smtp.retry_initial, config.smtp.retry_max,
                                config.smtp.give_up_after)
        routes: dict[str, Transport] = {}
        if config.relay.enabled:
            routes[RELAY_MAILBOX] = self.relay_transport or upstream_transport(
                config.relay, local_hostname=config.support.domain, tokens=self.tokens)
        copier = self._sent_copier()
        self.sender = OutboxSender(self.store, transport, self.clock, self.metrics, retry,
                                   on_sent=self.on_sent, claimer=self.membership.id,
                                   routes=routes,
                                   idle_poll=SHARED_OUTBOX_POLL if self.store.shared else None,
                                   on_recorded=copier.wake if copier else None)
        supervise = self.supervisor.start
        if self.tokens is not None:  # refreshes ahead of expiry while connections stay open
            self._tasks.append(supervise(
                "oauth2", functools.partial(self.tokens.run, self._stop), self._stop))
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
        if copier is not None:
            self._tasks.append(supervise(
                "sent_copy", functools.partial(copier.run, self._stop), self._stop))
        await self._leases_changed(joined)
        self._tasks.append(supervise("membership", functools.partial(
            self.membership.run, self._stop, self._leases_changed), self._stop))
        relay_sock = relay_socket(enabled=config.relay.enabled)  # from systemd, if passed
        if config.relay.enabled:
            credentials = Credentials.from_config(config)
            if not len(credentials):
                log.warning("relay %s", fields(event="no_logins", hint="give agents a "
                                               "password_hash or password_file"))
            handler = RelayHandler(credentials=credentials,
                                   support_addresses=frozenset(config.support.addresses),
                                   submit=self.recorder.relay_submit, clock=self.clock)
            self.relay = RelayServer(config.relay, handler, sock=relay_sock)
            await self.relay.start()  # a relay that cannot listen fails the start
            self._tasks.append(supervise(
                "relay", functools.partial(self.relay.serve, self._stop), self._stop))
        self._tasks.append(asyncio.create_task(self.reloader.run(
            self._stop, self._prepare_reload, self._reloaded), name="reload"))
        self.ready = True
        self.started.set()
        sd_notify("READY=1")
        log.info("service %s", fields(event="ready", http=f"{config.http.host}:{self.http.port}",
                                      mailboxes=len(self.watchers)))

    async def _open_store(self) -> Store | None:
        """The store. While its server does not answer (PostgreSQL still starting, the
        network not up at boot) it is tried again with capped backoff, each wait logged and
        told to systemd, which extends its start timeout: an outage is waited out, not an
        exit that systemd stops restarting after five. None once a stop is asked for."""
        backoff = Backoff(initial=1.0, cap=STORE_RETRY_CAP)
        while True:
            try:
                return await asyncio.to_thread(self.open_store, self.config.store.url)
            except StoreUnavailableError as exc:
                delay = backoff.next_delay()
                log.warning("store %s", fields(event="unavailable", error=str(exc),
                                               retry_in_s=round(delay, 1)))
                sd_notify(f"STATUS=waiting for the store: {exc}\n"
                          f"EXTEND_TIMEOUT_USEC={int((delay + 30) * 1_000_000)}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
            if self._stop.is_set():
                return None

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
            deliver = functools.partial(self.recorder.deliver, mailbox, account=imap.account)
            watcher = ImapWatcher(imap, mailbox=mailbox, store=self.store, deliver=deliver,
                                  clock=self.clock, metrics=self.metrics,
                                  supervision=self.supervisor.reporter(f"watcher {mailbox}",
                                                                       "watcher"),
                                  tokens=self._imap_tokens)
            watcher.start()
            self.watchers.append(watcher)

    def _sent_copier(self) -> SentCopier | None:
        """What appends sent mail to the Sent folder, unless `[imap] copy_sent` is off."""
        imap = self.config.imap
        if imap is None or not imap.copy_sent or self.store is None:
            return None
        folder = SentFolder(imap, fallback=(*imap.sent_names, "Sent")[0],
                            tokens=self._imap_tokens)
        return SentCopier(self.store, folder, self.clock, self.metrics, account=imap.account,
                          idle_poll=SHARED_COPY_POLL if self.store.shared else None)

    def _wire(self, deadlines: Deadlines) -> None:
        """The metrics hear of SLA outcomes; status updates ask the mailbox for \\Seen."""
        deadlines.on_outcome = self.metrics.sla_outcome
        imap = self.config.imap
        if imap is not None:
            deadlines.updates.seen = SeenFlags(imap, tokens=self._imap_tokens)

    @property
    def _imap_tokens(self) -> TokenSource | None:
        """The token source when [imap] logs in with OAuth2, else None (the password)."""
        imap = self.config.imap
        return self.tokens if imap is not None and imap.auth == "oauth2" else None

    def _smtp_transport(self) -> Transport:
        if self.config.smtp is None:
            raise RuntimeError("no [smtp] section and no transport given")
        smtp = self.config.smtp
        return SmtpTransport(smtp, local_hostname=smtp.helo or self.config.support.domain,
                             tokens=self.tokens)

    async def main_loop(self) -> None:
        interval = watchdog_interval()
        shown: list[str] = []
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=interval)
            if interval is not None and self.health() is None:
                sd_notify("WATCHDOG=1")  # also while degraded: a restart cannot mend that
            if interval is not None and (now := self.degraded()) != shown:
                shown = now  # `systemctl status` shows it
                sd_notify(f"STATUS={'degraded: ' + '; '.join(now) if now else 'running'}")

    def health(self) -> str | None:
        """None while every part is up; else what is not (/healthz's 503, no watchdog ping):
        a part waiting to restart, a watcher thread that ended or is stuck in a call."""
        if not self.ready:
            return "starting" if not self._stop.is_set() else "stopping"
        down = self.supervisor.down() + stalled(self.watchers, time.monotonic())
        down += [f"{task.get_name()} (ended)" for task in self._tasks if task.done()]
        return f"down: {', '.join(down)}" if down else None

    def degraded(self) -> list[str]:
        """What works but not as it should and a restart cannot mend, each with what to do:
        /healthz's 200 "degraded:" body (`daemon.health`)."""
        return degraded(self.config, self.tokens, list(self.watchers))

    async def _sender_restarting(self) -> None:
        """Whether what the sender was sending when it failed went out is unknown: fail it,
        never send it twice, as after a crash."""
        assert self.store is not None and self.membership is not None
        failed = await asyncio.to_thread(
            self.store.recover_interrupted, self.clock.now(), claimers=[self.membership.id],
            why="the sender restarted after an error")
        if failed:
            log.warning("outbox %s", fields(event="interrupted", items=failed))

    def _prepare_reload(self) -> Reloaded:
        assert self.store is not None, "startup() first"
        return prepare(self.config, self.store, self.clock, as_running=self._as_running)

    async def _resolve_folders(self, config: Config) -> Config:
        """The running configuration with the server's Sent folders (`daemon.folders`)."""
        self._sent_configured = config.imap.sent_folders if config.imap else None
        self.config = config = await resolve_sent_folders(config, self.list_folders)
        for mailbox in self._mailboxes():
            self.metrics.add_mailbox(mailbox)
        return config

    def _as_running(self, new: Config) -> Config:
        """`new` with the Sent folders resolved at start, where the file still says what it
        said then (`daemon.folders`): an unchanged "auto" is not a change needing a restart."""
        running = self.config.imap
        if new.imap is None or running is None or new.imap.sent_folders != self._sent_configured:
            return new
        return new.model_copy(update={"imap": new.imap.model_copy(
            update={"sent_folders": running.sent_folders})})

    def _reloaded(self, new: Reloaded) -> None:
        """Swap a reloaded configuration in, on the loop, between decisions: a watcher takes
        `self.ingestor` once per message or batch, the scheduler its deadlines once a round."""
        if self.relay is not None:
            self.relay.reload(new.config.relay, new.credentials, new.config.support.addresses)
        self._wire(new.ingestor.deadlines)
        self.config, self.ingestor = new.config, new.ingestor
        if self.scheduler is not None:  # a changed rota is looked at now (`run_due`)
            self.scheduler.deadlines = new.ingestor.deadlines
            self.scheduler.wake()
        if self._collector is not None:
            self._collector.policies = {p.name: p for p in new.policies}
            self._collector.horizon = new.config.sla.at_risk_horizon

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

    # -- ingest (`mailbridge.daemon.recording`) ----------------------------------------

    def ingest_raw(self, raw: bytes, source: Source) -> Outcome | None:
        """Record one complete message (the demo's and local tools' ingest path).

        Blocking: call it from a worker thread.
        """
        return self.recorder.ingest_raw(raw, source)

    def _wake_sender(self) -> None:
        if self._loop is not None and self.sender is not None:
            self._loop.call_soon_threadsafe(self.sender.wake)

    def _wake_scheduler(self) -> None:
        if self._loop is not None and self.scheduler is not None:
            self._loop.call_soon_threadsafe(self.scheduler.wake)

    def _ingestor(self) -> Ingestor:
        """The one reference to what decides: a reload replaces it between decisions."""
        assert self.ingestor is not None, "startup() first"
        return self.ingestor
