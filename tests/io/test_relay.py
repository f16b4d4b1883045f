"""The agents' relay end to end: `mailbridge run`, Dovecot, and a real mail client (swaks).

The relay's certificate comes from a throw-away trustme CA, and swaks verifies it with that
CA (`--tls-verify --tls-ca-path`). Acknowledgements go to one aiosmtpd peer, relayed mail to
another, the upstream smarthost.
"""

from __future__ import annotations

import json
import shutil
import smtplib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from email.utils import make_msgid
from pathlib import Path

import pytest

from mailbridge.config.passwords import hash_password
from tests.daemon import REPO, Daemon, write_config
from tests.mails import customer_mail
from tests.servers import Dovecot, SmtpPeer, TlsFiles, free_port, make_tls_files, wait_for

pytestmark = pytest.mark.slow

PASSWORDS = {"dana@example.com": "dana relay pw 1", "sam@example.com": "sam relay pw 2"}
NAMES = {"dana@example.com": "Dana Whitfield", "sam@example.com": "Sam Okafor"}
SWAKS = shutil.which("swaks")


@dataclass
class Relay:
    config: Path
    daemon: Daemon
    port: int
    tls: TlsFiles
    upstream: SmtpPeer
    workdir: Path

    def swaks(self, *args: str, data: bytes | None = None, tls: bool = True,
              ca: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run swaks against the relay: STARTTLS, the certificate verified with `ca` (by
        default the relay's own CA)."""
        assert SWAKS is not None, "swaks is missing: run ./scripts/test, which installs it"
        command = [SWAKS, "--server", "127.0.0.1", "--port", str(self.port),
                   "--helo", "client.example.com", "--timeout", "30"]
        if tls:
            command += ["--tls", "--tls-verify", "--tls-ca-path",
                        str(ca or self.tls.ca_pem_path)]
        if data is not None:
            eml = self.workdir / f"message-{free_port()}.eml"
            eml.write_bytes(data)
            command += ["--data", f"@{eml}"]
        return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60,
                              check=False)

    def login(self, user: str, password: str | None = None) -> tuple[str, ...]:
        return ("--auth", "PLAIN", "--auth-user", user,
                "--auth-password", password if password is not None else PASSWORDS[user])

    def threads(self, *states: str) -> list[dict[str, object]]:
        args = [sys.executable, "-m", "mailbridge", "threads", "--config", str(self.config),
                "--json"]
        for state in states:
            args += ["--state", state]
        out = subprocess.run(args, capture_output=True, text=True, check=True, cwd=REPO).stdout
        return [json.loads(line) for line in out.splitlines()]


def relay_config(directory: Path, dovecot: Dovecot, acks: SmtpPeer, upstream: SmtpPeer,
                 tls: TlsFiles, port: int) -> Path:
    path = write_config(directory, dovecot, acks, extra_sla='next_response = "8h"', extra=f"""
[relay]
enabled = true
listen = "127.0.0.1:{port}"
certificate = "{tls.cert_pem_path}"
key = "{tls.key_pem_path}"
hostname = "localhost"
upstream_host = "{upstream.host}"
upstream_port = {upstream.port}
upstream_tls = "none"
""")
    text = path.read_text(encoding="utf-8")
    for email, password in PASSWORDS.items():
        line = f'email = "{email}"\n'
        assert line in text
        text = text.replace(line, f'{line}password_hash = "{hash_password(password, n=2**12)}"\n')
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def relay(tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> Iterator[Relay]:
    tls = make_tls_files(tmp_path / "relay-tls")
    port = free_port()
    with SmtpPeer() as upstream:
        config = relay_config(tmp_path / "mb", dovecot, smtp_peer, upstream, tls, port)
        with Daemon(config) as daemon:
            wait_for(lambda: "event=listening" in daemon.log(), timeout=10, message=daemon.log)
            yield Relay(config, daemon, port, tls, upstream, tmp_path)


def agent_reply(original: bytes, agent: str, body: str, **headers: str) -> bytes:
    parent = message_from_bytes(original, policy=default)
    msg = EmailMessage()
    msg["From"] = f"{NAMES[agent]} <{agent}>"
    msg["To"] = str(parent["From"])
    msg["Subject"] = "Re: " + str(parent["Subject"])
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg["In-Reply-To"] = str(parent["Message-ID"])
    msg["References"] = str(parent["Message-ID"])
    for key, value in headers.items():
        msg[key.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()


def test_a_reply_through_the_relay_goes_upstream_without_commands_and_stops_the_clock(
        relay: Relay, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """Customer mail → ack → the assigned agent answers with #pending through the relay
    (swaks, STARTTLS verified, AUTH) → upstream gets it without the command lines, the thread
    awaits the customer; the customer writes again → it awaits the same agent."""
    original = customer_mail(1, addr="ana@example.org", subject="Charged twice")
    dovecot.append(original)
    [ack] = smtp_peer.wait_for_count(1, timeout=10)
    [waiting] = relay.threads()
    assert waiting["state"] == "awaiting_agent"
    agent = next(e for e, n in NAMES.items() if n == waiting["agent"])
    assert NAMES[agent] in str(ack.message["From"]), "the ack names the assigned agent"

    body = "#pending\n#note Asked which card was charged.\n\nHello Ana,\nwhich card was it?\n"
    answer = agent_reply(original, agent, body)
    done = relay.swaks(*relay.login(agent), "--from", agent, "--to", "ana@example.org",
                       data=answer)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "TLS started" in done.stdout
    assert "<~  250 2.0.0 Accepted: recorded and queued for delivery" in done.stdout

    [sent] = relay.upstream.wait_for_count(1, timeout=10)
    assert (sent.mail_from, sent.rcpt_tos) == (agent, ["ana@example.org"])
    assert str(sent.message["Reply-To"]) == "Example Support <support@example.com>", \
        "the customer's answer comes back to the desk"
    text = sent.message.get_body(preferencelist=("plain",)).get_content()
    assert text.replace("\r\n", "\n").rstrip("\n") == "Hello Ana,\nwhich card was it?"
    assert "#" not in sent.data.decode(), "no command line reaches the customer"

    [answered] = relay.threads("awaiting_customer")
    assert answered["thread"] == waiting["thread"] and answered["next_deadline"] is None
    store = relay.daemon.store()
    try:
        row = store.messages()[-1]
        assert (row.mailbox, row.rule, row.thread_id) == ("relay", "agent_reply",
                                                          waiting["thread"])
    finally:
        store.close()

    # The customer answers the agent's reply: the clock runs again, for the same agent.
    answer_id = str(message_from_bytes(answer, policy=default)["Message-ID"])
    dovecot.append(customer_mail(2, addr="ana@example.org", subject="Re: Charged twice",
                                 body="It was the Visa.", In_Reply_To=answer_id,
                                 References=answer_id))
    wait_for(lambda: relay.threads()[0]["state"] == "awaiting_agent" if relay.threads()
             else False, timeout=15, message=relay.daemon.log)
    [again] = relay.threads()
    assert again["thread"] == waiting["thread"] and again["agent"] == waiting["agent"]
    assert again["next_deadline_kind"] == "next_response", "the clock runs again"
    assert len(smtp_peer.messages) == 1, "no second ack"
    log = relay.daemon.log()
    assert PASSWORDS[agent] not in log, "no password in the log"
    assert "ana@example.org" not in log and agent not in log, "no address at info level"


def test_the_relay_refuses_strangers_wrong_passwords_forged_senders_and_plain_auth(
        relay: Relay) -> None:
    """Never an open relay: each refusal is a clear SMTP reply, and nothing goes upstream."""
    dana = "dana@example.com"
    message = agent_reply(customer_mail(1, addr="ana@example.org"), dana, "Hello")

    anonymous = relay.swaks("--from", dana, "--to", "ana@example.org", data=message)
    assert anonymous.returncode == 23, anonymous.stdout
    assert "<~* 530 5.7.0 Authentication required" in anonymous.stdout

    wrong = relay.swaks(*relay.login(dana, "not the password"), "--from", dana,
                        "--to", "ana@example.org", data=message)
    assert wrong.returncode == 28, wrong.stdout
    assert "<~* 535 5.7.8 Authentication credentials invalid" in wrong.stdout

    stranger = relay.swaks(*relay.login("mallory@example.net", "guess"), "--from",
                           "mallory@example.net", "--to", "ana@example.org", data=message)
    assert "<~* 535 5.7.8" in stranger.stdout

    forged = relay.swaks(*relay.login(dana), "--from", "ceo@example.com",
                         "--to", "ana@example.org", data=message)
    assert forged.returncode == 23, forged.stdout
    assert "<~* 553 5.7.1 Sender address not allowed" in forged.stdout

    other_agent = relay.swaks(*relay.login(dana), "--from", "sam@example.com",
                              "--to", "ana@example.org", data=message)
    assert "<~* 553 5.7.1" in other_agent.stdout, "not even a colleague's address"

    forged_header = relay.swaks(
        *relay.login(dana), "--from", dana, "--to", "ana@example.org",
        data=message.replace(b"From: Dana Whitfield <dana@example.com>",
                             b"From: The CEO <ceo@example.com>"))
    assert "<~* 550-5.7.1 The From header must be your own address" in forged_header.stdout
    assert f"<~* 550 5.7.1 From: write from {dana} or support@example.com" \
        in forged_header.stdout, "the reply says which From to use"

    # Before STARTTLS, AUTH is neither offered nor accepted.
    plain = relay.swaks(*relay.login(dana), "--from", dana, "--to", "ana@example.org",
                        data=message, tls=False)
    assert plain.returncode != 0 and "235" not in plain.stdout
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as client:
        client.ehlo("client.example.com")
        assert not client.has_extn("auth")
        assert client.has_extn("starttls")
        code, text = client.docmd("AUTH", "PLAIN AGRhbmFAZXhhbXBsZS5jb20AcHc=")
        assert (code, text) == (530, b"Must issue a STARTTLS command first")
        assert client.docmd("MAIL", "FROM:<dana@example.com>")[0] == 530

    # The certificate is really checked: a client trusting another CA does not get in.
    other_ca = make_tls_files(relay.workdir / "other-ca").ca_pem_path
    untrusted = relay.swaks(*relay.login(dana), "--from", dana, "--to", "ana@example.org",
                            data=message, ca=other_ca)
    assert untrusted.returncode != 0 and "235" not in untrusted.stdout

    good = relay.swaks(*relay.login(dana), "--from", "support@example.com",
                       "--to", "ana@example.org",
                       data=message.replace(b"From: Dana Whitfield <dana@example.com>",
                                            b"From: Example Support <support@example.com>"))
    assert good.returncode == 0, good.stdout
    [sent] = relay.upstream.wait_for_count(1, timeout=10)
    assert sent.mail_from == "support@example.com", "the support address is allowed"
    log = relay.daemon.log()
    assert "event=login_failed" in log and "event=sender_refused" in log
    assert "not the password" not in log and "guess" not in log


def test_a_mistyped_command_is_refused_with_its_problem_and_nothing_happens(
        relay: Relay, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """#pendng through the relay: a 554 whose lines name it, so the client keeps the draft;
    nothing is recorded, sent on or mailed. Corrected, the commands alone are applied."""
    original = customer_mail(1, addr="ana@example.org", subject="Charged twice")
    dovecot.append(original)
    smtp_peer.wait_for_count(1, timeout=10)
    [waiting] = relay.threads()
    agent = next(e for e, n in NAMES.items() if n == waiting["agent"])
    typo = relay.swaks(*relay.login(agent), "--from", agent, "--to", "ana@example.org",
                       data=agent_reply(original, agent, "#pendng\n\nHello Ana, soon.\n"))
    assert typo.returncode != 0, typo.stdout
    assert "<~* 554-5.6.0 Not sent, nothing recorded: the commands at the top" in typo.stdout
    assert "5.6.0 #pendng: unknown command; the commands are #pending" \
        in typo.stdout, typo.stdout
    reply_lines = [line for line in typo.stdout.splitlines() if line.startswith("<~* 554")]
    assert all(len(line) <= 100 and line.isascii() for line in reply_lines), reply_lines
    store = relay.daemon.store()
    try:
        assert [m.mailbox for m in store.messages()] == ["INBOX"], "nothing recorded"
        assert [i.kind for i in store.outbox()] == ["ack"], "nothing queued"
    finally:
        store.close()
    assert relay.threads()[0]["state"] == "awaiting_agent"

    fixed = relay.swaks(*relay.login(agent), "--from", agent, "--to", "ana@example.org",
                        data=agent_reply(original, agent, "#pending\n"))
    assert fixed.returncode == 0, fixed.stdout
    assert "<~  250 2.0.0 Commands applied, nothing to send" in fixed.stdout
    assert relay.threads()[0]["state"] == "awaiting_customer"
    assert relay.upstream.messages == [] and len(smtp_peer.messages) == 1


def test_a_reply_to_the_client_set_is_kept(relay: Relay, dovecot: Dovecot,
                                          smtp_peer: SmtpPeer) -> None:
    """An agent's own Reply-To goes upstream as it is, and no second one is added."""
    original = customer_mail(1, addr="ana@example.org", subject="Charged twice")
    dovecot.append(original)
    smtp_peer.wait_for_count(1, timeout=10)
    agent = "dana@example.com"
    done = relay.swaks(*relay.login(agent), "--from", agent, "--to", "ana@example.org",
                       data=agent_reply(original, agent, "Hello Ana.",
                                        Reply_To="Billing <billing@example.com>"))
    assert done.returncode == 0, done.stdout
    [sent] = relay.upstream.wait_for_count(1, timeout=10)
    assert sent.message.get_all("Reply-To") == ["Billing <billing@example.com>"]
