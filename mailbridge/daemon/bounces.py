"""A bounce or complaint about our own mail, recorded on the thread it names.

Public API: `EVENT`, `Bounced`, `record_bounce(tx, message, verdict, received=...)`.

Ingest asks after deciding an inbound message: when the core says it reports a failure of
mail we sent (`mailbridge.core.bounces.failure_kind`) and it names one of our Message-IDs
(an acknowledgement, a status update, an agent's answer) or a thread reference that exists,
the thread gets an `ack_bounced` event, in the message's transaction, so `threads` shows
that the customer's address may be broken; the caller counts it by kind. The message itself
stays unanswered, as the rules decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mailbridge.core import bounces
from mailbridge.core.model import InboundMessage, Verdict
from mailbridge.store.tx import Tx

EVENT = "ack_bounced"
_OURS = frozenset({"out", "agent"})
"""Known-id directions of mail we sent to customers: acks and updates, agents' answers."""


@dataclass(frozen=True)
class Bounced:
    """A failure of our mail, recorded on `thread`."""

    kind: str
    """One of `mailbridge.core.bounces.KINDS`."""
    thread: str


def record_bounce(tx: Tx, message: InboundMessage, verdict: Verdict, *,
                  received: datetime) -> Bounced | None:
    """Record `message` on the thread of ours it names, when it reports our mail failed."""
    kind = bounces.failure_kind(message, verdict)
    if kind is None:
        return None
    named = bounces.named(message)
    known = tx.known_ids(list(named.ids))
    found = next(((known[mid][0], f"our mail {mid}") for mid in named.ids
                  if mid in known and known[mid][1] in _OURS), None)
    if found is None:
        found = next(((ref, f"thread reference [#{ref}]") for ref in named.refs
                      if tx.thread_customer(ref) is not None), None)
    if found is None:
        return None
    thread, how = found
    if kind == "complaint":
        detail = f"a spam complaint came back about {how}: it was reported as spam"
    else:
        detail = f"a delivery failure came back about {how}: the customer's address may be broken"
    tx.event(thread, received, EVENT, detail)
    return Bounced(kind, thread)
