"""Real mail servers for integration tests and benchmarks: a Dovecot IMAP child process and an
in-process aiosmtpd SMTP peer, plus the polling helpers every test waits with.

This module owns nothing of the package under test. It imports no pytest, so that
``benchmarks/`` scripts can use it as ``tests.servers`` with the repository root on sys.path.

Dovecot runs from a config generated into a directory of its own, on its own loopback ports,
with its own ``base_dir`` and ``state_dir``: it never touches a system Dovecot. When the tests
run as root (CI), the mail processes cannot (Dovecot refuses uid 0 for mail access), so they
run as ``nobody`` inside a chroot at a fresh ``mb-mailroot-*`` in the temp root that ``nobody``
owns (LMTP, which never chroots, uses the full path); as any other user, every Dovecot process
runs as that user, no chroot is used and the mail is in ``<directory>/mailroot``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import functools
import grp
import itertools
import os
import pwd
import re
import secrets
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from imapclient import IMAPClient

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
DOVECOT_BINARY = Path("/usr/sbin/dovecot")
LMTP_BINARY = Path("/usr/lib/dovecot/lmtp")
DOVEADM_BINARY = Path("/usr/bin/doveadm")
PUSH_METADATA_KEY = "/private/vendor/vendor.dovecot/http-notify"
"""The server METADATA entry Dovecot's OX push driver reads: it pushes only for users whose
entry holds ``user=<login>``, and sends that login."""
"""Dovecot's LMTP server (Debian: dovecot-lmtpd); the test server listens for LMTP when it is
installed, and ``Dovecot.deliver`` needs it."""
INSTALL_HINT = ("run the project's test command, `./scripts/test`, which installs dovecot-imapd "
                "and dovecot-lmtpd")


# --------------------------------------------------------------------------- polling helpers


PORTS = range(20000, 32000)
"""Where test servers listen: below Linux's ephemeral range (32768 and up), so a port handed
out is never taken meanwhile by an outgoing connection or another process's bind to 0."""
PORTS_PER_WORKER = 1500
_turns = itertools.count()


def _worker() -> int:
    """This test process's number: pytest-xdist's worker gwN is N, a plain run 0."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name[2:]) if name[2:].isdigit() else 0


def free_port() -> int:
    """Return a loopback TCP port that is free right now and that no other test process
    hands out: each pytest-xdist worker takes its ports from its own slice of `PORTS`, in
    turn, so a port handed out but not yet bound (a daemon's [http] listen written into its
    config before the Dovecot that pushes to it starts) is not offered again until the
    whole slice has been."""
    first = PORTS.start + (_worker() * PORTS_PER_WORKER) % len(PORTS)
    for _ in range(PORTS_PER_WORKER):
        port = first + next(_turns) % PORTS_PER_WORKER
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:  # in use, or still closing
                continue
        return port
    raise AssertionError(f"no free port among {PORTS_PER_WORKER} from {first}")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    interval: float = 0.02,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Poll ``predicate`` until it returns a truthy value and return that value.

    Raises ``AssertionError(message)`` when ``timeout`` seconds pass first. ``message`` may be
    a callable, evaluated only on timeout (to include fresh state such as a log tail).
    Exceptions raised by the predicate propagate unchanged.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (waited {timeout:g}s)")
        time.sleep(interval)


async def until(predicate: Callable[[], object], timeout: float = 10.0,
                message: str = "condition not met") -> None:
    """``wait_for`` inside a running event loop: poll without blocking the loop, so the
    service under test (on that loop) keeps working meanwhile."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} (waited {timeout:g}s)")
        await asyncio.sleep(0.02)


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """Tell whether a TCP connection to ``host:port`` is accepted right now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _imap_greets(host: str, port: int, tls: ssl.SSLContext | None = None) -> bool:
    """Tell whether ``host:port`` (over TLS if given a context) greets with IMAP ``* OK``."""
    try:
        with contextlib.ExitStack() as stack:
            sock = stack.enter_context(socket.create_connection((host, port), timeout=2.0))
            if tls is not None:
                sock = stack.enter_context(tls.wrap_socket(sock, server_hostname="localhost"))
            return sock.recv(4096).startswith(b"* OK")
    except OSError:
        return False


def _lmtp_greets(host: str, port: int) -> bool:
    """Tell whether ``host:port`` greets with an LMTP (SMTP) ``220``."""
    try:
        with socket.create_connection((host, port), timeout=2.0) as sock:
            return sock.recv(4096).startswith(b"220 ")
    except OSError:
        return False


def _tail(path: Path, lines: int = 40) -> str:
    """Return the last ``lines`` lines of a text file, or a note that it does not exist."""
    if not path.exists():
        return f"<{path} does not exist>"
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(text[-lines:])


# --------------------------------------------------------------------------- TLS material


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a throw-away CA and a server certificate for "localhost" and 127.0.0.1."""

    ca_pem_path: Path
    cert_pem_path: Path
    key_pem_path: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """Write a new trustme CA and a server certificate signed by it into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("localhost", LOOPBACK)
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca.cert_pem.write_to_path(str(files.ca_pem_path))
    files.cert_pem_path.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    files.key_pem_path.write_bytes(server.private_key_pem.bytes())
    files.key_pem_path.chmod(0o600)
    return files


def server_ssl_context(files: TlsFiles) -> ssl.SSLContext:
    """Return a server-side SSL context presenting the certificate in ``files``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert_pem_path, files.key_pem_path)
    return context


