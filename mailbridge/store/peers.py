"""Instances sharing one store: their heartbeats, and the leases on the mailboxes they watch.

Public API: `InstanceRow`, `LeaseRow`, `register`, `heartbeat`, `acquire`, `renew`,
`release`, `reap`, `instances`, `leases`, `forget_stopped`.

A lease is a row per mailbox of an account (`account`: the IMAP user, host and port; ""
where there is none) with a holder and an expiry, the same on SQLite and
PostgreSQL: the holder renews it, anyone may take it once it has expired, and taking
it is one conditional UPDATE (or an INSERT that the primary key lets only one
instance win), so two instances never both believe they hold it at the same time
(their clocks agreeing to well within the lease). A lease alone cannot fence off a
holder that stalls past its expiry and then carries on; the schema's unique
constraints (message source, outbox thread and kind, known Message-IDs) do, so a
second acknowledgement stays impossible even then.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from mailbridge.store.db import Store
from mailbridge.store.tables import Instance, MailboxLease, table_of

INSTANCES = table_of(Instance)
LEASES = table_of(MailboxLease)


@dataclass(frozen=True)
class InstanceRow:
    id: str
    host: str
    pid: int
    version: str
    started_at: datetime
    last_seen_at: datetime
    stopped_at: datetime | None = None
    stop_reason: str = ""
    machine_id: str = ""
    """/etc/machine-id of its machine, "" where unknown; with `boot_id` it tells an instance
    from before this machine's reboot. Host and PID are only shown: they repeat."""
    boot_id: str = ""
    problems: str = ""
    """What it reported degraded at its last heartbeat, one line each; "" when nothing."""


@dataclass(frozen=True)
class LeaseRow:
    mailbox: str
    holder: str
    acquired_at: datetime
    expires_at: datetime
    synced_at: datetime | None
    account: str = ""
    """Whose mailbox: `user@host:port` of the IMAP account (no secret), "" for none."""


def register(store: Store, me: InstanceRow) -> None:
    """Add this instance, seen at its start."""
    with store.transaction() as tx:
        tx.session.connection().execute(insert(INSTANCES).values(
            id=me.id, host=me.host, pid=me.pid, version=me.version, started_at=me.started_at,
            last_seen_at=me.last_seen_at, stopped_at=None, stop_reason="",
            machine_id=me.machine_id, boot_id=me.boot_id))


def heartbeat(store: Store, instance: str, now: datetime, problems: str = "") -> bool:
    """Record that `instance` is alive, with what it reports degraded; False if peers had
    presumed it dead (and reaped it)."""
    i = INSTANCES.c
    with store.transaction() as tx:
        conn = tx.session.connection()
        row = conn.execute(select(i.stopped_at).where(i.id == instance)).first()
        conn.execute(update(INSTANCES).where(i.id == instance)
                     .values(last_seen_at=now, stopped_at=None, stop_reason="",
                             problems=problems))
        return row is not None and row.stopped_at is None


def acquire(store: Store, mailbox: str, holder: str, now: datetime,
            duration: timedelta, *, account: str = "") -> bool:
    """Take (or keep) the lease on `account`'s `mailbox` if it is free, expired or already
    ours."""
    lease = LEASES.c
    this = (lease.account == account, lease.mailbox == mailbox)
    try:
        with store.transaction() as tx:
            conn = tx.session.connection()
            taken = conn.execute(
                update(LEASES)
                .where(*this, or_(lease.holder == holder, lease.expires_at < now))
                .values(holder=holder, expires_at=now + duration,
                        acquired_at=case((lease.holder == holder, lease.acquired_at),
                                         else_=now)))
            if taken.rowcount:
                return True
            if conn.execute(select(lease.mailbox).where(*this)).first():
                return False
            conn.execute(insert(LEASES).values(account=account, mailbox=mailbox, holder=holder,
                                               acquired_at=now, expires_at=now + duration,
                                               synced_at=None))
            return True
    except IntegrityError:  # another instance inserted it first
        return False


