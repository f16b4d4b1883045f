"""Appending copies of the mail we sent to the support mailbox's Sent folder, over IMAP.

Public API: `SentFolder` (`append`, `close`, `folder`), `CopyError`.

The folder is the one the server marks `\\Sent` (RFC 6154 SPECIAL-USE, as LIST reports it),
else the configured name. The connection is this adapter's own, never the watcher's IDLE
one: it is opened on the first append, kept while appends succeed, and closed after any
failure, so that the next attempt connects and looks for the folder again (an operator may
have created it meanwhile). Blocking: the daemon calls it from a worker thread. Errors of
imapclient and the socket leave here as `CopyError`, with a bounded `reason`.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from datetime import datetime
from typing import Any

from imapclient.exceptions import IMAPClientError, LoginError

from mailbridge.config import ImapSettings
from mailbridge.core.folders import marked_sent
from mailbridge.errors import TransientError
from mailbridge.io.imap_connect import TokenSource, log_in, open_client, throttling
from mailbridge.io.imap_folders import list_folders
from mailbridge.logs import fields

log = logging.getLogger(__name__)

SEEN = b"\\Seen"


class CopyError(TransientError):
    """A copy could not be appended now; `reason` is one of
    `metrics.families.COPY_OUTCOMES` but "appended"; `retry_after`, the seconds a
    throttling server asked us to wait, if it did."""

    def __init__(self, reason: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.retry_after = retry_after


def _reason(exc: IMAPClientError) -> str:
    text = str(exc).upper()
    if isinstance(exc, LoginError) or throttling(exc) is not None:
        return "unavailable"
    if "TRYCREATE" in text or "NONEXISTENT" in text:
        return "missing_folder"
    return "refused"


class SentFolder:
    """One IMAP connection that appends copies, flagged \\Seen, to the Sent folder."""

    def __init__(self, settings: ImapSettings, *, fallback: str,
                 tokens: TokenSource | None = None) -> None:
        self.settings = settings
        self.tokens = tokens
        """OAuth2 access tokens for the login; None: the password."""
        self.fallback = fallback
        """The folder used when the server marks none \\Sent: the first of sent_folders."""
        self.folder: str | None = None
        """The folder found on the current connection; None while not connected."""
        self._client: Any = None

    def append(self, body: bytes, *, when: datetime) -> str:
        """Append `body` exactly as sent, dated `when`, flagged \\Seen; return the folder.

        Raises `CopyError`: "missing_folder" (the server has no such folder),
        "refused" (the server said no to this message), "unavailable" (no connection,
        refused login, timeout)."""
        try:
            client = self._client if self._client is not None else self._open()
            folder = self.folder or self._find(client)
            client.append(folder, body, flags=(SEEN,), msg_time=when)
            return folder
        except IMAPClientError as exc:
            self.close()
            throttled = throttling(exc)
            raise CopyError(_reason(exc), f"IMAP APPEND to the Sent folder: {exc}",
                            retry_after=throttled.suggested if throttled else None) from exc
        except (OSError, ssl.SSLError) as exc:
            self.close()
            raise CopyError("unavailable", f"IMAP connection for the Sent folder: "
                                           f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        client, self._client, self.folder = self._client, None, None
        if client is not None:
            with contextlib.suppress(IMAPClientError, OSError):
                client.logout()

    def _open(self) -> Any:
        client = open_client(self.settings)
        self._client = client
        log_in(client, self.settings, self.tokens)
        return client

    def _find(self, client: Any) -> str:
        """The folder the server marks \\Sent, else the configured one."""
        marked = marked_sent(list_folders(client))
        self.folder = marked[0] if marked else self.fallback
        log.debug("sent_copy %s", fields(event="folder", folder=self.folder,
                                         special_use=bool(marked)))
        return self.folder
