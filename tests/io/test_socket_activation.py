"""The relay on a listening socket that systemd passes (`systemd/mailbridge-relay.socket`), in a
real `mailbridge run` process: the test opens the socket, passes it as fd 3 with LISTEN_PID,
LISTEN_FDS and LISTEN_FDNAMES as systemd does, and an SMTP client submits through it. A
reload then gives the relay a new certificate and new logins."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest

from mailbridge.config.passwords import hash_password
from mailbridge.daemon.activation import inherited_sockets
from tests.daemon import REPO, Daemon
from tests.io.test_relay import PASSWORDS, relay_config
from tests.servers import Dovecot, SmtpPeer, TlsFiles, make_tls_files, wait_for

pytestmark = pytest.mark.slow

OLD_PW, NEW_PW = PASSWORDS["dana@example.com"], "dana relay pw 3"
# What systemd does between fork and exec: the socket becomes fd 3, and LISTEN_PID names this
# process, which exec hands on to mailbridge.
ACTIVATE = """
import os, sys
os.dup2(int(os.environ.pop("RELAY_FD")), 3, inheritable=True)
env = {**os.environ, "LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1",
       "LISTEN_FDNAMES": "relay"}
os.execve(sys.executable, [sys.executable, *sys.argv[1:]], env)
"""


class ActivatedDaemon(Daemon):
    """`mailbridge run` started the way systemd starts it with a socket unit."""

    def __init__(self, config: Path, listener: socket.socket) -> None:
        super().__init__(config)
        self.listener = listener

    def start(self, timeout: float = 20.0) -> ActivatedDaemon:
        fd = self.listener.fileno()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", ACTIVATE, "-m", "mailbridge", "run",
                 "--config", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, cwd=REPO, pass_fds=(fd,),
                env={**os.environ, "PYTHONUNBUFFERED": "1", "RELAY_FD": str(fd)})
        wait_for(self.healthy, timeout=timeout,
                 message=lambda: f"daemon not healthy; log:\n{self.log()}")
        return self


def submit(port: int, tls: TlsFiles, password: str) -> tuple[int, bytes]:
    """An agent's reply through the relay, over STARTTLS verified with `tls`'s CA."""
    msg = EmailMessage()
    msg["From"] = "Dana Whitfield <dana@example.com>"
    msg["To"] = "ana@example.org"
    msg["Subject"] = "Re: your question"
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg.set_content("Here is the answer.")
    context = ssl.create_default_context(cafile=str(tls.ca_pem_path))
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.starttls(context=context)
        client.login("dana@example.com", password)
        client.mail("dana@example.com")
        client.rcpt("ana@example.org")
        return client.data(msg.as_bytes())


@pytest.fixture
def listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def test_the_relay_serves_the_socket_systemd_passes_and_reloads_its_certificate(
        tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer,
        listener: socket.socket) -> None:
    """The relay accepts a submission on the passed socket; after SIGHUP with a new certificate
    and password, clients trust the new CA and log in with the new password only."""
    port = listener.getsockname()[1]
    with SmtpPeer() as upstream:
        # Its listen address is the passed socket's: binding it again would fail, so only
        # that socket can serve.
        tls = make_tls_files(tmp_path / "tls")
        config = relay_config(tmp_path / "mb", dovecot, smtp_peer, upstream, tls, port)
        daemon = ActivatedDaemon(config, listener)
        with daemon:
            listener.close()  # the daemon holds its own copy, as it would from systemd
            assert submit(port, tls, OLD_PW)[0] == 250
            [relayed] = upstream.wait_for_count(1, timeout=10)
            assert relayed.rcpt_tos == ["ana@example.org"]
            [line] = [x for x in daemon.log().splitlines() if "event=listening" in x]
            assert f":{port}" in line and 'socket="from systemd"' in line

            new_tls = make_tls_files(tmp_path / "tls-new")
            text = config.read_text(encoding="utf-8").replace(
                str(tls.cert_pem_path), str(new_tls.cert_pem_path)).replace(
                str(tls.key_pem_path), str(new_tls.key_pem_path))
            old_hash = text.split('password_hash = "', 1)[1].split('"', 1)[0]
            config.write_text(text.replace(old_hash, hash_password(NEW_PW, n=2**10)),
                              encoding="utf-8")
            assert daemon.process is not None
            daemon.process.send_signal(signal.SIGHUP)
            wait_for(lambda: "config event=reloaded" in daemon.log(), timeout=10,
                     message=daemon.log)
            with pytest.raises(ssl.SSLCertVerificationError):
                submit(port, tls, NEW_PW)
            with pytest.raises(smtplib.SMTPAuthenticationError):
                submit(port, new_tls, OLD_PW)
            assert submit(port, new_tls, NEW_PW)[0] == 250
            assert "needs_restart" not in daemon.log()


@pytest.mark.parametrize("environ", [
    {"LISTEN_PID": "1", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "relay"},
    {"LISTEN_PID": "many", "LISTEN_FDS": "1"},
    {"LISTEN_FDNAMES": "relay"},
])
def test_sockets_meant_for_another_process_are_left_alone(environ: dict[str, str]) -> None:
    """Variables for another process (a parent's), or unreadable ones, give no socket and are
    removed all the same, so that no child of ours takes them up."""
    env = {"PATH": "/usr/bin", **environ}
    assert inherited_sockets(env) == {}
    assert env == {"PATH": "/usr/bin"}
