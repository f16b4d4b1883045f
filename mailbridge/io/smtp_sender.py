"""The SMTP transport: hand one message at a time to the next hop, over a kept connection.

Public API: `Transport` (protocol), `SmtpTransport`, built on the settings of one SMTP server
(`SmtpPeerSettings`: [smtp], or [relay]'s upstream). The outbox sender loop that drives it
lives in `mailbridge.daemon.sender`.

With `auth = "oauth2"` the transport logs in by SASL XOAUTH2, or OAUTHBEARER (RFC 7628) when
the server offers that and not XOAUTH2, with a token of the shared `TokenSource`
(`mailbridge.io.oauth2`). A refused token's error challenge (334 with base64 JSON) is
answered with an empty line (XOAUTH2) or \x01 (OAUTHBEARER); the source hears of the
refusal, and the login is tried once more at once, on a new connection, with a fresh token.

smtplib blocks, so each send runs in a worker thread; one SMTP connection is kept
open across sends and rebuilt after any failure. Where the server offers PIPELINING
(RFC 2920), MAIL, RCPT and DATA go out in one write: two round trips per message, not
four. A kept connection the server has closed meanwhile (as servers do with idle ones) is
noticed before the message could have been accepted and replaced at once. SMTP errors
become `TransientError` (4xx, connection trouble: retried with backoff),
`PermanentError` (5xx: recorded on the item, never retried) or `DeliveryUnknownError` (no
verdict after the end of the message: the server may have it; never sent again).
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from base64 import b64encode
from typing import Protocol

from mailbridge.clock import Clock, SystemClock
from mailbridge.config import SmtpPeerSettings
from mailbridge.errors import DeliveryUnknownError, PermanentError, TransientError
from mailbridge.io.oauth2 import TokenSource
from mailbridge.io.tls import client_context
from mailbridge.logs import fields

log = logging.getLogger(__name__)

PROBE_AFTER = 5.0
"""Seconds unused after which the kept connection is checked with NOOP before a send."""
PROBE_TIMEOUT = 5.0
"""A live server answers NOOP at once; one silent this long is treated as gone (a firewall
that forgot the connection drops packets instead of refusing them)."""


class Transport(Protocol):
    def send(self, envelope_from: str, recipient: str, data: bytes) -> None:
        """Hand one message to the next hop; raise TransientError or PermanentError
        (`DeliveryUnknownError` when the server may have accepted it all the same)."""
        ...

    def close(self) -> None: ...


def _classify(code: int, text: str) -> TransientError | PermanentError:
    message = f"SMTP {code} {text}".strip()
    return PermanentError(message) if 500 <= code < 600 else TransientError(message)


def _ascii_domain(address: str) -> str:
    local, _, domain = address.rpartition("@")
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}" if local else address
    except UnicodeError:
        return address


def _reply_text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


_LEADING_DOT = re.compile(rb"(?m)^\.")


def _envelope(conn: smtplib.SMTP, envelope_from: str, recipient: str, size: int,
              options: list[str]) -> None:
    """MAIL, RCPT and DATA up to the server's 354: in one write where the server offers
    PIPELINING (RFC 2920), else one by one. A refusal raises as `SMTP.sendmail` would; a
    421 (the server is closing the connection) as a disconnect. Nothing here can deliver
    the message: its content has not been sent."""
    if conn.has_extn("size"):
        options = [f"SIZE={size}", *options]
    if "SMTPUTF8" in options:
        if not conn.has_extn("smtputf8"):
            raise smtplib.SMTPNotSupportedError("SMTPUTF8 not supported by server")
        conn.command_encoding = "utf-8"
    extra = "".join(f" {option}" for option in options)
    commands = [f"MAIL FROM:{smtplib.quoteaddr(envelope_from)}{extra}",
                f"RCPT TO:{smtplib.quoteaddr(recipient)}", "DATA"]
    replies: list[tuple[int, bytes]] = []
    if conn.has_extn("pipelining"):
        conn.send("".join(f"{command}\r\n" for command in commands))
        replies = [conn.getreply() for _ in commands]
    else:
        for command in commands:
            conn.putcmd(command)
            replies.append(conn.getreply())
            if replies[-1][0] not in (250, 251, 354):
                break
    closing = [text for code, text in replies if code == 421]
    if closing:  # RFC 5321 3.8: Postfix says so before it drops an idle connection
        conn.close()
        raise smtplib.SMTPServerDisconnected(f"421 {_reply_text(closing[0])}")
    (mail, mail_text), *rest = replies
    if len(rest) == 2 and rest[1][0] == 354 and (mail != 250 or rest[0][0] not in (250, 251)):
        conn.close()  # the server waits for content we will not send: abort by hanging up
    if mail != 250:
        raise smtplib.SMTPSenderRefused(mail, mail_text, envelope_from)
    rcpt, rcpt_text = rest[0]
    if rcpt not in (250, 251):
        raise smtplib.SMTPRecipientsRefused({recipient: (rcpt, rcpt_text)})
    data_code, data_text = rest[1]
    if data_code != 354:
        raise smtplib.SMTPDataError(data_code, data_text)


def _content(conn: smtplib.SMTP, data: bytes) -> None:
    """Send the message, dot-stuffed and ended by a lone dot, and read the verdict.

    Once the dot is out the server may have accepted the message even if no reply comes:
    a timeout, a hang-up or an unreadable reply raise `DeliveryUnknownError`, never an
    error that would send it again. Failing to send the content is safe to retry: without
    its last line the server cannot have taken it."""
    # Scanning for a line that starts with a dot is much cheaper than substituting none.
    stuffed = _LEADING_DOT.sub(b"..", data) \
        if data.startswith(b".") or b"\n." in data else data
    conn.send(stuffed + (b".\r\n" if stuffed.endswith(b"\r\n") else b"\r\n.\r\n"))
    try:
        code, text = conn.getreply()
    except smtplib.SMTPServerDisconnected as exc:
        raise DeliveryUnknownError(
            f"no reply after the end of the message ({exc}); the server may have accepted "
            "it, so it is not sent again") from exc
    if 200 <= code < 300:
        return
    if 400 <= code < 600:
        raise smtplib.SMTPDataError(code, text)
    raise DeliveryUnknownError(f"unreadable reply after the end of the message ({code} "
                               f"{_reply_text(text)}); not sent again")


def _oauth2_login(conn: smtplib.SMTP, username: str, token: str, *, host: str,
                  port: int) -> None:
    """AUTH XOAUTH2, or OAUTHBEARER (RFC 7628) when the server offers only that; a refusal
    (after its error challenge is answered) raises `SMTPAuthenticationError`."""
    conn.ehlo_or_helo_if_needed()
    offered = str(conn.esmtp_features.get("auth", "")).upper().split()
    if "OAUTHBEARER" in offered and "XOAUTH2" not in offered:
        mechanism, dummy = "OAUTHBEARER", "\x01"
        initial = f"n,a={username},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"
    else:
        mechanism, dummy = "XOAUTH2", ""
        initial = f"user={username}\x01auth=Bearer {token}\x01\x01"
    # smtplib.SMTP.auth would log nothing, but answers a challenge by calling back; the
    # only challenge after our initial response is the error's JSON, answered with `dummy`.
    code, text = conn.docmd("AUTH", f"{mechanism} {b64encode(initial.encode()).decode()}")
    if code == 334:
        code, text = conn.docmd(b64encode(dummy.encode()).decode())
    if code not in (235, 503):
        raise smtplib.SMTPAuthenticationError(code, text)


def _answers(conn: smtplib.SMTP, timeout: float) -> bool:
    """Whether the server still answers a NOOP on `conn` within `timeout` seconds."""
    try:
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        code, _text = conn.noop()
    except (smtplib.SMTPException, OSError):
        return False
    finally:
        if conn.sock is not None:
            conn.sock.settimeout(conn.timeout)
    return code == 250


class SmtpTransport:
    """Sends over one kept-open SMTP connection to `settings`' server, greeting it (EHLO) as
    `local_hostname`.

    Servers close connections that stay idle (Postfix after 300 s) and firewalls forget
    them, so a connection unused for `probe_after` seconds (on `clock`) is checked with
    NOOP before the next send. One that still turns out to be closed before the server
    accepted MAIL, RCPT and DATA is replaced at once, once: nothing can have been
    delivered, and the first mail after a quiet hour goes out without a retry."""

    def __init__(self, settings: SmtpPeerSettings, *, local_hostname: str,
                 clock: Clock | None = None, probe_after: float = PROBE_AFTER,
                 tokens: TokenSource | None = None) -> None:
        if settings.auth == "oauth2" and tokens is None:
            raise ValueError('auth = "oauth2" needs a TokenSource')
        self.settings = settings
        self.tokens = tokens
        self.local_hostname = local_hostname
        self.clock = clock or SystemClock()
        self.probe_after = probe_after
        self._conn: smtplib.SMTP | None = None
        self._used_at = 0.0

    def _connect(self) -> smtplib.SMTP:
        if self.tokens is None or self.settings.auth != "oauth2":
            return self._open(None)
        token = self.tokens.access_token()
        try:
            return self._open(token)
        except smtplib.SMTPAuthenticationError as exc:
            log.info("smtp %s", fields(event="token_refused", code=exc.smtp_code))
            self.tokens.refused(token)
        return self._open(self.tokens.access_token())  # once more, with a fresh token

    def _open(self, token: str | None) -> smtplib.SMTP:
        """A connection, logged in with the password, or with `token` (OAuth2)."""
        s = self.settings
        timeout = s.timeout
        # A context only for TLS: loading the system's CA certificates costs tens of ms CPU.
        conn: smtplib.SMTP
        if s.tls == "implicit":
            conn = smtplib.SMTP_SSL(s.host, s.port, local_hostname=self.local_hostname,
                                    timeout=timeout, context=self._context())
        else:
            conn = smtplib.SMTP(s.host, s.port, local_hostname=self.local_hostname,
                                timeout=timeout)
            if s.tls == "starttls":
                conn.starttls(context=self._context())
        try:
            if token is not None and s.username:
                _oauth2_login(conn, s.username, token, host=s.host, port=s.port)
            elif s.username and s.password is not None:
                conn.login(s.username, s.password.reveal())
            conn.ehlo_or_helo_if_needed()
        except BaseException:
            conn.close()
            raise
        return conn

    def _context(self) -> ssl.SSLContext:
        return client_context(verify=self.settings.verify_tls, ca_file=self.settings.ca_file)

    def _ready(self) -> tuple[smtplib.SMTP, bool]:
        """A connection to send on, and whether it is the kept one (opened before)."""
        conn = self._conn
        idle = self.clock.monotonic() - self._used_at
        if conn is not None and idle > self.probe_after and \
                not _answers(conn, min(PROBE_TIMEOUT, self.settings.timeout)):
            log.info("smtp %s", fields(event="reconnect", reason="idle_connection_gone",
                                       idle_s=round(idle)))
            self._drop()
            conn = None
        if conn is not None:
            return conn, True
        self._conn = self._connect()
        return self._conn, False

    def send(self, envelope_from: str, recipient: str, data: bytes) -> None:
        # A non-ASCII local part needs SMTPUTF8 (RFC 6531); an IDN domain with an
        # ASCII local part goes out as punycode.
        recipient = _ascii_domain(recipient)
        options = [] if recipient.isascii() and envelope_from.isascii() else ["SMTPUTF8"]
        try:
            self._transaction(envelope_from, recipient, data, options)
        except DeliveryUnknownError:
            self._drop()
            raise
        except smtplib.SMTPNotSupportedError as exc:
            self.close()
            raise PermanentError(f"the SMTP server cannot deliver to this address: {exc}") \
                from exc
        except smtplib.SMTPRecipientsRefused as exc:
            self.close()
            code, text = next(iter(exc.recipients.values()))
            raise _classify(code, _reply_text(text)) from exc
        except smtplib.SMTPAuthenticationError as exc:
            self.close()
            if self.settings.auth == "oauth2":
                raise TransientError(f"SMTP OAuth2 login refused twice: {exc.smtp_code}") \
                    from exc
            # A wrong password is the operator's to fix; keep the ack and retry.
            raise TransientError(f"SMTP login refused: {exc.smtp_code}") from exc
        except smtplib.SMTPResponseException as exc:
            self.close()
            raise _classify(exc.smtp_code, _reply_text(exc.smtp_error)) from exc
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            self.close()
            raise TransientError(f"SMTP connection failed: {exc}") from exc

    def _transaction(self, envelope_from: str, recipient: str, data: bytes,
                     options: list[str]) -> None:
        for last in (False, True):
            conn, kept = self._ready()
            try:
                _envelope(conn, envelope_from, recipient, len(data), options)
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                if last or not kept:
                    raise
                # The kept connection went before MAIL, RCPT and DATA were accepted:
                # nothing was delivered, so a new connection may carry the message now.
                log.info("smtp %s", fields(event="reconnect", reason="closed_by_server",
                                           error=str(exc)))
                self._drop()
                continue
            _content(conn, data)
            self._used_at = self.clock.monotonic()
            return

    def _drop(self) -> None:
        """Forget a connection that is gone, without the courtesy of QUIT."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                conn.close()