# --------------------------------------------------------------------------- Dovecot


class DovecotNotInstalled(RuntimeError):
    """The Dovecot binary is missing from this machine."""


@dataclass(frozen=True)
class _Privileges:
    """Who the Dovecot processes run as, and where mail lives as the mail processes see it."""

    internal_user: str
    login_user: str
    mail_uid: int
    mail_gid: int
    chroot: bool


def _privileges() -> _Privileges:
    """Choose process users: as root, mail runs as ``nobody`` in a chroot; else all as us."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return _Privileges(me.pw_name, me.pw_name, me.pw_uid, me.pw_gid, chroot=False)
    nobody = pwd.getpwnam("nobody")
    login_user = "dovenull" if _user_exists("dovenull") else "nobody"
    return _Privileges("root", login_user, nobody.pw_uid, nobody.pw_gid, chroot=True)


def _user_exists(name: str) -> bool:
    """Tell whether a system user called ``name`` exists."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _group_name(gid: int) -> str:
    """Return the name of group ``gid``, or the number as text when it has none."""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")


class Dovecot:
    """A real Dovecot IMAP server run as a child process from a config in ``directory``.

    ``start()``/``stop()`` may be repeated: ports, user, password, certificates and mail
    survive a restart. Each helper (``append``, ``uids``...) opens its own short connection.
    With dovecot-lmtpd installed it also serves LMTP on ``lmtp_port``, where ``deliver``
    hands it mail as an MTA does.
    """

    host = LOOPBACK
    username = "support@example.com"

    def __init__(
        self, directory: Path, *, binary: Path = DOVECOT_BINARY, extra_config: str = "",
        sent_folder: bool = True, oauth2_introspection_url: str | None = None,
        oauth2_mechanisms: str = "xoauth2 oauthbearer", push_url: str | None = None,
        push_user: str | None = None,
    ) -> None:
        self.directory = Path(directory).resolve()
        self.push_url = push_url
        """With a URL (``http://[user:pass@]127.0.0.1:PORT/push/dovecot``), LMTP delivery
        pushes each new INBOX message there with the push_notification plugin's OX driver,
        for the login ``push_user`` (default: the test user) set in ``PUSH_METADATA_KEY``."""
        self.push_user = push_user or self.username
        self.oauth2_introspection_url = oauth2_introspection_url
        """With a URL, the test user logs in only by OAuth2 (``oauth2_mechanisms``): an
        ``oauth2`` passdb asks that token-introspection endpoint (``tests.oauth2_server``), and
        the helpers log in as a master user (``login_name``)."""
        self.oauth2_mechanisms = oauth2_mechanisms
        self.extra_config = extra_config
        self.sent_folder = sent_folder
        """Whether the server makes a "Sent" folder, marked \\Sent (RFC 6154), itself."""
        self.binary = binary
        self.port = free_port()
        self.tls_port = free_port()
        self.lmtp_port = free_port()
        self.lmtp = LMTP_BINARY.exists()
        """Whether the server listens for LMTP (``deliver``): the package is installed."""
        self.password = secrets.token_urlsafe(16)
        self.config_path = self.directory / "dovecot.conf"
        self.log_path = self.directory / "dovecot.log"
        self.stderr_path = self.directory / "dovecot.stderr"
        self.password_file = self.directory / "password"
        self._privileges = _privileges()
        self.mail_root = self.directory / "mailroot"
        if self._privileges.chroot:
            # LMTP never chroots, and as nobody must reach the mail by its full path: keep it
            # in a fresh directory of the temp root, not below a test's private directory.
            self.mail_root = Path(tempfile.mkdtemp(prefix="mb-mailroot-", dir=_short_tmp()))
            weakref.finalize(self, shutil.rmtree, self.mail_root, True)
        self._process: subprocess.Popen[bytes] | None = None
        self._base_dir: Path | None = None
        self.directory.mkdir(parents=True, exist_ok=True)
        self._tls = make_tls_files(self.directory / "tls")
        self._write_credentials()
        self._make_mail_root()

    # -- attributes -------------------------------------------------------------------------

    @property
    def ca_pem_path(self) -> Path:
        """CA certificate (PEM) that verifies the server certificate."""
        return self._tls.ca_pem_path

    @property
    def mail_dir(self) -> Path:
        """The test user's Maildir on disk (INBOX; other folders are ``.Name`` below it)."""
        return self.mail_root / "mail" / self.username

    @property
    def login_name(self) -> str:
        """Whom the helpers log in as: the test user, or with OAuth2 a master user for it."""
        return f"{self.username}*helper" if self.oauth2_introspection_url else self.username

    @property
    def running(self) -> bool:
        """Tell whether the Dovecot master process is alive."""
        return self._process is not None and self._process.poll() is None

    def ssl_context(self) -> ssl.SSLContext:
        """Return a client SSL context that trusts only this server's CA."""
        return ssl.create_default_context(cafile=str(self.ca_pem_path))

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> None:
        """Start Dovecot and return once its ports accept connections and greet."""
        if self.running:
            return
        self.stop()  # clean up after a master that died on its own, if any
        if not self.binary.exists():
            raise DovecotNotInstalled(f"{self.binary} is missing; {INSTALL_HINT}")
        # Runtime dirs are new for each start: a killed master may leave a stale
        # master.pid or state/instances.lock that would stall the next start for seconds.
        self._base_dir = Path(tempfile.mkdtemp(prefix="mb-dovecot-", dir=_short_tmp()))
        self._base_dir.chmod(0o755)  # Dovecot wants base_dir world-readable
        (self._base_dir / "state").mkdir()
        self.config_path.write_text(self._config(), encoding="utf-8")
        with self.stderr_path.open("ab") as stderr:
            self._process = subprocess.Popen(
                [str(self.binary), "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                cwd=self.directory,
                start_new_session=True,  # own process group: stop() signals exactly it
            )
        try:
            wait_for(self._ready, timeout=timeout, message=self._diagnosis("did not come up"))
            if self.push_url:
                self.doveadm("mailbox", "metadata", "set", "-u", self.username, "-s", "",
                             PUSH_METADATA_KEY, f"user={self.push_user}")
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Stop Dovecot and wait until its ports refuse connections.

        Signals go only to the process group of the master we started (SIGTERM, then SIGKILL
        after ``timeout``); open IMAP sessions get ``* BYE`` and are closed, as in a real
        server shutdown. Mail, ports and credentials are kept for the next ``start()``.
        """
        process, self._process = self._process, None
        if process is not None:
            _terminate(process, timeout)
            wait_for(
                lambda: not any(port_accepts(self.host, port) for port in self._ports()),
                timeout=timeout,
                message=f"Dovecot ports {self._ports()} still open after stop",
            )
        if self._base_dir is not None:
            shutil.rmtree(self._base_dir, ignore_errors=True)
            self._base_dir = None

    def restart(self) -> None:
        """Stop and start again on the same ports with the same mail."""
        self.stop()
        self.start()

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def doveadm(self, *args: str) -> str:
        """Run ``doveadm`` against this server's config; its output, or RuntimeError."""
        done = subprocess.run([str(DOVEADM_BINARY), "-c", str(self.config_path), *args],
                              capture_output=True, text=True, timeout=30, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"doveadm {' '.join(args)} failed ({done.returncode}): "
                               f"{done.stderr.strip()}")
        return done.stdout

    def push_errors(self) -> list[str]:
        """The lines of Dovecot's log in which its push driver reports a failure."""
        if not self.log_path.exists():
            return []
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return [line for line in text.splitlines() if "Error" in line
                and ("push-notification" in line or "Push Notification" in line)]

    def log_tail(self, lines: int = 40) -> str:
        """Return the end of Dovecot's log and of its stderr, for failure messages."""
        return f"{_tail(self.log_path, lines)}\n--- stderr ---\n{_tail(self.stderr_path, lines)}"

    # -- IMAP helpers -----------------------------------------------------------------------

    def connect(self, *, tls: bool = False, timeout: float = 10.0) -> IMAPClient:
        """Return a logged-in IMAPClient: plain port, or implicit TLS verified with the CA."""
        if tls:
            client = IMAPClient(
                self.host,
                self.tls_port,
                ssl=True,
                ssl_context=self.ssl_context(),
                timeout=timeout,
            )
        else:
            client = IMAPClient(self.host, self.port, ssl=False, timeout=timeout)
        client.login(self.login_name, self.password)
        return client

    def append(
        self,
        raw: bytes,
        folder: str = "INBOX",
        flags: Sequence[str | bytes] = (),
        msg_time: datetime | None = None,
    ) -> int | None:
        """Append a raw RFC 5322 message; return its UID when the server reports APPENDUID."""
        with self.connect() as client:
            response = client.append(folder, raw, flags=tuple(flags), msg_time=msg_time)
        match = _APPENDUID.search(response if isinstance(response, bytes) else b"")
        return int(match.group(1)) if match else None

    def deliver(
        self, raw: bytes, *, sender: str = "sender@example.org", recipient: str | None = None,
    ) -> None:
        """Deliver a raw message into INBOX by LMTP, as an MTA does (LHLO, MAIL, RCPT, DATA).

        Dovecot adds Return-Path (``sender``), Delivered-To (``recipient``, the test user by
        default) and its own Received field on top; the fields the MTA adds before that
        (``tests.mails.mta_headers``) are the caller's. Raises ``smtplib.SMTPException`` when
        Dovecot refuses the mail.
        """
        if not self.lmtp:
            raise DovecotNotInstalled(f"{LMTP_BINARY} is missing; {INSTALL_HINT}")
        with smtplib.LMTP(self.host, self.lmtp_port, timeout=10) as client:
            client.sendmail(sender, [recipient or self.username], raw)

    def uidvalidity(self, folder: str = "INBOX") -> int:
        """Return the UIDVALIDITY of ``folder``."""
        with self.connect() as client:
            return int(client.folder_status(folder, ["UIDVALIDITY"])[b"UIDVALIDITY"])

    def set_uidvalidity(self, value: int, folder: str = "INBOX") -> None:
        """Give ``folder`` the UIDVALIDITY ``value`` (``doveadm mailbox update``), as another
        server's folder may have: Dovecot takes the folder's creation second otherwise."""
        self.doveadm("mailbox", "update", "--uid-validity", str(value), "-u", self.username,
                     folder)
        assert self.uidvalidity(folder) == value

    def uids(self, folder: str = "INBOX") -> list[int]:
        """Return the UIDs of all messages in ``folder``, ascending."""
        with self.connect() as client:
            client.select_folder(folder, readonly=True)
            return sorted(int(uid) for uid in client.search("ALL"))

    def fetch_raw(self, uid: int, folder: str = "INBOX") -> bytes:
        """Return the full raw bytes of message ``uid`` in ``folder``, leaving it unseen."""
        with self.connect() as client:
            client.select_folder(folder, readonly=True)
            data = client.fetch([uid], ["BODY.PEEK[]"])
        if uid not in data:
            raise KeyError(f"no message with UID {uid} in {folder}")
        return bytes(data[uid][b"BODY[]"])

    def flags(self, uid: int, folder: str = "INBOX") -> tuple[bytes, ...]:
        """Return the flags of message ``uid`` in ``folder``."""
        with self.connect() as client:
            client.select_folder(folder, readonly=True)
            data = client.get_flags([uid])
        if uid not in data:
            raise KeyError(f"no message with UID {uid} in {folder}")
        return tuple(data[uid])

    def delete_all(self, folder: str = "INBOX") -> None:
        """Delete and expunge every message in ``folder``."""
        with self.connect() as client:
            client.select_folder(folder)
            uids = client.search("ALL")
            if uids:
                client.delete_messages(uids)
                client.expunge()

    # -- internals --------------------------------------------------------------------------

    def _ready(self) -> bool:
        """Tell whether Dovecot serves all its ports; raise if the process has died."""
        if self._process is None or self._process.poll() is not None:
            code = None if self._process is None else self._process.returncode
            raise RuntimeError(self._diagnosis(f"exited with code {code}")())
        return (
            _imap_greets(self.host, self.port)
            and _imap_greets(self.host, self.tls_port, self.ssl_context())
            and (not self.lmtp or _lmtp_greets(self.host, self.lmtp_port))
        )

    def _ports(self) -> list[int]:
        """Return the ports this server listens on."""
        return [self.port, self.tls_port] + ([self.lmtp_port] if self.lmtp else [])

    def _diagnosis(self, what: str) -> Callable[[], str]:
        """Return a message factory naming the failure and showing the log tail."""
        return lambda: f"Dovecot ({self.config_path}) {what}:\n{self.log_tail()}"

    def _write_credentials(self) -> None:
        """Write the password file and Dovecot's passwd-file with the test user."""
        self.password_file.write_text(self.password, encoding="utf-8")
        self.password_file.chmod(0o600)
        passwd = self.directory / "passwd"
        user = "helper" if self.oauth2_introspection_url else self.username
        passwd.write_text(f"{user}:{{PLAIN}}{self.password}\n", encoding="utf-8")
        passwd.chmod(0o600)
        if self.oauth2_introspection_url:
            (self.directory / "dovecot-oauth2.conf.ext").write_text(_OAUTH2_CONF.format(
                url=self.oauth2_introspection_url), encoding="utf-8")

    def _push_lmtp_lines(self) -> str:
        """The LMTP lines that turn the push driver on (LMTP never chroots: it finds the
        METADATA by its path outside the chroot)."""
        if not self.push_url:
            return ""
        lines = "  mail_plugins = $mail_plugins notify push_notification\n"
        if self._privileges.chroot:
            lines += (f"  mail_attribute_dict = file:{self.mail_root}/home/%u/"
                      "dovecot-attributes\n")
        return lines

    def _make_mail_root(self) -> None:
        """Create the mail root (and the user's home) owned by the mail processes' user."""
        home = self.mail_root / "home" / self.username
        home.mkdir(parents=True, exist_ok=True)
        (self.mail_root / "mail").mkdir(exist_ok=True)
        if self._privileges.chroot:
            for path in (self.mail_root, home.parent, home, self.mail_root / "mail"):
                os.chown(path, self._privileges.mail_uid, self._privileges.mail_gid)

    def _config(self) -> str:
        """Render dovecot.conf for this instance."""
        assert self._base_dir is not None
        priv = self._privileges
        inside = Path("/") if priv.chroot else self.mail_root
        chroot_lines = (
            f"mail_chroot = {self.mail_root}\nvalid_chroot_dirs = {self.mail_root}\n"
            if priv.chroot
            else ""
        )
        no_chroot = "" if priv.chroot else "  chroot =\n"
        return self.extra_config + "\n" + _DOVECOT_CONF.format(
            base_dir=self._base_dir,
            state_dir=self._base_dir / "state",
            instance=f"mailbridge-test-{self.port}",
            log_path=self.log_path,
            internal_user=priv.internal_user,
            internal_group=_group_name(os.getegid()),
            login_user=priv.login_user,
            mail_uid=priv.mail_uid,
            mail_gid=priv.mail_gid,
            chroot_lines=chroot_lines,
            mail_location=f"maildir:{inside / 'mail'}/%u",
            # With OAuth2 no passdb can look a user up (LMTP's RCPT): the userdb says yes.
            home=f"{inside / 'home'}/%u"
            + (" allow_all_users=yes" if self.oauth2_introspection_url else ""),
            passwd=self.directory / "passwd",
            master="  master = yes\n" if self.oauth2_introspection_url else "",
            cert=self._tls.cert_pem_path,
            key=self._tls.key_pem_path,
            host=self.host,
            port=self.port,
            tls_port=self.tls_port,
            no_chroot=no_chroot,
            sent_mailbox=_SENT_MAILBOX if self.sent_folder else "",
        ) + (_PUSH_CONF.format(  # before LMTP's block, which changes a setting of it
            attributes=f"{inside / 'home'}/%u/dovecot-attributes", url=self.push_url,
        ) if self.push_url else "") + (_LMTP_CONF.format(
            host=self.host, port=self.lmtp_port,
            # LMTP serves many users from one process and so never chroots: it finds the
            # mail by its path outside the chroot.
            unchrooted=(f"  mail_chroot =\n  mail_location = maildir:{self.mail_root}/mail/%u\n"
                        if priv.chroot else ""),
            push=self._push_lmtp_lines(),
        ) if self.lmtp else "") + (_OAUTH2_PASSDB.format(
            mechanisms=self.oauth2_mechanisms, args=self.directory / "dovecot-oauth2.conf.ext",
        ) if self.oauth2_introspection_url else "")


_DOVECOT_CONF = """\
# Generated by tests/servers.py for one test server; not a system config.
protocols = imap
listen = {host}
base_dir = {base_dir}
state_dir = {state_dir}
instance_name = {instance}
log_path = {log_path}
shutdown_clients = yes

default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = 1
first_valid_gid = 1
mail_uid = {mail_uid}
mail_gid = {mail_gid}
{chroot_lines}mail_location = {mail_location}
mailbox_idle_check_interval = 1 secs

disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0 secs
auth_verbose = yes
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {passwd}
{master}}}
userdb {{
  driver = static
  args = home={home}
}}

ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}

namespace inbox {{
  inbox = yes
  separator = /
{sent_mailbox}}}

protocol imap {{
  mail_max_userip_connections = 100
}}

service imap-login {{
{no_chroot}  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
{no_chroot}}}
"""


_LMTP_CONF = """
# LMTP, as an MTA delivers: RCPT TO is looked up in the userdb above (the static userdb asks
# the passdb whether the user exists).
protocols = $protocols lmtp
service lmtp {{
  inet_listener lmtp {{
    address = {host}
    port = {port}
  }}
}}
protocol lmtp {{
  hostname = store.example.com
  postmaster_address = postmaster@example.com
{unchrooted}{push}}}
"""


_PUSH_CONF = """
# Push: the OX driver of the push_notification plugin calls the URL for each new INBOX
# message delivered by LMTP, for users whose METADATA names a login (PUSH_METADATA_KEY).
imap_metadata = yes
mail_attribute_dict = file:{attributes}
plugin {{
  push_notification_driver = ox:url={url}
}}
"""


_OAUTH2_PASSDB = """
# OAuth2 only for the test user: the passwd-file above becomes a master passdb (its one user,
# "helper", logs in as "user*helper"), so a password alone logs nobody in.
auth_mechanisms = plain login {mechanisms}
auth_master_user_separator = *
passdb {{
  driver = oauth2
  mechanisms = {mechanisms}
  args = {args}
}}
"""

_OAUTH2_CONF = """\
introspection_url = {url}
introspection_mode = post
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 5000
"""


_SENT_MAILBOX = """\
  mailbox Sent {
    auto = subscribe
    special_use = \\Sent
  }
"""


def _short_tmp() -> str:
    """Return a temp root short enough for Dovecot's unix socket paths (108 bytes max)."""
    return "/tmp" if Path("/tmp").is_dir() else tempfile.gettempdir()


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Stop Dovecot's process group (led by ``process``, our child) and reap its master.

    SIGTERM goes to the whole group, as the master alone leaves IMAP sessions running, and is
    re-sent until only the master is left, to reach processes forked meanwhile. The master,
    which then only sleeps (up to seconds) before reaping its children, gets SIGKILL, as does
    anything still alive after ``timeout``.
    """
    with contextlib.suppress(AssertionError):
        wait_for(lambda: _only_master_left(process), timeout=timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=timeout)


def _only_master_left(process: subprocess.Popen[bytes]) -> bool:
    """SIGTERM the group led by ``process``; True once no process but the master is alive."""
    process.poll()  # reap the master if it has exited
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    return all(pid == process.pid for pid in _live_group_members(process.pid))


def _live_group_members(pgid: int) -> list[int]:
    """Return the PIDs in process group ``pgid`` that are not zombies (Linux /proc).

    Zombies matter: an orphaned Dovecot child is reparented to PID 1, which in a container
    may reap it only seconds later, and ``killpg`` keeps succeeding on it until then.
    """
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


# --------------------------------------------------------------------------- SMTP peer

SMTP_STAGES = ("MAIL", "RCPT", "DATA")


@dataclass(frozen=True)
class Received:
    """One message the SMTP peer accepted, with its envelope.

    ``mail_from`` is ``""`` for the null sender (``MAIL FROM:<>``); ``data`` is the DATA
    payload as received (after dot-unstuffing); ``message`` is it parsed with the default
    policy, on first use (parsing every message in the peer would take CPU from the daemon
    under measurement); ``received_monotonic`` is ``time.monotonic()`` when the DATA was
    accepted.
    """

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    received_monotonic: float
    pipelined: bool = False
    """Whether more commands had arrived with MAIL FROM, before its reply (RFC 2920)."""

    @functools.cached_property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class _Failure:
    """A scripted SMTP failure: reply ``code text`` at ``stage``, ``remaining`` more times."""

    code: int
    text: str
    stage: str
    remaining: int | None

    @property
    def reply(self) -> str:
        """The SMTP reply line to send."""
        return f"{self.code} {self.text}"


_REFUSED = "mailbridge_tests_refused"
_PIPELINED = "mailbridge_tests_pipelined"


class _RecordingHandler:
    """aiosmtpd handler that records accepted messages and applies scripted failures."""

    def __init__(self, peer: SmtpPeer) -> None:
        self._peer = peer

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if not self._peer.pipelining:
            return responses
        # aiosmtpd reads commands one at a time from a buffered stream, so pipelined
        # commands are answered in order, as RFC 2920 asks; it just does not say so.
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        setattr(envelope, _REFUSED, None)
        # Private to aiosmtpd, read only here: what the client sent beyond this command.
        setattr(envelope, _PIPELINED, bool(server._reader._buffer))
        reply = self._peer._refusal("MAIL", envelope)
        if reply is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self._peer._refusal("RCPT", envelope)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self._peer._refusal("DATA", envelope)
        if reply is not None:
            return reply
        delay = self._peer._take_stall()
        self._peer._record(envelope)
        if self._peer._take_drop() and server.transport is not None:
            # Recorded, then the connection closed with no reply: the client cannot know.
            server.transport.close()
            await asyncio.Event().wait()  # connection_lost() cancels this handler
        if delay:
            # Recorded, the reply held back: a client killed meanwhile cannot know that the
            # message was delivered (as with a real MTA that got the final dot).
            await asyncio.sleep(delay)
        return "250 Message accepted for delivery"


class _CountingSMTP(SMTP):
    """aiosmtpd's session, telling the peer when a client that greeted it is gone (the
    controller's own start-up probe never greets)."""

    def __init__(self, handler: _RecordingHandler, peer: SmtpPeer, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._peer = peer

    def connection_lost(self, error: Exception | None) -> None:
        greeted = self.session is not None and self.session.host_name is not None
        super().connection_lost(error)
        if greeted:
            self._peer._closed()


class _PeerController(Controller):
    def __init__(self, peer: SmtpPeer, handler: _RecordingHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._peer = peer

    def factory(self) -> SMTP:
        return _CountingSMTP(self.handler, self._peer, **self.SMTP_kwargs)


class SmtpPeer:
    """An aiosmtpd server on a fixed loopback port that records mail and fails on demand.

    ``fail_with`` scripts refusals per transaction; ``stop()``/``start()`` simulate an outage
    (connections refused) and come back on the same port. With ``tls=True`` the peer offers
    STARTTLS with a certificate that ``ca_pem_path`` verifies. With ``idle_timeout`` it
    closes a connection that sent no command for that many seconds, as every real MTA does
    (Postfix after 300 s); ``drop_after_data`` hangs up after the final dot without a reply.
    """

    host = LOOPBACK

    def __init__(
        self, *, tls: bool = False, directory: Path | None = None, port: int | None = None,
        pipelining: bool = True, idle_timeout: float | None = None,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.pipelining = pipelining
        """Offer PIPELINING in the EHLO reply, as Postfix, Exim and Sendmail do."""
        self.idle_timeout = idle_timeout
        """Seconds without a command after which aiosmtpd closes the connection (None: its
        default, 300 s)."""
        self._drops = 0
        self._closed_count = 0
        self._cond = threading.Condition()
        self._messages: list[Received] = []
        self._failure: _Failure | None = None
        self._refused = 0
        self._stall: tuple[float, int] | None = None
        self._stalled = 0
        self._controller: Controller | None = None
        self._handler = _RecordingHandler(self)
        self._tls: TlsFiles | None = None
        if tls:
            self._tls = make_tls_files(self._tls_directory(directory))

    # -- attributes -------------------------------------------------------------------------

    @property
    def ca_pem_path(self) -> Path:
        """CA certificate (PEM) that verifies the STARTTLS certificate (``tls=True`` only)."""
        if self._tls is None:
            raise AttributeError("SmtpPeer was created without tls=True")
        return self._tls.ca_pem_path

    @property
    def messages(self) -> list[Received]:
        """A copy of the messages accepted so far, oldest first."""
        with self._cond:
            return list(self._messages)

    @property
    def refused_count(self) -> int:
        """How many transactions were refused by ``fail_with``."""
        with self._cond:
            return self._refused

    @property
    def running(self) -> bool:
        """Tell whether the peer is listening."""
        return self._controller is not None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Listen on ``host:port`` (the same port after a ``stop()``)."""
        if self._controller is not None:
            return
        idle = {} if self.idle_timeout is None else {"timeout": self.idle_timeout}
        controller = _PeerController(
            self,
            self._handler,
            hostname=self.host,
            port=self.port,
            server_hostname="localhost",  # spares a getfqdn() lookup
            ready_timeout=10.0,
            tls_context=None if self._tls is None else server_ssl_context(self._tls),
            **idle,
        )
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        """Stop listening, drop open connections, and wait until the port refuses."""
        controller, self._controller = self._controller, None
        if controller is None:
            return
        controller.stop()
        wait_for(
            lambda: not port_accepts(self.host, self.port),
            message=f"SMTP peer port {self.port} still accepts after stop",
        )

    def __enter__(self) -> SmtpPeer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- behaviour control ------------------------------------------------------------------

    def fail_with(
        self, code: int, text: str, times: int | None = None, stage: str = "DATA"
    ) -> None:
        """Refuse the next ``times`` transactions (None: until ``recover()``) at ``stage``."""
        stage = stage.upper()
        if stage not in SMTP_STAGES:
            raise ValueError(f"stage must be one of {SMTP_STAGES}, not {stage!r}")
        if not 400 <= code <= 599:
            raise ValueError(f"a refusal needs a 4xx or 5xx code, not {code}")
        if times is not None and times < 1:
            raise ValueError("times must be a positive number or None")
        with self._cond:
            self._failure = _Failure(code, text, stage, times)

    def stall(self, seconds: float, times: int = 1) -> None:
        """Hold the reply to the next ``times`` accepted DATA for ``seconds`` (a slow peer)."""
        with self._cond:
            self._stall = (seconds, times)

    @property
    def stalled_count(self) -> int:
        """How many transactions have been held by ``stall`` so far."""
        with self._cond:
            return self._stalled

    def _take_stall(self) -> float:
        with self._cond:
            if self._stall is None:
                return 0.0
            seconds, times = self._stall
            self._stall = (seconds, times - 1) if times > 1 else None
            self._stalled += 1
            return seconds

    def drop_after_data(self, times: int = 1) -> None:
        """Record the next ``times`` messages, then close the connection instead of replying
        to their final dot (the ambiguous end of DATA)."""
        with self._cond:
            self._drops = times

    def _take_drop(self) -> bool:
        with self._cond:
            if self._drops == 0:
                return False
            self._drops -= 1
            return True

    @property
    def closed_count(self) -> int:
        """How many client connections have ended (QUIT, hang-up or our idle timeout)."""
        with self._cond:
            return self._closed_count

    def _closed(self) -> None:
        with self._cond:
            self._closed_count += 1
            self._cond.notify_all()

    def wait_for_closed(self, n: int, timeout: float = 10.0) -> None:
        """Wait until at least ``n`` client connections have ended."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed_count >= n, timeout=timeout):
                raise AssertionError(f"SMTP peer saw {self._closed_count} connections end, "
                                     f"expected {n} (waited {timeout:g}s)")

    def recover(self) -> None:
        """Accept mail normally again."""
        with self._cond:
            self._failure = None

    def clear(self) -> None:
        """Forget the messages received so far and the refusal count."""
        with self._cond:
            self._messages.clear()
            self._refused = 0

    def wait_for_count(self, n: int, timeout: float = 5.0) -> list[Received]:
        """Wait until at least ``n`` messages were accepted; return them all."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._messages) >= n, timeout=timeout):
                raise AssertionError(
                    f"SMTP peer got {len(self._messages)} messages, expected {n} "
                    f"(waited {timeout:g}s; {self._refused} refused)"
                )
            return list(self._messages)

    # -- called from the handler (server thread) --------------------------------------------

    def _refusal(self, stage: str, envelope: Envelope) -> str | None:
        """Return the scripted reply if this transaction is refused at ``stage``, else None."""
        with self._cond:
            already: str | None = getattr(envelope, _REFUSED, None)
            if already is not None:
                return already
            failure = self._failure
            if failure is None or failure.stage != stage:
                return None
            if failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining == 0:
                    self._failure = None
            self._refused += 1
            setattr(envelope, _REFUSED, failure.reply)
            return failure.reply

    def _record(self, envelope: Envelope) -> None:
        """Store an accepted message and wake up waiters."""
        data = envelope.original_content or b""
        sender = envelope.mail_from or ""
        received = Received(
            mail_from="" if sender == "<>" else sender,
            rcpt_tos=list(envelope.rcpt_tos),
            data=data,
            received_monotonic=time.monotonic(),
            pipelined=getattr(envelope, _PIPELINED, False),
        )
        with self._cond:
            self._messages.append(received)
            self._cond.notify_all()

    def _tls_directory(self, directory: Path | None) -> Path:
        """Return where to write TLS files: ``directory`` or a temp dir removed with us."""
        if directory is not None:
            return Path(directory)
        temp = Path(tempfile.mkdtemp(prefix="mb-smtp-peer-"))
        weakref.finalize(self, shutil.rmtree, temp, True)
        return temp


__all__ = [
    "DOVECOT_BINARY",
    "INSTALL_HINT",
    "Dovecot",
    "DovecotNotInstalled",
    "Received",
    "SmtpPeer",
    "TlsFiles",
    "free_port",
    "make_tls_files",
    "port_accepts",
    "server_ssl_context",
    "wait_for",
]
