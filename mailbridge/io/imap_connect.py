"""Opening an IMAP connection to the support mailbox's server, as the settings say.

Public API: `open_client(settings, factory)`, `log_in(client, settings)`.

The watcher and the Sent-folder appender each hold a connection of their own; both open it
here, so TLS (verified unless the operator opts out), timeouts and login are the same. It
is two steps so that a caller can keep the client before the slow part (STARTTLS, login),
to shut its socket down from another thread.
"""

from __future__ import annotations

from typing import Any

from imapclient import IMAPClient, SocketTimeout

from mailbridge.config import ImapSettings
from mailbridge.io.tls import client_context


def open_client(settings: ImapSettings, factory: type[IMAPClient] = IMAPClient) -> Any:
    """A connected, not yet logged-in client (`factory`: IMAPClient or a subclass)."""
    s = settings
    context = client_context(verify=s.verify_tls, ca_file=s.ca_file)
    return factory(s.host, port=s.port, ssl=s.tls == "implicit", ssl_context=context,
                   timeout=SocketTimeout(connect=s.connect_timeout, read=s.read_timeout))


def log_in(client: Any, settings: ImapSettings) -> None:
    """STARTTLS when configured, then log in; datetimes come back as the server sent them."""
    s = settings
    if s.tls == "starttls":
        client.starttls(client_context(verify=s.verify_tls, ca_file=s.ca_file))
    client.login(s.username, s.password.reveal())
    client.normalise_times = False
