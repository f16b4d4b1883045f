"""Staff mail nothing vouches for: deciding it, and telling the person whose address it names.

Public API: `StaffTrust` (`unverified(message, sender, mailbox) -> str`, `notify(tx, ...)`),
`NOTICES_MAILBOX`.

Ingest asks `unverified` about every message whose From is an agent's or a lead's address.
Mail through the relay (SMTP AUTH) and in the watched Sent folders is staff mail by where it
comes from; mail in the INBOX only when our mail server's topmost Authentication-Results
field vouches for the address (`mailbridge.core.trust`). Mail that is not vouched for is
recorded under the rule `unverified_agent` (`mailbridge.core.rules`) and changes nothing.
`notify` queues the notice (`mailbridge.mail.trust_notice`) to the configured address, never
to the message's sender or Reply-To, at most once per `core.trust.NOTICE_INTERVAL` per
address; the time of the last one is the outbox row it left, so a restart sends none early.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from mailbridge.config import Config
from mailbridge.core import trust
from mailbridge.core.model import InboundMessage
from mailbridge.daemon.notices import StaffNotice, queue_notice
from mailbridge.logs import fields
from mailbridge.mail.headers import make_message_id
from mailbridge.mail.trust_notice import unverified_notice
from mailbridge.store.tx import Tx

log = logging.getLogger(__name__)

NOTICES_MAILBOX = "unverified"
"""The outbox mailbox of these notices; the throttle reads its rows."""


class StaffTrust:
    def __init__(self, config: Config, *, names: Mapping[str, str],
                 sent_folders: frozenset[str]) -> None:
        """`names`: the display name of every staff address (lower-case) that may be told."""
        self.config = config
        self.names = dict(names)
        self.sent_folders = sent_folders
        self.authserv_id = config.rules.trusted_authserv_id

    def unverified(self, message: InboundMessage, sender: str, mailbox: str) -> str:
        """"" when staff mail from `sender` (lower-case) in `mailbox` counts as theirs; else
        why it does not, in a few words without an address."""
        if mailbox in self.sent_folders:
            return ""
        found = trust.vouch(message.header_all("authentication-results"), address=sender,
                            authserv_id=self.authserv_id)
        return "" if found.trusted else found.why

    def notify(self, tx: Tx, message: InboundMessage, sender: str, *, thread_id: str | None,
               now: datetime) -> int:
        """Queue the notice to `sender` unless they had one within the interval; return how
        many rows were queued (0 or 1)."""
        if sender not in self.names or \
                not trust.notice_due(tx.last_queued(NOTICES_MAILBOX, sender), now):
            return 0
        support, relay = self.config.support, self.config.relay
        message_id = make_message_id(support.domain)
        mail = unverified_notice(
            support_name=support.name, support_address=support.address,
            name=self.names[sender], address=sender, subject=message.subject,
            relay=f"{relay.hostname or relay.host}:{relay.port}" if relay.enabled else "",
            sent_folders=tuple(sorted(self.sent_folders)),
            authenticated=bool(self.authserv_id), message_id=message_id, date=now)
        envelope = self.config.smtp.envelope_sender if self.config.smtp else ""
        number = tx.take_turn("unverified_notices")
        # About no single thread: its id is not recorded, a reply to it is plain staff mail.
        queue_notice(tx, StaffNotice("", f"unverified-{number}", NOTICES_MAILBOX, sender,
                                     message_id, mail.as_bytes()),
                     envelope_from=envelope, now=now)
        log.info("staff mail %s", fields(event="unverified_notice", thread=thread_id))
        return 1
