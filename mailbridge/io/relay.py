"""The agents' SMTP submission relay: aiosmtpd, served on the daemon's own event loop.

Public API: `Credentials` (who may log in), `Submission`, `Submitted`, `RelayHandler` (the
aiosmtpd hooks), `RelayServer` (`start`, `serve`, `reload`, `close`, `port`),
`upstream_transport(settings)`
(the outbox's transport for relayed mail), and the fixed replies `REPLY_*`.

Agents log in with AUTH PLAIN or LOGIN, offered only once the connection is encrypted
(STARTTLS, or implicit TLS), with their agent address as the user name. Only a logged-in
agent may send, and only with their own address or the support address as the envelope
sender and in From: it is never an open relay. Failed logins are counted per client address
(`mailbridge.core.throttle`): answered ever more slowly, then refused for a while.

Password checks (scrypt, 32 MiB each) run in the relay's own pool of `LOGIN_CHECKS` threads:
a burst of logins waits its turn there instead of filling the default thread pool that the
sender, scheduler and heartbeat share (`RelayServer.close` lets them end through
`RelayHandler.close`). `handle_DATA` hands the message to `submit` (in a worker thread:
parsing and SQL never run on the event loop), which records it as the agent's response and
queues it in the outbox in one transaction; the client gets 250 only after that commit, and
451 if it failed, so its mail client keeps the message and tries again. A message refused
for problems the agent can mend (a wrong command, a From that is not theirs) gets a 5xx at
the end of DATA listing them, one short line each (`mailbridge.io.smtp_replies`): the client
keeps the draft and shows why, and nothing of it was recorded or sent. Replies are fixed
sentences; details go to the log, addresses only at debug level and passwords never.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import errno
import hmac
import logging
import socket
import ssl
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session

from mailbridge.clock import Clock
from mailbridge.config import Config, RelaySettings, Secret
from mailbridge.config.passwords import DEFAULT_N, ScryptHash, parse_hash, verify_password
from mailbridge.core.model import Agent
from mailbridge.core.throttle import LoginThrottle
from mailbridge.errors import MailbridgeError, PermanentError
from mailbridge.io.oauth2 import TokenSource
from mailbridge.io.smtp_replies import refusal
from mailbridge.io.smtp_sender import SmtpTransport
from mailbridge.logs import fields

log = logging.getLogger(__name__)

# aiosmtpd 1.4.6 sets the deprecated Session.login_data itself after every login.
warnings.filterwarnings("ignore", message=".*login_data is deprecated.*",
                        category=DeprecationWarning)

MAX_MESSAGE = 25 * 1024 * 1024
MAX_RECIPIENTS = 100
REPLY_SENDER_OK = "250 2.1.0 Sender OK"
REPLY_RECIPIENT_OK = "250 2.1.5 Recipient OK"
REPLY_QUEUED = "250 2.0.0 Accepted: recorded and queued for delivery"
REPLY_KEPT = "250 2.0.0 Accepted: recorded, not sent on (see the reply from the support desk)"
REPLY_APPLIED = "250 2.0.0 Commands applied, nothing to send"
REPLY_NOTED = "250 2.0.0 Noted on the thread and commands applied, nothing to send"
REPLY_DUPLICATE = "250 2.0.0 Accepted: this message was received before"
REPLY_SENDER_REFUSED = ("553 5.7.1 Sender address not allowed: send from your own address "
                        "or the support address")
REPLY_FROM_REFUSED = ("550 5.7.1 The From header must be your own address or the support "
                      "address")
REPLY_COMMANDS_REFUSED = ("554 5.6.0 Not sent, nothing recorded: the commands at the top "
                          "have problems")
REPLY_UNREADABLE = "554 5.6.0 The message could not be read; it was not accepted"
REPLY_TOO_MANY = f"452 4.5.3 Too many recipients (at most {MAX_RECIPIENTS})"
REPLY_STORE_FAILED = "451 4.3.0 The message could not be stored; please try again later"
REPLY_LOCKED = "454 4.7.0 Too many failed logins from your address; try again later"
REPLY_ERROR = "451 4.3.0 Internal error; please try again later"
LOGIN_CHECKS = 2
"""Password checks running at once, each about 0.1 s of CPU and 32 MiB (scrypt)."""


# -- who may log in ----------------------------------------------------------------------------

_NO_SUCH_USER = ScryptHash(DEFAULT_N, 8, 1, b"\0" * 16, b"\0" * 32)
"""Checked for an unknown user name, so that it takes as long as a wrong password."""


class Credentials:
    """Each agent's relay login: a password hash, or a password read from a file."""

    def __init__(self, entries: Mapping[str, tuple[Agent, ScryptHash | Secret]]) -> None:
        self._entries = {login.lower(): entry for login, entry in entries.items()}

    @classmethod
    def from_config(cls, config: Config) -> Credentials:
        entries: dict[str, tuple[Agent, ScryptHash | Secret]] = {}
        for settings in config.agents:
            agent = Agent(settings.name, settings.email)
            if settings.password_hash is not None:
                entries[settings.email] = (agent, parse_hash(settings.password_hash))
            elif settings.password_file is not None:
                entries[settings.email] = (agent, settings.password_file.secret)
        return cls(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, login: bytes, password: bytes) -> Agent | None:
        """The agent these credentials belong to, or None. Slow (scrypt): not on the loop."""
        try:
            user, secret = login.decode("utf-8"), password.decode("utf-8")
        except UnicodeDecodeError:
            return None
        agent, stored = self._entries.get(user.strip().lower(), (None, _NO_SUCH_USER))
        if isinstance(stored, Secret):
            ok = hmac.compare_digest(secret.encode(), stored.reveal().encode())
        else:
            ok = verify_password(secret, stored)
        return agent if ok and agent is not None else None


