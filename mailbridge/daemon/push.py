"""Pushes from the mail server wake the watcher of the mailbox they name.

Public API: `push_receiver(config, watchers, metrics)`: the `PushReceiver` the HTTP endpoint
serves at /push/dovecot (`mailbridge.io.push`), protected by `[http] push_username` /
`push_password_file` when set.

A push names a login and a folder; it wakes this instance's watcher of that folder when the
login is `[imap] username` (compared without case, as Dovecot's usual auth_username_format
lowercases it), and nothing otherwise. With several instances only the one that holds the
mailbox's lease watches it; a push to another instance is counted as not_watched, and that
mail comes through IDLE as it would without pushes.
"""

from __future__ import annotations

from collections.abc import Sequence

from mailbridge.config import Config
from mailbridge.io.http import HttpAuth
from mailbridge.io.imap_watcher import ImapWatcher
from mailbridge.io.push import PushReceiver
from mailbridge.metrics.families import Metrics


def push_receiver(config: Config, watchers: Sequence[ImapWatcher],
                  metrics: Metrics) -> PushReceiver:
    """`watchers` is the service's own list, which changes as leases come and go."""
    http, imap = config.http, config.imap
    login = imap.username.casefold() if imap is not None else None

    def wake(user: str, folder: str) -> bool:
        if login is None or user.casefold() != login:
            return False
        for watcher in list(watchers):
            if _same_folder(watcher.mailbox, folder):
                watcher.wake()
                return True
        return False

    auth = None
    if http.push_username is not None and http.push_password is not None:
        auth = HttpAuth(basic_user=http.push_username, basic_password=http.push_password.reveal())
    return PushReceiver(wake, metrics=metrics, auth=auth)


def _same_folder(watched: str, pushed: str) -> bool:
    """IMAP names are case-sensitive, except INBOX (RFC 3501, 5.1)."""
    if watched.upper() == "INBOX":
        return pushed.upper() == "INBOX"
    return watched == pushed
