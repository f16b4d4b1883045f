"""Whether customers' messages in the support mailbox have been opened: their \\Seen flag.

Public API: `SeenFlags(settings, *, tokens=None)`, called with the messages to look at as
(account, mailbox, UIDVALIDITY, UID) and giving {message: seen} for those it could learn;
`Located`.

A status update says whether a person has opened the request. The scheduler asks just
before it writes updates, only for the messages of the threads getting one, over a
short-lived connection of its own: never the watcher's IDLE connection, which may belong to
another instance, and no flag cache that could go stale. Status updates are rare (at most
`[sla] max_status_updates` per thread), so one login per round of updates costs little.
Mailboxes are opened with EXAMINE, read-only, so looking marks nothing; FLAGS is all that
is fetched. A message whose mailbox has a new UIDVALIDITY, or that is gone, is left out:
not known; so is one of another account (`ImapSettings.account`: accounts may share a
store, and the scheduler of any instance may write the update). Connection trouble is
logged and gives what was learned before it, so an update then says nothing about opening
rather than something untrue. Blocking: the scheduler calls it from its worker thread.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Iterable
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from mailbridge.config import ImapSettings
from mailbridge.errors import TransientError
from mailbridge.io.imap_connect import TokenSource, log_in, open_client
from mailbridge.logs import fields

log = logging.getLogger(__name__)

SEEN = b"\\Seen"
Located = tuple[str, str, int, int]
"""A message in a mailbox: (account, mailbox, UIDVALIDITY, UID)."""


class SeenFlags:
    """Asks the server for the \\Seen flag of given messages, one connection per call."""

    def __init__(self, settings: ImapSettings, *, tokens: TokenSource | None = None,
                 factory: type[IMAPClient] = IMAPClient) -> None:
        self.settings = settings
        self.tokens = tokens
        """OAuth2 access tokens for the login ([imap] auth = "oauth2"); None: the password."""
        self.factory = factory

    def __call__(self, wanted: Iterable[Located]) -> dict[Located, bool]:
        by_mailbox: dict[str, set[tuple[int, int]]] = {}
        account = self.settings.account
        for owner, mailbox, uidvalidity, uid in wanted:
            if owner == account:
                by_mailbox.setdefault(mailbox, set()).add((uidvalidity, uid))
        found: dict[Located, bool] = {}
        if not by_mailbox:
            return found
        client: Any = None
        try:
            client = open_client(self.settings, self.factory)
            log_in(client, self.settings, self.tokens)
            for mailbox, messages in sorted(by_mailbox.items()):
                found.update(_flags(client, account, mailbox, messages))
        except (IMAPClientError, OSError, ssl.SSLError, TransientError) as exc:
            log.warning("imap %s", fields(event="flags_unavailable", error=type(exc).__name__,
                                          detail=str(exc)[:200], learned=len(found)))
        finally:
            if client is not None:
                with contextlib.suppress(IMAPClientError, OSError, ssl.SSLError):
                    client.logout()
        return found


def _flags(client: Any, account: str, mailbox: str,
           messages: set[tuple[int, int]]) -> dict[Located, bool]:
    """\\Seen of `messages` (UIDVALIDITY, UID) in `mailbox`, for the current UIDVALIDITY."""
    info = client.select_folder(mailbox, readonly=True)
    validity = int(info[b"UIDVALIDITY"])
    uids = sorted(uid for uidvalidity, uid in messages if uidvalidity == validity)
    if not uids:
        return {}
    data = client.fetch(uids, ["FLAGS"])
    return {(account, mailbox, validity, uid): SEEN in tuple(data[uid].get(b"FLAGS", ()))
            for uid in uids if uid in data}