# -- the SMTP hooks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    """One message an agent handed to the relay, at the moment it was accepted."""

    agent: Agent
    envelope_from: str
    recipients: tuple[str, ...]
    data: bytes
    accepted_at: datetime
    peer: str


@dataclass(frozen=True)
class Submitted:
    """What `submit` did with a submission: queued upstream; commands applied with nothing to
    send; a reply to a staff notice, noted on its thread; recorded but kept back (an
    automatic reply); a repeat of one received before; or refused with `problems`, nothing
    recorded: From is neither the agent's address nor the support address, or a command is
    wrong."""

    result: Literal["queued", "applied", "noted", "kept", "duplicate", "from_refused",
                    "refused"]
    problems: tuple[str, ...] = ()


Submit = Callable[[Submission], Submitted]
ReadLogin = Callable[[], Awaitable[tuple[bytes, bytes] | None]]


def _peer(session: Session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None


class RelayHandler:
    """aiosmtpd hooks: logins, envelope checks and handing the message to `submit`."""

    def __init__(self, *, credentials: Credentials, support_addresses: frozenset[str],
                 submit: Submit, clock: Clock, throttle: LoginThrottle | None = None) -> None:
        self.credentials = credentials
        self.support_addresses = frozenset(a.lower() for a in support_addresses)
        self.submit = submit
        self.clock = clock
        self.throttle = throttle or LoginThrottle()
        self._checks: ThreadPoolExecutor | None = None

    # aiosmtpd looks up auth_<MECHANISM> on the handler too; ours replace its built-ins so
    # that the password check (scrypt) runs in a thread and failures are throttled.

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        async def read() -> tuple[bytes, bytes] | None:
            blob: object = None
            if len(args) == 1:
                blob = await server.challenge_auth("")
                if blob is MISSING:
                    return None
            else:
                blob = _b64(args[1])
                if blob is None:
                    await server.push("501 5.5.2 Cannot decode base64")
                    return None
            assert isinstance(blob, bytes)
            parts = blob.split(b"\0")
            if len(parts) != 3 or parts[0] not in (b"", parts[1]):
                await server.push("501 5.5.2 Cannot split the PLAIN credentials")
                return None
            return parts[1], parts[2]

        return await self._login(server, "PLAIN", read)

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        async def read() -> tuple[bytes, bytes] | None:
            login: object = None
            if len(args) == 1:
                login = await server.challenge_auth(SMTP.AuthLoginUsernameChallenge)
                if login is MISSING:
                    return None
            else:
                login = _b64(args[1])
                if login is None:
                    await server.push("501 5.5.2 Cannot decode base64")
                    return None
            password = await server.challenge_auth(SMTP.AuthLoginPasswordChallenge)
            if password is MISSING:
                return None
            assert isinstance(login, bytes) and isinstance(password, bytes)
            return login, password

        return await self._login(server, "LOGIN", read)

    async def _login(self, server: SMTP, mechanism: str, read: ReadLogin) -> AuthResult:
        assert server.session is not None
        peer = _peer(server.session)
        admission = self.throttle.admit(peer, self.clock.monotonic())
        if not admission.allowed:
            log.warning("relay %s", fields(event="login_locked", peer=peer,
                                           retry_after_s=round(admission.retry_after)))
            return AuthResult(success=False, handled=False, message=REPLY_LOCKED)
        given = await read()
        if given is None:
            return AuthResult(success=False, handled=True)
        login, password = given
        agent = await self._check(login, password)
        if agent is None:
            delay = self.throttle.failed(peer, self.clock.monotonic())
            log.warning("relay %s", fields(
                event="login_failed", peer=peer, mechanism=mechanism,
                failures=self.throttle.failures(peer, self.clock.monotonic()),
                delay_s=delay or None))
            log.debug("relay %s", fields(event="login_failed", user=login.decode("utf-8",
                                                                               "replace")))
            if delay:
                await asyncio.sleep(delay)
            return AuthResult(success=False, handled=False)
        self.throttle.succeeded(peer)
        log.info("relay %s", fields(event="login", peer=peer, mechanism=mechanism))
        log.debug("relay %s", fields(event="login", agent=agent.email))
        return AuthResult(success=True, auth_data=agent)

    async def _check(self, login: bytes, password: bytes) -> Agent | None:
        """`credentials.check` in the relay's own threads, at most `LOGIN_CHECKS` at once."""
        if self._checks is None:  # made again after `close`: the relay may be restarted
            self._checks = ThreadPoolExecutor(max_workers=LOGIN_CHECKS,
                                              thread_name_prefix="relay-login")
        return await asyncio.get_running_loop().run_in_executor(
            self._checks, self.credentials.check, login, password)

    def close(self) -> None:
        """Let the login threads end once the checks already asked for are done."""
        checks, self._checks = self._checks, None
        if checks is not None:
            checks.shutdown(wait=False)

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        agent = session.auth_data
        if not isinstance(agent, Agent):  # aiosmtpd's auth_required already refuses this
            return "530 5.7.0 Authentication required"
        if address.lower() not in {agent.email.lower()} | self.support_addresses:
            log.warning("relay %s", fields(event="sender_refused", peer=_peer(session)))
            log.debug("relay %s", fields(event="sender_refused", agent=agent.email,
                                         sender=address))
            return REPLY_SENDER_REFUSED
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return REPLY_SENDER_OK

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return REPLY_TOO_MANY
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return REPLY_RECIPIENT_OK

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        agent = session.auth_data
        assert isinstance(agent, Agent) and envelope.mail_from is not None
        submission = Submission(
            agent=agent, envelope_from=envelope.mail_from, recipients=tuple(envelope.rcpt_tos),
            data=bytes(envelope.original_content or b""), accepted_at=self.clock.now(),
            peer=_peer(session))
        try:
            done = await asyncio.to_thread(self.submit, submission)
        except PermanentError as exc:
            log.warning("relay %s", fields(event="unreadable", peer=submission.peer,
                                           error=type(exc).__name__))
            return REPLY_UNREADABLE
        except Exception:
            log.exception("relay %s", fields(event="store_failed", peer=submission.peer))
            return REPLY_STORE_FAILED
        if done.result in ("from_refused", "refused"):
            log.warning("relay %s", fields(event=done.result, peer=submission.peer,
                                           problems=len(done.problems)))
            first = REPLY_FROM_REFUSED if done.result == "from_refused" \
                else REPLY_COMMANDS_REFUSED
            return refusal(first, done.problems)
        return {"queued": REPLY_QUEUED, "applied": REPLY_APPLIED, "noted": REPLY_NOTED,
                "kept": REPLY_KEPT, "duplicate": REPLY_DUPLICATE}[done.result]

    async def handle_exception(self, error: Exception) -> str:
        # aiosmtpd would send the exception's text to the client; we log it instead.
        log.error("relay %s", fields(event="error", error=type(error).__name__),
                  exc_info=error)
        return REPLY_ERROR


# -- the server --------------------------------------------------------------------------------


def upstream_transport(settings: RelaySettings, *, local_hostname: str,
                       tokens: TokenSource | None = None) -> SmtpTransport:
    """An SMTP transport to the relay's upstream smarthost, for the outbox sender; it greets
    with the relay's hostname (and logs in with `tokens` when upstream_auth = "oauth2")."""
    assert settings.upstream is not None, "check-config requires upstream_host"
    return SmtpTransport(settings.upstream, local_hostname=settings.hostname or local_hostname,
                         tokens=tokens if settings.upstream.auth == "oauth2" else None)


class _QuietAiosmtpd(logging.Filter):
    """Drop two warnings aiosmtpd 1.4.6 logs for every connection that say nothing here: its
    own use of the deprecated Session.login_data, and, with implicit TLS (where AUTH is safe
    without STARTTLS), auth_require_tls=False."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return "login_data is deprecated" not in text and "auth_require_tls == False" not in text


_QUIET = _QuietAiosmtpd()


def server_context(certificate: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, key)
    return context


class RelayServer:
    """The relay's listening socket on the running loop; `start()` then `close()`."""

    def __init__(self, settings: RelaySettings, handler: RelayHandler, *,
                 sock: socket.socket | None = None) -> None:
        self.settings = settings
        self.handler = handler
        self.sock = sock
        """A listening socket systemd passed (`mailbridge-relay.socket`): used instead of
        binding `listen`, which the hardened unit cannot do for port 587."""
        self._server: asyncio.Server | None = None
        self._context: ssl.SSLContext | None = None

    async def start(self) -> None:
        settings = self.settings
        assert settings.certificate is not None and settings.key is not None
        context = self._context = server_context(settings.certificate, settings.key)
        implicit = settings.tls == "implicit"
        loop = asyncio.get_running_loop()
        hostname = settings.hostname or "localhost"  # always given: getfqdn() may block
        logging.getLogger("mail.log").addFilter(_QUIET)  # once: filters are a set

        def factory() -> SMTP:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return SMTP(self.handler, hostname=hostname, ident="mailbridge relay",
                            tls_context=None if implicit else context,
                            require_starttls=not implicit, auth_required=True,
                            auth_require_tls=not implicit, data_size_limit=MAX_MESSAGE,
                            loop=loop)

        where: dict[str, Any] = {"sock": self.sock} if self.sock is not None else {
            "host": settings.host, "port": settings.port}
        try:
            self._server = await loop.create_server(factory, **where,
                                                    ssl=context if implicit else None)
        except OSError as exc:
            hint = " (ports below 1024 need CAP_NET_BIND_SERVICE, or systemd/" \
                "mailbridge-relay.socket)" if exc.errno == errno.EACCES else ""
            raise MailbridgeError(f"[relay] listen: cannot listen on {settings.listen}: "
                                  f"{exc.strerror or exc}{hint}") from exc
        host: Any = self._server.sockets[0].getsockname()[0]
        log.info("relay %s", fields(event="listening", listen=f"{host}:{self.port}",
                                    tls=settings.tls,
                                    socket="from systemd" if self.sock is not None else None))

    def reload(self, settings: RelaySettings, credentials: Credentials,
               support_addresses: Iterable[str]) -> None:
        """Take a reloaded configuration's certificate and key (for the next connections),
        logins and support addresses; where it listens changes only at a restart."""
        assert settings.certificate is not None and settings.key is not None
        if self._context is not None:  # TLS set-ups copy it when a connection starts
            self._context.load_cert_chain(settings.certificate, settings.key)
        self.settings = self.settings.model_copy(
            update={"certificate": settings.certificate, "key": settings.key})
        self.handler.credentials = credentials
        self.handler.support_addresses = frozenset(a.lower() for a in support_addresses)

    async def serve(self, stopping: asyncio.Event) -> None:
        """Listen until `stopping` is set, starting to listen first when not (again)."""
        if self._server is None:
            await self.start()
        await stopping.wait()

    @property
    def port(self) -> int:
        """The port listened on (the one chosen when `listen` asked for port 0)."""
        if self._server is None or not self._server.sockets:
            return self.settings.port
        sockname: Any = self._server.sockets[0].getsockname()
        return int(sockname[1])

    async def close(self) -> None:
        """Stop accepting connections; messages being stored finish in their threads."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        self.handler.close()
