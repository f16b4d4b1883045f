"""Watch one IMAP mailbox with IDLE and hand every new message over, in UID order.

Public API: `Fetched`, `ImapWatcher` (start, stop, wake, connected, heartbeat, problem),
`Supervision`.

imapclient blocks, so the watcher runs in its own thread (not `asyncio.to_thread`:
a cancelled task cannot stop a thread). It fetches headers, the structure and the
first text part only, never attachments; of a delivery report also its delivery-status
part and the header of the message it returns (bounded), so that a bounce of our own
mail is known as one. A durable cursor (UIDVALIDITY, last UID) of the account's
(`ImapSettings.account`) mailbox lives in the store and advances in the same transaction as
each message, so a restart neither misses nor repeats mail. Any connection trouble ends the session;
the watcher reconnects with capped exponential backoff and jitter. Anything else (a bug)
ends the session too and is reported to its `Supervision`, which logs it with its
traceback and counts the restart; the backoff then grows until a session has caught up.
`wake()` (a push from the mail server, `mailbridge.io.push`) ends the IDLE or poll wait at
once and looks for new UIDs, as an EXISTS from IDLE does.

A server that throttles us (`imap_connect.throttling`: Microsoft 365's ``NO [THROTTLED]
Request is throttled``) is waited out with a backoff of its own (`imap_connect.Throttle`)
that a session catching up does not reset: a throttled mailbox is reconnected less and
less often, not every second.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from mailbridge.clock import Clock
from mailbridge.config import ImapSettings
from mailbridge.core.model import InboundMessage, Report
from mailbridge.errors import TransientError
from mailbridge.io.backoff import Backoff
from mailbridge.io.imap_client import WatchClient
from mailbridge.io.imap_connect import (
    Throttle,
    TokenSource,
    log_in,
    open_client,
    server_text,
    throttling,
)
from mailbridge.io.wakeup import Wakeup
from mailbridge.logs import fields
from mailbridge.mail.parse import first_text_section, parse_parts
from mailbridge.mail.reports import report_sections
from mailbridge.mail.structure import imap_parts
from mailbridge.metrics.families import Metrics
from mailbridge.store.db import Store

log = logging.getLogger(__name__)

MAX_TEXT_BYTES = 65536
IDLE_CHECK_SECONDS = 30.0
"""Wake at least this often while idling, to refresh the heartbeat and see a stop."""


class ConnectionDropped(Exception):
    """The server closed the connection while we were idling."""


@dataclass(frozen=True)
class Fetched:
    """One message as fetched: parsed headers and first text part, and its arrival."""

    uid: int
    uidvalidity: int
    message: InboundMessage | None
    """None when the message could not be parsed at all; `error` says why."""
    internaldate: datetime | None
    size: int
    error: str = ""


Deliver = Callable[[Sequence[Fetched]], None]


class Supervision(Protocol):
    """Who hears of a bug in the watcher's thread (`mailbridge.daemon.supervisor`); called
    from that thread."""

    def failed(self, exc: BaseException | None, retry_in: float) -> None:
        """The session ended with an unexpected error; it starts again in `retry_in` s."""

    def restarted(self) -> None:
        """The session starts again after that error."""


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _body_bytes(data: dict[bytes, Any]) -> bytes | None:
    for key, value in data.items():
        if key.startswith(b"BODY[") and not key.startswith(b"BODY[HEADER"):
            return value if isinstance(value, bytes) else None
    return None


def _reports(client: IMAPClient, meta: dict[int, Any], uids: list[int]) -> dict[int, Report | None]:
    """The report parts of the messages that have them (a bounce's delivery status and the
    header it returns, `mailbridge.mail.reports`): one bounded FETCH per shape of report."""
    wanted = {uid: report_sections(meta.get(uid, {}).get(b"BODYSTRUCTURE")) for uid in uids}
    by_items: dict[tuple[str, ...], list[int]] = {}
    for uid, sections in wanted.items():
        if sections.items:
            by_items.setdefault(tuple(sections.items), []).append(uid)
    found: dict[int, Report | None] = {}
    for items, members in by_items.items():
        parts = client.fetch(members, list(items))
        for uid in members:
            found[uid] = wanted[uid].read(parts.get(uid, {}))
    return found


class ImapWatcher:
    """One mailbox, one thread, one IMAP connection."""

    def __init__(self, settings: ImapSettings, *, mailbox: str, store: Store, deliver: Deliver,
                 clock: Clock, metrics: Metrics, supervision: Supervision | None = None,
                 tokens: TokenSource | None = None,
                 throttle_backoff: Backoff | None = None) -> None:
        self.settings = settings
        self.mailbox = mailbox
        self.store = store
        self.deliver = deliver
        self.clock = clock
        self.metrics = metrics
        self.supervision = supervision
        self.tokens = tokens
        """OAuth2 access tokens for the login ([imap] auth = "oauth2"); None: the password."""
        self.heartbeat = time.monotonic()
        self.last_sync: datetime | None = None
        """When the server last confirmed we have seen everything (a sync or IDLE check)."""
        self.connected = False
        self.problem: str | None = None
        """Why the watcher cannot get in, while a reconnect alone will not mend it (the login
        refused, the server throttling us); None once a session starts (`daemon.health`)."""
        self._stop = threading.Event()
        self._wakeup = Wakeup()
        self._client: IMAPClient | None = None
        self._thread: threading.Thread | None = None
        self._backoff = Backoff(initial=1.0, cap=120.0)
        self._adopted: set[int] = set()
        """UIDVALIDITYs whose unnamed rows this watcher adopted (`_start_point`): once each,
        not at every reconnect."""
        self._throttle = Throttle(throttle_backoff)

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"imap:{self.mailbox}",
                                        daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look for new mail now (from any thread): ends the IDLE or poll wait. Wake-ups
        before the next look coalesce into one."""
        self._wakeup.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to finish and wait for it; wakes it from IDLE at once."""
        self._stop.set()
        self._wakeup.set()
        client = self._client
        if client is not None:
            with contextlib.suppress(OSError):
                client.socket().shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._session()
            except Exception as exc:  # the thread's top level: log once, back off, retry
                if self._stop.is_set():
                    break
                self._lost(exc)
            finally:
                self._set_connected(False)
                self._close()
        self._wakeup.close()

    def _lost(self, exc: BaseException) -> None:
        self.metrics.imap_reconnects.labels(self.mailbox).inc()
        delay = self._backoff.next_delay()
        throttled = throttling(exc)
        if throttled is not None:
            self._throttled(throttled, delay)
            return
        if isinstance(exc, LoginError) and not isinstance(exc.__cause__, TransientError):
            # (a token source with no token to give reports that itself)
            self.problem = f"the server refuses the login: {server_text(exc)[:200]}"
        expected = isinstance(exc, IMAPClientError | OSError | ssl.SSLError | ConnectionDropped
                              | TransientError)
        if expected or self.supervision is None:
            log.log(logging.WARNING if expected else logging.ERROR, "imap %s",
                    fields(event="disconnected", mailbox=self.mailbox, error=type(exc).__name__,
                           detail=str(exc)[:200], retry_in_s=round(delay, 1)),
                    exc_info=None if expected else exc)
        else:
            self.supervision.failed(exc, delay)
        self._stop.wait(delay)
        if not expected and self.supervision is not None and not self._stop.is_set():
            self.supervision.restarted()

    def _throttled(self, exc: BaseException, delay: float) -> None:
        """Wait out a throttling answer: the longer of both backoffs and the server's
        suggestion (capped)."""
        suggested = getattr(exc, "suggested", None)
        delay = self._throttle.wait(suggested, at_least=delay)
        self.problem = (f"the server throttles the connection: {server_text(exc)[:200]}; "
                        f"next try in {round(delay)} s")
        log.warning("imap %s", fields(event="throttled", mailbox=self.mailbox,
                                      detail=str(exc)[:200], suggested_s=suggested,
                                      retry_in_s=round(delay, 1)))
        end = time.monotonic() + delay  # up to 15 min: alive all along for `stalled`
        while not self._stop.is_set() and (left := end - time.monotonic()) > 0:
            self.heartbeat = time.monotonic()
            self._stop.wait(min(left, self.settings.read_timeout))

    def _set_connected(self, up: bool) -> None:
        self.connected = up
        self.metrics.imap_connected.labels(self.mailbox).set(1 if up else 0)

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        with contextlib.suppress(IMAPClientError, OSError):
            client.shutdown()

    # -- one session ------------------------------------------------------------

    def _connect(self) -> IMAPClient:
        client = open_client(self.settings, WatchClient)
        client.wakeup = self._wakeup
        self._client = client  # from here on, stop() can end a slow login
        log_in(client, self.settings, self.tokens)
        return client

    def _session(self) -> None:
        client = self._connect()
        info = client.select_folder(self.mailbox, readonly=True)
        uidvalidity = int(info[b"UIDVALIDITY"])
        last_uid = self._start_point(client, uidvalidity)
        self._set_connected(True)
        self.problem = None
        log.info("imap %s", fields(event="connected", mailbox=self.mailbox,
                                   uidvalidity=uidvalidity, last_uid=last_uid,
                                   idle=client.has_capability("IDLE")))
        while not self._stop.is_set():
            self._wakeup.take()  # a wake-up from here on is for mail this look may miss
            last_uid = self._catch_up(client, uidvalidity, last_uid)
            self._synced()
            # Only now: a bug that ends every session before it catches up waits longer each time.
            self._backoff.reset()
            self._throttle.caught_up()
            if client.has_capability("IDLE"):
                self._idle(client)
            else:
                self._poll(client)

    def _synced(self) -> None:
        self.heartbeat = time.monotonic()
        self.last_sync = self.clock.now()
        self.metrics.imap_last_sync.labels(self.mailbox).set(self.last_sync.timestamp())

    def _start_point(self, client: IMAPClient, uidvalidity: int) -> int:
        """The last UID already handled; on a first sync or a new UIDVALIDITY, the
        messages older than the backfill window are left alone. What was recorded before
        sources named their account is this account's if its UIDVALIDITY is this one's."""
        account = self.settings.account
        if uidvalidity not in self._adopted:
            adopted = self.store.adopt_unnamed(account, self.mailbox, uidvalidity)
            self._adopted.add(uidvalidity)
            if adopted:
                log.info("imap %s", fields(event="adopted", mailbox=self.mailbox,
                                           uidvalidity=uidvalidity, messages=adopted))
        cursor = self.store.cursor(account, self.mailbox)
        if cursor is not None and cursor[0] == uidvalidity:
            return cursor[1]
        if cursor is not None:
            log.warning("imap %s", fields(event="uidvalidity_changed", mailbox=self.mailbox,
                                          old=cursor[0], new=uidvalidity))
        since = self.clock.now() - self.settings.backfill
        uids = sorted(client.search(["ALL"]))
        dates = client.fetch(uids, ["INTERNALDATE"]) if uids else {}
        start = 0
        for uid in uids:  # skip the leading run of old mail, nothing after a recent one
            arrived = _aware(dates.get(uid, {}).get(b"INTERNALDATE"))
            if arrived is None or arrived >= since:
                break
            start = uid
        older = sum(1 for uid in uids if uid <= start)
        self.store.reset_cursor(account, self.mailbox, uidvalidity, start, self.clock.now())
        log.info("imap %s", fields(event="first_sync", mailbox=self.mailbox, messages=len(uids),
                                   left_alone=older, backfill=str(self.settings.backfill)))
        return start

    def _catch_up(self, client: IMAPClient, uidvalidity: int, last_uid: int) -> int:
        """Handle every message after `last_uid`, until the server's view stops growing.

        A server adds new mail to the session's view at the end of a command and says
        so with an untagged EXISTS in that command's response; SEARCH itself ran on the
        older view. imaplib keeps those EXISTS lines (imapclient ignores them), so we
        search again while they appear. Anything newer is announced during IDLE.
        """
        untagged = client._imap.untagged_responses
        while not self._stop.is_set():
            untagged.clear()
            found = client.search(["UID", f"{last_uid + 1}:*"])
            uids = sorted(u for u in found if u > last_uid)
            if not uids and not untagged.get("EXISTS"):
                break
            for start in range(0, len(uids), self.settings.fetch_batch):
                if self._stop.is_set():
                    break
                chunk = uids[start:start + self.settings.fetch_batch]
                self.deliver(self._fetch(client, chunk, uidvalidity))
                last_uid = chunk[-1]
                self.heartbeat = time.monotonic()
        return last_uid

    def _fetch(self, client: IMAPClient, uids: list[int], uidvalidity: int) -> list[Fetched]:
        meta = client.fetch(uids, ["BODY.PEEK[HEADER]", "BODYSTRUCTURE", "INTERNALDATE",
                                   "RFC822.SIZE"])
        sections = {uid: first_text_section(meta.get(uid, {}).get(b"BODYSTRUCTURE"))
                    for uid in uids}
        texts: dict[int, bytes | None] = {}
        by_section: dict[str, list[int]] = {}
        for uid, section in sections.items():
            if section is not None:
                by_section.setdefault(section.section, []).append(uid)
        for section_name, members in by_section.items():
            parts = client.fetch(members, [f"BODY.PEEK[{section_name}]<0.{MAX_TEXT_BYTES}>"])
            for uid in members:
                texts[uid] = _body_bytes(parts.get(uid, {}))
        reports = _reports(client, meta, uids)
        fetched = []
        for uid in uids:
            data = meta.get(uid)
            if data is None:  # expunged between SEARCH and FETCH
                continue
            section = sections[uid]
            size = int(data.get(b"RFC822.SIZE", 0))
            arrived = _aware(data.get(b"INTERNALDATE"))
            try:
                # The parts the robot rules read, from BODYSTRUCTURE: they are never fetched.
                structure = imap_parts(data[b"BODYSTRUCTURE"]) \
                    if b"BODYSTRUCTURE" in data else None
                message = parse_parts(
                    data.get(b"BODY[HEADER]", b""), texts.get(uid),
                    transfer_encoding=section.encoding if section else None,
                    charset=section.charset if section else None,
                    subtype=section.subtype if section else None,
                    text_size=section.size if section else None, size=size,
                    report=reports.get(uid), structure=structure)
            except Exception as exc:  # a poison message must not stall the mailbox
                log.exception("imap %s", fields(event="parse_failed", uid=uid))
                fetched.append(Fetched(uid, uidvalidity, None, arrived, size,
                                       error=f"{type(exc).__name__}: {exc}"))
                continue
            fetched.append(Fetched(uid, uidvalidity, message, arrived, size))
        return fetched

    def _idle(self, client: IMAPClient) -> None:
        """IDLE until the mailbox grows, the refresh interval ends, we are woken or stopped."""
        if self._wakeup.pending:
            return
        client.idle()
        deadline = time.monotonic() + self.settings.idle_refresh.total_seconds()
        try:
            while not self._stop.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                timeout = min(IDLE_CHECK_SECONDS, remaining)
                started = time.monotonic()
                responses = client.idle_check(timeout=timeout)
                self.heartbeat = time.monotonic()
                self.last_sync = self.clock.now()
                if self._stop.is_set():
                    return
                if self._wakeup.pending or any(len(r) > 1 and r[1] == b"EXISTS"
                                               for r in responses):
                    break
                if not responses and time.monotonic() - started < timeout / 2:
                    # imapclient returns [] on EOF as on timeout (imapclient #565).
                    raise ConnectionDropped("connection closed during IDLE")
        finally:
            if not self._stop.is_set():
                client.idle_done()

    def _poll(self, client: IMAPClient) -> None:
        self._wakeup.wait(self.settings.poll_interval.total_seconds())  # stop() wakes it too
        if not self._stop.is_set():
            client.noop()

