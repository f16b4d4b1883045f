"""`mailbridge status`: the instances sharing the store, who watches which mailbox, the outbox,
the next deadline and the open threads whose mail bounced, read from the store (the daemon
need not answer).

What a running instance reports degraded (a refused OAuth2 grant, and what to do) reaches
the store with its heartbeat (`daemon.membership`, `daemon.health`) and is shown from there:
status never asks the token endpoint, whose refresh would rotate the daemon's token.

Public API: `Status`, `InstanceStatus`, `MailboxStatus`, `gather(store, config, now, host,
here)`, `print_status(status, out, as_json)`, `EXIT_UNWATCHED`.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, TextIO

from sqlalchemy import func, select

from mailbridge.clock import SystemClock
from mailbridge.config import Config, load_config
from mailbridge.config.values import mask_url
from mailbridge.daemon.identity import Identity
from mailbridge.store import peers
from mailbridge.store.db import Store
from mailbridge.store.migrations import current_version
from mailbridge.store.statements import CURSORS, OPEN_STATES, OUTBOX, THREADS
from mailbridge.store.tables import ThreadEvent, table_of

EVENTS = table_of(ThreadEvent)
EXIT_UNWATCHED = 3
"""Like `systemctl status`: a configured mailbox that no live instance watches."""


@dataclass(frozen=True)
class InstanceStatus:
    id: str
    host: str
    pid: int
    version: str
    started_at: datetime
    last_seen_at: datetime
    state: str
    """"alive", "silent" (no heartbeat within the lease timeout, or from before this
    machine's reboot; not yet reaped) or "stopped"."""
    stop_reason: str
    mailboxes: tuple[str, ...]
    this_host: bool
    """Same machine id as here (same host name where a machine id is unknown)."""
    machine_id: str = ""
    boot_id: str = ""
    problems: tuple[str, ...] = ()
    """What it reported degraded at its last heartbeat, each with what to do."""


@dataclass(frozen=True)
class MailboxStatus:
    mailbox: str
    holder: str | None
    expires_at: datetime | None
    last_sync: datetime | None
    uidvalidity: int | None
    last_uid: int | None
    last_recorded_at: datetime | None
    account: str = ""
    """`user@host:port` of the IMAP account whose mailbox this is ("" for none)."""
    this_account: bool = True
    """The account of the configuration `status` read: its rows are named by folder alone."""

    @property
    def name(self) -> str:
        """The folder, and whose it is when not this configuration's account."""
        return _name(self.mailbox, self.account, self.this_account)


@dataclass(frozen=True)
class Status:
    now: datetime
    store: str
    schema_version: int
    instances: tuple[InstanceStatus, ...]
    mailboxes: tuple[MailboxStatus, ...]
    outbox_pending: int
    outbox_sending: int
    outbox_failed: int
    outbox_unknown: int
    """Items the server may or may not have accepted (no reply after the end of DATA)."""
    next_deadline: datetime | None
    next_deadline_thread: str | None
    bounced: tuple[str, ...] = ()
    """Open threads whose mail to the customer bounced or drew a complaint (an `ack_bounced`
    event): their address may be broken."""

    @property
    def unwatched(self) -> list[str]:
        """Mailboxes whose lease no live instance holds."""
        alive = {i.id for i in self.instances if i.state == "alive"}
        return [m.name for m in self.mailboxes if m.holder not in alive]

    @property
    def degraded(self) -> list[tuple[str, str]]:
        """(instance id, problem) of each live instance's reported problems."""
        return [(i.id, problem) for i in self.instances if i.state == "alive"
                for problem in i.problems]


def _name(mailbox: str, account: str, this_account: bool) -> str:
    if this_account:
        return mailbox
    return f"{mailbox} of {account or 'an unnamed account (an older version)'}"


def _state(row: peers.InstanceRow, now: datetime, timeout: timedelta, here: Identity) -> str:
    if row.stopped_at is not None:
        return "stopped"
    if here.earlier_boot(row.machine_id, row.boot_id, row.last_seen_at):
        return "silent"
    return "alive" if now - row.last_seen_at <= timeout else "silent"


def _this_host(row: peers.InstanceRow, host: str, here: Identity) -> bool:
    if row.machine_id and here.machine_id:
        return row.machine_id == here.machine_id
    return row.host == host


def gather(store: Store, config: Config, now: datetime, host: str | None = None,
           here: Identity | None = None) -> Status:
    """Everything `mailbridge status` shows, as of `now`, seen from `host` and the machine
    and boot `here` (read from the system when not given)."""
    host = host or socket.gethostname()
    here = here or Identity.read()
    account = config.imap.account if config.imap else ""
    leases = {(lease.account, lease.mailbox): lease for lease in peers.leases(store)}
    held: dict[str, list[str]] = {}
    for lease in leases.values():
        if lease.expires_at >= now:
            held.setdefault(lease.holder, []).append(
                _name(lease.mailbox, lease.account, lease.account == account))
    instances = tuple(
        InstanceStatus(row.id, row.host, row.pid, row.version, row.started_at, row.last_seen_at,
                       _state(row, now, config.store.lease_timeout, here), row.stop_reason,
                       tuple(sorted(held.get(row.id, ()))), _this_host(row, host, here),
                       row.machine_id, row.boot_id, tuple(row.problems.splitlines()))
        for row in peers.instances(store))
    # "auto" Sent folders are named by the leases the daemon took for what it found.
    configured = [config.imap.mailbox] if config.imap else []
    if config.imap and not isinstance(config.imap.sent_folders, str):
        configured += config.imap.sent_folders
    names = list(dict.fromkeys([*((account, m) for m in configured), *sorted(leases)]))
    with store.transaction() as tx:
        conn = tx.session.connection()
        o, t, c = OUTBOX.c, THREADS.c, CURSORS.c
        by_state: dict[str, int] = dict(conn.execute(select(o.state, func.count()).where(
            o.state.in_(["pending", "sending", "failed", "unknown"])).group_by(o.state)).all())
        due = conn.execute(select(t.next_due_at, t.id).where(t.next_due_at.is_not(None))
                           .order_by(t.next_due_at).limit(1)).first()
        cursors = {(row.account, row.mailbox): row for row in conn.execute(
            select(c.account, c.mailbox, c.uidvalidity, c.last_uid, c.updated_at)
            .where(c.mailbox.in_([m for _, m in names])))}
        version = current_version(conn)
        e = EVENTS.c
        bounced = tuple(conn.execute(
            select(t.id).where(t.state.in_(OPEN_STATES), t.id.in_(
                select(e.thread_id).where(e.kind == "ack_bounced"))).order_by(t.id)).scalars())
    mailboxes = []
    for owner, name in names:
        found = leases.get((owner, name))
        live = found is not None and found.expires_at >= now
        # Until its watcher adopts it, the cursor from before cursors named their account.
        cursor = cursors.get((owner, name)) or (cursors.get(("", name)) if owner == account
                                                else None)
        mailboxes.append(MailboxStatus(
            name, found.holder if live and found else None,
            found.expires_at if live and found else None,
            found.synced_at if found else None,
            cursor.uidvalidity if cursor else None, cursor.last_uid if cursor else None,
            cursor.updated_at if cursor else None, owner, owner == account))
    return Status(now, mask_url(config.store.url), version, instances, tuple(mailboxes),
                  int(by_state.get("pending", 0)), int(by_state.get("sending", 0)),
                  int(by_state.get("failed", 0)), int(by_state.get("unknown", 0)),
                  due[0] if due else None, due[1] if due else None, bounced)


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    seconds = round((now - when).total_seconds())
    if abs(seconds) < 120:
        return f"{seconds}s ago" if seconds >= 0 else f"in {-seconds}s"
    minutes = abs(seconds) // 60
    text = f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60} min"
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def _json(status: Status) -> str:
    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    data = plain(asdict(status))
    data["unwatched"] = status.unwatched
    data["degraded"] = [{"instance": i, "problem": p} for i, p in status.degraded]
    return json.dumps(data)


