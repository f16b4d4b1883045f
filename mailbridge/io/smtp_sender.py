"""The SMTP transport: hand one message at a time to the next hop, over a kept connection.

Public API: `Transport` (protocol), `SmtpTransport`, built on the settings of one SMTP server
(`SmtpPeerSettings`: [smtp], or [relay]'s upstream). The outbox sender loop that drives it
lives in `mailbridge.daemon.sender`.

smtplib blocks, so each send runs in a worker thread; one SMTP connection is kept
open across sends and rebuilt after any failure. Where the server offers PIPELINING
(RFC 2920), MAIL, RCPT and DATA go out in one write: two round trips per message, not
four. SMTP errors become
`TransientError` (4xx, connection trouble: retried with backoff) or
`PermanentError` (5xx: recorded on the item, never retried).
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from typing import Protocol

from mailbridge.config import SmtpPeerSettings
from mailbridge.errors import PermanentError, TransientError
from mailbridge.io.tls import client_context

log = logging.getLogger(__name__)

class Transport(Protocol):
    def send(self, envelope_from: str, recipient: str, data: bytes) -> None:
        """Hand one message to the next hop; raise TransientError or PermanentError."""
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


def _content(data: bytes) -> bytes:
    """The DATA payload on the wire: dot-stuffed, ended by a line with a lone dot."""
    stuffed = _LEADING_DOT.sub(b"..", data)
    return stuffed + (b".\r\n" if stuffed.endswith(b"\r\n") else b"\r\n.\r\n")


_LEADING_DOT = re.compile(rb"(?m)^\.")


def _sendmail_pipelined(conn: smtplib.SMTP, envelope_from: str, recipient: str, data: bytes,
                        options: list[str]) -> None:
    """`SMTP.sendmail` for one recipient, with the envelope pipelined (RFC 2920): the
    replies come back in order and fail it as sendmail's exceptions would."""
    if conn.has_extn("size"):
        options = [f"SIZE={len(data)}", *options]
    if "SMTPUTF8" in options:
        if not conn.has_extn("smtputf8"):
            raise smtplib.SMTPNotSupportedError("SMTPUTF8 not supported by server")
        conn.command_encoding = "utf-8"
    extra = "".join(f" {option}" for option in options)
    conn.send(f"MAIL FROM:{smtplib.quoteaddr(envelope_from)}{extra}\r\n"
              f"RCPT TO:{smtplib.quoteaddr(recipient)}\r\nDATA\r\n")
    (mail, mail_text), (rcpt, rcpt_text), (data_code, data_text) = (
        conn.getreply(), conn.getreply(), conn.getreply())
    if data_code == 354 and (mail != 250 or rcpt not in (250, 251)):
        conn.close()  # the server waits for content we will not send: abort by hanging up
    if mail != 250:
        raise smtplib.SMTPSenderRefused(mail, mail_text, envelope_from)
    if rcpt not in (250, 251):
        raise smtplib.SMTPRecipientsRefused({recipient: (rcpt, rcpt_text)})
    if data_code != 354:
        raise smtplib.SMTPDataError(data_code, data_text)
    conn.send(_content(data))
    code, text = conn.getreply()
    if code != 250:
        raise smtplib.SMTPDataError(code, text)


class SmtpTransport:
    """Sends over one kept-open SMTP connection to `settings`' server, greeting it (EHLO) as
    `local_hostname`."""

    def __init__(self, settings: SmtpPeerSettings, *, local_hostname: str) -> None:
        self.settings = settings
        self.local_hostname = local_hostname
        self._conn: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        timeout = s.timeout
        context = client_context(verify=s.verify_tls, ca_file=s.ca_file)
        conn: smtplib.SMTP
        if s.tls == "implicit":
            conn = smtplib.SMTP_SSL(s.host, s.port, local_hostname=self.local_hostname,
                                    timeout=timeout, context=context)
        else:
            conn = smtplib.SMTP(s.host, s.port, local_hostname=self.local_hostname,
                                timeout=timeout)
            if s.tls == "starttls":
                conn.starttls(context=context)
        if s.username and s.password is not None:
            conn.login(s.username, s.password.reveal())
        return conn

    def send(self, envelope_from: str, recipient: str, data: bytes) -> None:
        try:
            if self._conn is None:
                self._conn = self._connect()
            # A non-ASCII local part needs SMTPUTF8 (RFC 6531); an IDN domain with an
            # ASCII local part goes out as punycode.
            recipient = _ascii_domain(recipient)
            options = [] if recipient.isascii() and envelope_from.isascii() else ["SMTPUTF8"]
            conn = self._conn
            conn.ehlo_or_helo_if_needed()
            if conn.has_extn("pipelining"):
                _sendmail_pipelined(conn, envelope_from, recipient, data, options)
                return
            refused = conn.sendmail(envelope_from, [recipient], data, mail_options=options)
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
            # A wrong password is the operator's to fix; keep the ack and retry.
            raise TransientError(f"SMTP login refused: {exc.smtp_code}") from exc
        except smtplib.SMTPResponseException as exc:
            self.close()
            raise _classify(exc.smtp_code, _reply_text(exc.smtp_error)) from exc
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            self.close()
            raise TransientError(f"SMTP connection failed: {exc}") from exc
        if refused:
            code, text = next(iter(refused.values()))
            raise _classify(code, _reply_text(text))

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.quit()
            except (smtplib.SMTPException, OSError):
                conn.close()
