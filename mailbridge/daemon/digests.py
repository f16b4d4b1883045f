"""Shift digests: at the start of each agent's shift, one mail listing their open threads.

Public API: `Digests(config, renderer, team, store)` with `next_time(now)` (when the
scheduler must wake for the next one) and `run_due(now) -> int` (queue the digests due at
`now`; how many were queued); `GRACE`, `digest_kind(email, start)`.

When a digest is due is `core.briefing`'s decision, from the agents' shifts and `now`: a
shift that started at most `GRACE` ago, so a daemon restarted early in the shift still sends
it and one started hours later does not. The agent's open threads (awaiting them or the
customer) are listed by deadline; an agent with none gets no mail, and `[[agents]] digest =
false` turns it off. The digest goes out through `daemon.notices.queue_notice`, about no
single thread (thread id ""), with the outbox kind `digest_kind(agent, shift start)`: the
outbox's unique (thread, kind) key lets it out once across restarts and instances.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError

from mailbridge.config import Config
from mailbridge.core import briefing
from mailbridge.core.agents import Member
from mailbridge.core.model import DigestContext, DigestEntry
from mailbridge.daemon.notices import StaffNotice, queue_notice
from mailbridge.daemon.team import Team
from mailbridge.logs import fields
from mailbridge.mail.headers import make_message_id
from mailbridge.mail.render import Renderer
from mailbridge.store.db import Store
from mailbridge.store.tables import Thread

log = logging.getLogger(__name__)

GRACE = timedelta(hours=1)
"""How late into a shift its digest still goes out (a daemon that was down at its start)."""
_LOOK_AGAIN = timedelta(days=1)
"""With no shift start ahead (none within `core.briefing`'s horizon), look again then."""


def digest_kind(email: str, start: datetime) -> str:
    """The outbox kind of `email`'s digest for the shift starting at `start`: one per
    (agent, shift start), without the address itself."""
    agent = hashlib.sha256(email.lower().encode()).hexdigest()[:16]
    return f"digest-{agent}-{start.astimezone(UTC):%Y%m%dT%H%M%SZ}"


class Digests:
    def __init__(self, config: Config, renderer: Renderer, team: Team, store: Store) -> None:
        self.config = config
        self.renderer = renderer
        self.team = team
        self.store = store
        self._next_at: datetime | None = None
        """When to look next; None: at once (nothing looked at yet)."""

    def next_time(self, now: datetime) -> datetime:
        """When the scheduler must next call `run_due`."""
        if self._next_at is None:
            return now
        return self._next_at

    def run_due(self, now: datetime) -> int:
        """Queue every digest due at `now` not yet queued; return how many were queued."""
        if self._next_at is not None and now < self._next_at:
            return 0
        queued = sum(self._send(member, start, now)
                     for member, start in briefing.due_digests(self.team.members, now,
                                                               grace=GRACE))
        ahead = briefing.next_digest(self.team.members, now)
        self._next_at = min(ahead, now + _LOOK_AGAIN) if ahead else now + _LOOK_AGAIN
        return queued

    def _send(self, member: Member, start: datetime, now: datetime) -> bool:
        kind = digest_kind(member.email, start)
        try:
            with self.store.transaction() as tx:
                if tx.outbox_has("", kind):
                    return False
                threads = tx.agent_open_threads(member.email)
                if not threads:
                    return False
                message_id = make_message_id(self.config.support.domain)
                body = self._render(member, start, threads, message_id, now)
                envelope = self.config.smtp.envelope_sender if self.config.smtp else ""
                queue_notice(tx, StaffNotice("", kind, "scheduler", member.agent.email,
                                             message_id, body), envelope_from=envelope, now=now)
        except IntegrityError:  # another instance queued it first
            return False
        log.info("notice %s", fields(event="digest", threads=len(threads)))
        return True

    def _render(self, member: Member, start: datetime, threads: list[Thread],
                message_id: str, now: datetime) -> bytes:
        support = self.config.support
        entries = briefing.digest_order([
            DigestEntry(t.id, t.customer, t.subject, t.state, t.response_due_at)
            for t in threads])
        context = DigestContext(
            to_name=member.agent.name, to_address=member.agent.email,
            support_name=support.name, support_address=support.address,
            timezone=member.shift.timezone, shift_start=start, entries=tuple(entries))
        return self.renderer.render_digest(context, message_id=message_id, date=now,
                                           now=now).as_bytes()