def print_status(status: Status, out: TextIO, *, as_json: bool = False) -> None:
    if as_json:
        print(_json(status), file=out)
        return
    now = status.now
    print(f"store: {status.store} (schema version {status.schema_version})", file=out)
    print("instances:", file=out)
    live_here = [i for i in status.instances if i.this_host and i.state == "alive"]
    for i in status.instances:
        if i.state == "stopped" and not i.this_host:
            continue
        mark = ""
        if i.this_host:
            mark = "  <- this instance" if len(live_here) == 1 and i in live_here else \
                "  (this host)"
        stopped = f" ({i.stop_reason})" if i.state == "stopped" and i.stop_reason else ""
        machine = f" machine {i.machine_id[:8]} boot {i.boot_id[:8]}" if i.machine_id else ""
        print(f"  {i.id}  {i.host}:{i.pid}{machine}  {i.state}{stopped}, "
              f"started {_ago(i.started_at, now)}, last seen {_ago(i.last_seen_at, now)}, "
              f"mailboxes: {', '.join(i.mailboxes) or '-'}{mark}", file=out)
    if not status.instances:
        print("  none has run on this store yet", file=out)
    print("mailboxes:", file=out)
    for m in status.mailboxes:
        holder = f"watched by {m.holder}" if m.holder else "NOT WATCHED"
        cursor = f"last UID {m.last_uid}" if m.last_uid is not None else "no UID recorded yet"
        print(f"  {m.name}: {holder}, last IMAP sync {_ago(m.last_sync, now)}, {cursor}, "
              f"last recorded {_ago(m.last_recorded_at, now)}", file=out)
    print(f"outbox: {status.outbox_pending} pending, {status.outbox_sending} sending, "
          f"{status.outbox_failed} failed, {status.outbox_unknown} unknown", file=out)
    if status.next_deadline is None:
        print("next deadline: none", file=out)
    else:
        print(f"next deadline: {status.next_deadline:%Y-%m-%d %H:%M:%S} UTC "
              f"({_ago(status.next_deadline, now)}), thread {status.next_deadline_thread}",
              file=out)
    if status.bounced:
        print(f"bounced: mail to the customer of {len(status.bounced)} open threads came back "
              f"({', '.join(status.bounced[:10])}); `mailbridge threads` says why", file=out)
    for mailbox in status.unwatched:
        print(f"warning: no live instance watches {mailbox}; start one with "
              "`mailbridge run --config ...`", file=out)
    for instance, problem in status.degraded:
        print(f"degraded: {instance}: {problem}", file=out)


def command(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = Store.open(config.store.url, migrate=False)
    try:
        status = gather(store, config, SystemClock().now())
    finally:
        store.close()
    print_status(status, sys.stdout, as_json=args.json)
    return EXIT_UNWATCHED if status.unwatched else 0
