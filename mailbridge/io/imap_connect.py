"""Opening an IMAP connection to the support mailbox's server, as the settings say.

Public API: `open_client(settings, factory)`, `log_in(client, settings, tokens=None)`,
`TokenSource`, `ThrottledError`, `throttling(exc)`, `Throttle`, `THROTTLE_CAP`,
`server_text(exc)`.

The watcher and the Sent-folder appender each hold a connection of their own; both open it
here, so TLS (verified unless the operator opts out), timeouts and login are the same. It
is two steps so that a caller can keep the client before the slow part (STARTTLS, login),
to shut its socket down from another thread.

With a `TokenSource` the login is SASL XOAUTH2, or OAUTHBEARER (RFC 7628) when the server
offers only that. A server refuses a token with a continuation carrying base64 JSON, which
we answer with an empty line (XOAUTH2) or ``\\x01`` (OAUTHBEARER), never with the token
again, and then a NO: the token source hears of it and the login is tried once more at
once with a fresh token; a second refusal is a `LoginError`, and so is a token source that
has none to give (a revoked grant), so that both connections back off as after any refused
login. The AUTHENTICATE payload never reaches a log: imaplib logs only the size of what it
answers a continuation with, and imapclient redacts the command line.

A server that throttles us (Microsoft 365: ``NO [THROTTLED] Request is throttled. Suggested
Backoff Time: 52000 milliseconds``, at login or at any command) is neither a refused login
nor a refused token: `log_in` raises `ThrottledError`, and `throttling(exc)` recognises the
answer on any command, with the wait the server suggests, so that the callers back off
(`imap_watcher`) instead of reconnecting at once and the token source is not asked for a
new token it does not need.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any, Protocol

from imapclient import IMAPClient, SocketTimeout
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from mailbridge.config import ImapSettings
from mailbridge.errors import TransientError
from mailbridge.io.backoff import Backoff
from mailbridge.io.tls import client_context
from mailbridge.logs import fields

log = logging.getLogger(__name__)

THROTTLE_CAP = 900.0
"""Seconds: the longest wait after a server throttled us, its own suggestion included."""
THROTTLE_QUIET = 600.0
"""Seconds after the last throttling before a session that catches up resets its backoff."""
_THROTTLED = re.compile(r"\[THROTTLED\]|\bthrottled\b", re.IGNORECASE)
_SUGGESTED = re.compile(r"suggested\s+backoff\s+time:?\s*(\d+)\s*(milliseconds|ms)?",
                        re.IGNORECASE)


class ThrottledError(IMAPClientError):  # type: ignore[misc]  # imapclient ships no hints
    """The server asks us to slow down; `suggested` is the wait it names, in seconds."""

    def __init__(self, message: str, suggested: float | None = None) -> None:
        super().__init__(message)
        self.suggested = suggested


class Throttle:
    """How long to wait after a server throttled us: a backoff of its own (from half a
    minute), never shorter than the server's suggestion, capped at `THROTTLE_CAP`; a
    session that catches up resets it only `THROTTLE_QUIET` after the last throttling."""

    def __init__(self, backoff: Backoff | None = None) -> None:
        self.backoff = backoff or Backoff(initial=30.0, cap=THROTTLE_CAP)
        self._last: float | None = None

    def wait(self, suggested: float | None, *, at_least: float) -> float:
        """The seconds to wait now (`at_least`: the ordinary reconnect backoff)."""
        self._last = time.monotonic()
        return max(at_least, self.backoff.next_delay(), min(suggested or 0.0, THROTTLE_CAP))

    def caught_up(self) -> None:
        if self._last is None or time.monotonic() - self._last > THROTTLE_QUIET:
            self.backoff.reset()


def server_text(exc: BaseException) -> str:
    """What the server said, as text (imapclient gives a LoginError the bytes' repr)."""
    text = str(exc)
    return text[2:-1] if text[:2] in ("b'", 'b"') and text[-1:] == text[1] else text


def throttling(exc: BaseException) -> ThrottledError | None:
    """`exc` as a `ThrottledError` when it is the server's throttling answer, else None."""
    if isinstance(exc, ThrottledError):
        return exc
    if not isinstance(exc, IMAPClientError):
        return None
    text = str(exc)
    if not _THROTTLED.search(text):
        return None
    found = _SUGGESTED.search(text)
    return ThrottledError(server_text(exc)[:300], int(found.group(1)) / 1000 if found else None)


class TokenSource(Protocol):
    """Where OAuth2 access tokens come from (`mailbridge.io.oauth2`); called from IMAP
    threads."""

    def access_token(self) -> str:
        """A valid access token, refreshed when needed."""

    def refused(self, token: str) -> None:
        """A server refused `token`: the next `access_token()` refreshes."""


def open_client(settings: ImapSettings, factory: type[IMAPClient] = IMAPClient) -> Any:
    """A connected, not yet logged-in client (`factory`: IMAPClient or a subclass)."""
    s = settings
    # A context only for TLS: loading the system's CA certificates costs tens of ms CPU.
    implicit = s.tls == "implicit"
    context = client_context(verify=s.verify_tls, ca_file=s.ca_file) if implicit else None
    return factory(s.host, port=s.port, ssl=implicit, ssl_context=context,
                   timeout=SocketTimeout(connect=s.connect_timeout, read=s.read_timeout))


def log_in(client: Any, settings: ImapSettings, tokens: TokenSource | None = None) -> None:
    """STARTTLS when configured, then log in (with a token when `tokens` is given, else
    with the password); datetimes come back as the server sent them."""
    s = settings
    if s.tls == "starttls":
        client.starttls(client_context(verify=s.verify_tls, ca_file=s.ca_file))
    try:
        if tokens is None:
            client.login(s.username, s.password.reveal())
        else:
            oauth2_log_in(client, s.username, tokens)
    except IMAPClientAbortError:
        raise
    except IMAPClientError as exc:
        throttled = throttling(exc)
        if throttled is None:
            raise
        raise throttled from exc
    client.normalise_times = False


def mechanism(client: Any) -> str:
    """XOAUTH2, or OAUTHBEARER when the server offers that and not XOAUTH2."""
    if not client.has_capability("AUTH=XOAUTH2") and client.has_capability("AUTH=OAUTHBEARER"):
        return "OAUTHBEARER"
    return "XOAUTH2"


def oauth2_log_in(client: Any, username: str, tokens: TokenSource) -> None:
    """Authenticate with an access token; after a refusal, once more with a fresh one.

    Raises `LoginError` when the second token is refused too, or when the source has no
    token to give (its `TransientError`, such as a revoked grant, is the cause)."""
    mech = mechanism(client)
    for attempt in (1, 2):
        try:
            token = tokens.access_token()
        except TransientError as exc:
            raise LoginError(f"no OAuth2 access token for {mech}: {exc}") from exc
        try:
            _authenticate(client, mech, username, token)
        except LoginError as exc:
            if throttling(exc) is not None:
                raise  # busy, not a refusal of the token: `log_in` says so
            tokens.refused(token)
            log.warning("imap %s", fields(event="token_refused", mechanism=mech,
                                          attempt=attempt, detail=str(exc)[:200]))
            if attempt == 2:
                raise LoginError(f"{mech} login refused twice, with a fresh token the "
                                 f"second time: {exc}") from exc
        else:
            log.debug("imap %s", fields(event="logged_in", mechanism=mech))
            return


def _initial_response(mech: str, username: str, token: str) -> bytes:
    if mech == "OAUTHBEARER":  # RFC 7628 3.1, with the RFC 5801 GS2 header
        name = username.replace("=", "=3D").replace(",", "=2C")
        return f"n,a={name},\x01auth=Bearer {token}\x01\x01".encode()
    return f"user={username}\x01auth=Bearer {token}\x01\x01".encode()


def _authenticate(client: Any, mech: str, username: str, token: str) -> None:
    """One AUTHENTICATE exchange; raises `LoginError` when the server says NO. A lost
    connection stays `IMAPClientAbortError`: no refusal of the token."""
    sent: list[bool] = []

    def respond(challenge: bytes) -> bytes:
        if not sent:
            sent.append(True)
            return _initial_response(mech, username, token)
        # A second continuation is the server's error, as JSON (RFC 7628 3.2.2): answer
        # it with the dummy response the mechanism wants and read the NO that follows.
        log.debug("imap %s", fields(event="token_challenge", mechanism=mech,
                                    status=_status(challenge)))
        return b"\x01" if mech == "OAUTHBEARER" else b""

    try:
        # imapclient's oauth2_login, but with our answer to the error challenge.
        client._command_and_check("authenticate", mech, respond)
    except IMAPClientAbortError:
        raise
    except IMAPClientError as exc:
        raise LoginError(str(exc)) from exc


def _status(challenge: bytes) -> str:
    """The status the server's error challenge (base64-decoded by imaplib) names, bounded;
    "" when it is not JSON."""
    try:
        data = json.loads(challenge)
    except (ValueError, UnicodeDecodeError):
        return ""
    return str(data.get("status", ""))[:40] if isinstance(data, dict) else ""
