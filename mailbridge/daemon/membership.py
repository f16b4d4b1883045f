"""This instance among its peers: its heartbeat, its mailbox leases, and the dead's cleanup.

Public API: `Membership` (`join`, `tick`, `run`, `leave`), `Change`, `presumed_dead`.

Every instance registers in the store under a random id, with its machine id and boot id
(`identity`), and renews a heartbeat and its mailbox leases every quarter of `[store]
lease_timeout`; a lease lasts three quarters of it, so a mailbox whose watcher died is
watched again within `lease_timeout`. A peer is presumed dead only when its heartbeat is
older than `lease_timeout`, or when it provably ended: it ran on this machine before its
current boot, or it held this state directory before us (its lock there is gone). Host
names and PIDs prove nothing (containers repeat both). The dead are reaped: their leases
freed and the mail they were sending recorded as failed (never sent twice). On SQLite the
same path runs with one instance. Leases name the IMAP account (`ImapSettings.account`) as
well as the mailbox: instances of different accounts sharing a store each watch their own
INBOX, and instances of one account compete for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from mailbridge import __version__
from mailbridge.clock import Clock
from mailbridge.daemon.identity import HostFiles, Identity, StateLock
from mailbridge.daemon.waiting import sleep_until
from mailbridge.errors import StoreUnavailableError, TransientError
from mailbridge.logs import fields
from mailbridge.store import peers
from mailbridge.store.db import Store

log = logging.getLogger(__name__)

FORGET_AFTER = timedelta(days=7)
"""Stopped instances stay listed by `mailbridge status` this long."""


def presumed_dead(peer: peers.InstanceRow, *, me: str, here: Identity, now: datetime,
                  timeout: timedelta) -> str | None:
    """Why `peer` is presumed dead, or None while it may be alive (or is us, or stopped)."""
    if peer.id == me or peer.stopped_at is not None:
        return None
    silent = now - peer.last_seen_at
    if silent > timeout:
        return f"no heartbeat for {round(silent.total_seconds())}s"
    if here.earlier_boot(peer.machine_id, peer.boot_id, peer.last_seen_at):
        return "it ran before this machine rebooted"
    return None


@dataclass(frozen=True)
class Change:
    """Mailboxes this instance started (`gained`) and stopped (`lost`) holding."""

    gained: frozenset[str] = field(default_factory=frozenset)
    lost: frozenset[str] = field(default_factory=frozenset)


class Membership:
    """Keeps this instance registered and its mailbox leases held; blocking methods run in
    worker threads (`join`, `tick`, `leave`), `run` on the event loop."""

    def __init__(self, store: Store, clock: Clock, *, mailboxes: Sequence[str],
                 lease_timeout: timedelta, account: str = "",
                 synced: Callable[[str], datetime | None] = lambda mailbox: None,
                 host: str | None = None, pid: int | None = None,
                 files: HostFiles | None = None, state_dir: Path | None = None,
                 problems: Callable[[], list[str]] = list) -> None:
        """`host` and `pid` are only shown (by `mailbridge status`); `files` says where the
        machine and boot ids are read, and `state_dir` holds the lock that tells a
        restarted instance its predecessor there has ended. `problems` are what this
        instance reports degraded with each heartbeat, shown by `mailbridge status`.
        `account` (`ImapSettings.account`) qualifies the mailboxes' leases."""
        self.store = store
        self.account = account
        self.clock = clock
        self.mailboxes = tuple(dict.fromkeys(mailboxes))
        self.timeout = lease_timeout
        self.interval = lease_timeout / 4
        self.duration = lease_timeout - self.interval
        self.synced = synced
        self.problems = problems
        self.id = secrets.token_hex(6)
        self.host = host or socket.gethostname()
        self.pid = pid if pid is not None else os.getpid()
        self.files = files or HostFiles()
        self.identity = Identity()
        """This machine and boot, read at `join`."""
        self.lock = StateLock(state_dir) if state_dir is not None else None
        self.held: frozenset[str] = frozenset()
        self._renewed = clock.monotonic()

    # -- blocking steps ---------------------------------------------------------------

    def join(self) -> Change:
        """Register, clean up after dead peers (a previous run of ours included), and take
        the free mailboxes."""
        self.identity = Identity.read(self.files)
        now = self.clock.now()
        peers.register(self.store, peers.InstanceRow(
            self.id, self.host, self.pid, __version__, started_at=now, last_seen_at=now,
            machine_id=self.identity.machine_id, boot_id=self.identity.boot_id))
        predecessor = self.lock.take(self.id) if self.lock is not None else None
        if self.lock is not None and not self.lock.held:
            log.warning("instance %s", fields(
                event="state_dir_unlocked", path=str(self.lock.path),
                detail="in use by another instance, or not writable; a restart will wait "
                       "for the lease timeout to clear what this run leaves"))
        peers.forget_stopped(self.store, now - FORGET_AFTER)
        self._reap(now, startup=True, predecessor=predecessor)
        log.info("instance %s", fields(event="joined", instance=self.id, host=self.host,
                                       pid=self.pid, machine=self.identity.machine_id[:12],
                                       boot=self.identity.boot_id[:8]))
        return self.tick()

    def tick(self) -> Change:
        """Heartbeat, reap, renew what we hold and take what is free; return the change.

        If the store stays unreachable for longer than a lease lasts, every mailbox is
        given up: a peer may hold it by now.
        """
        now = self.clock.now()
        try:
            if not peers.heartbeat(self.store, self.id, now, "\n".join(self.problems())):
                log.warning("instance %s", fields(event="presumed_dead", instance=self.id,
                                                  detail="peers reaped us; carrying on"))
            self._reap(now)
            renewed = peers.renew(self.store, self.id, {m: self.synced(m) for m in self.held},
                                  now, self.duration, account=self.account)
            gained = {m for m in self.mailboxes if m not in renewed and peers.acquire(
                self.store, m, self.id, now, self.duration, account=self.account)}
        except StoreUnavailableError:
            if self.clock.monotonic() - self._renewed < self.duration.total_seconds():
                raise
            lost, self.held = self.held, frozenset()
            return Change(lost=lost)
        self._renewed = self.clock.monotonic()
        before = self.held
        self.held = frozenset(renewed | gained)
        change = Change(gained=frozenset(gained), lost=frozenset(before - renewed))
        for mailbox in sorted(change.gained):
            log.info("lease %s", fields(event="acquired", mailbox=mailbox, instance=self.id))
        for mailbox in sorted(change.lost):
            log.warning("lease %s", fields(event="lost", mailbox=mailbox, instance=self.id))
        return change

    def leave(self) -> None:
        """Give up every lease and mark this instance stopped (a clean shutdown)."""
        try:
            peers.stopped(self.store, self.id, self.clock.now(), "shutdown")
            self.held = frozenset()
        finally:
            if self.lock is not None:
                self.lock.release()

    def _reap(self, now: datetime, *, startup: bool = False,
              predecessor: str | None = None) -> None:
        """Reap the dead; at `startup`, also what our `predecessor` in the state directory
        left (it has ended: its lock is gone) and `sending` items that name no instance."""
        dead = {}
        for peer in peers.instances(self.store):
            why = presumed_dead(peer, me=self.id, here=self.identity, now=now,
                                timeout=self.timeout)
            if why is None and startup and peer.id == predecessor and peer.stopped_at is None:
                why = "its process ended (restarted from the same state directory)"
            if why is not None:
                dead[peer.id] = why
        for number, (peer_id, why) in enumerate(sorted(dead.items())):
            # Unclaimed `sending` items (from before instances were recorded) go at start.
            reaped = peers.reap(self.store, [peer_id], now, why,
                                unclaimed=startup and number == 0)
            log.warning("instance %s", fields(event="reaped", instance=peer_id, reason=why,
                                              leases=reaped.leases,
                                              interrupted=reaped.interrupted))
        if startup and not dead:
            peers.reap(self.store, [], now, "unknown instance", unclaimed=True)

    # -- on the event loop ----------------------------------------------------------------

    async def run(self, stopping: asyncio.Event,
                  on_change: Callable[[Change], Awaitable[None]]) -> None:
        """Tick every quarter of the lease timeout until `stopping`; report each change."""
        never = asyncio.Event()
        while not stopping.is_set():
            await sleep_until(never, stopping, self.interval.total_seconds())
            if stopping.is_set():
                return
            try:
                change = await asyncio.to_thread(self.tick)
            except TransientError as exc:
                log.warning("instance %s", fields(event="heartbeat_failed", error=str(exc)))
                continue
            if change.gained or change.lost:
                await on_change(change)