def renew(store: Store, holder: str, synced: Mapping[str, datetime | None], now: datetime,
          duration: timedelta, *, account: str = "") -> set[str]:
    """Extend the leases `holder` still holds among `synced`'s mailboxes of `account`;
    return those.

    `synced` maps each mailbox to the watcher's last sync, shown by `mailbridge status`.
    A lease that expired is not extended, even if nobody took it yet: its watcher stops
    and the mailbox is acquired afresh, like any other free one.
    """
    lease = LEASES.c
    held = set()
    with store.transaction() as tx:
        conn = tx.session.connection()
        for mailbox, synced_at in synced.items():
            values: dict[str, object] = {"expires_at": now + duration}
            if synced_at is not None:
                values["synced_at"] = synced_at
            done = conn.execute(update(LEASES).where(
                lease.account == account, lease.mailbox == mailbox, lease.holder == holder,
                lease.expires_at >= now,
            ).values(**values))
            if done.rowcount:
                held.add(mailbox)
    return held


def release(store: Store, holder: str, mailboxes: Sequence[str] | None = None, *,
            account: str = "") -> None:
    """Give up `holder`'s leases (all, or these of `account`), so that a peer takes them at
    once."""
    lease = LEASES.c
    query = delete(LEASES).where(lease.holder == holder)
    if mailboxes is not None:
        query = query.where(lease.account == account, lease.mailbox.in_(list(mailboxes)))
    with store.transaction() as tx:
        tx.session.connection().execute(query)


def stopped(store: Store, instance: str, now: datetime, reason: str) -> None:
    """Mark `instance` as stopped and drop its leases (a clean shutdown)."""
    release(store, instance)
    i = INSTANCES.c
    with store.transaction() as tx:
        tx.session.connection().execute(update(INSTANCES).where(i.id == instance).values(
            stopped_at=now, stop_reason=reason, last_seen_at=now))


@dataclass(frozen=True)
class Reaped:
    instances: int
    leases: int
    interrupted: int


def reap(store: Store, dead: Sequence[str], now: datetime, reason: str, *,
         unclaimed: bool = False) -> Reaped:
    """Clean up after instances presumed dead: their leases go, the mail they were sending
    is recorded as failed (never sent again), and they are marked stopped with `reason`.

    Their scheduler work needs nothing: it was claimed inside a transaction, which the
    database rolled back when their connection went. `unclaimed`: also fail `sending`
    items that record no instance (left by a version before instances were recorded).
    """
    i, lease = INSTANCES.c, LEASES.c
    interrupted = 0
    if dead or unclaimed:
        interrupted = store.recover_interrupted(
            now, claimers=list(dead), why=f"its instance stopped: {reason}")
    if not dead:
        return Reaped(0, 0, interrupted)
    with store.transaction() as tx:
        conn = tx.session.connection()
        leases_gone = conn.execute(delete(LEASES).where(lease.holder.in_(list(dead)))).rowcount
        marked = conn.execute(update(INSTANCES).where(i.id.in_(list(dead)),
                                                      i.stopped_at.is_(None))
                              .values(stopped_at=now, stop_reason=reason)).rowcount
    return Reaped(int(marked or 0), int(leases_gone or 0), interrupted)


def instances(store: Store) -> list[InstanceRow]:
    """Every instance recorded, earliest started first."""
    i = INSTANCES.c
    with store.transaction() as tx:
        rows = tx.session.connection().execute(
            select(i.id, i.host, i.pid, i.version, i.started_at, i.last_seen_at, i.stopped_at,
                   i.stop_reason, i.machine_id, i.boot_id, i.problems)
            .order_by(i.started_at, i.id)).all()
    return [InstanceRow(**row._mapping) for row in rows]


def leases(store: Store) -> list[LeaseRow]:
    lease = LEASES.c
    with store.transaction() as tx:
        rows = tx.session.connection().execute(
            select(lease.mailbox, lease.holder, lease.acquired_at, lease.expires_at,
                   lease.synced_at, lease.account).order_by(lease.account, lease.mailbox)).all()
    return [LeaseRow(*row) for row in rows]


def forget_stopped(store: Store, before: datetime) -> int:
    """Delete instances that stopped before `before`; return how many."""
    i = INSTANCES.c
    with store.transaction() as tx:
        done = tx.session.connection().execute(
            delete(INSTANCES).where(i.stopped_at.is_not(None), i.stopped_at < before))
    return int(done.rowcount or 0)
