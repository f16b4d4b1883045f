"""SIGHUP reloads the configuration of a running `mailbridge run` (Dovecot in, aiosmtpd out):
what decides the next acknowledgement changes, a broken file changes nothing, and what only a
start can apply is named and kept."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from tests.daemon import Daemon, write_config
from tests.mails import customer_mail
from tests.servers import Dovecot, Received, SmtpPeer, wait_for

pytestmark = pytest.mark.slow

ACK = "Hello {{ greeting_name }}, {{ agent_name }} answers {{ due_words }}. {{ ref_tag }} VERSION\n"
URGENT = """
[[policies]]
name = "urgent"
priority = "high"
first_response = "1h"

[policies.match]
subject = ["(?i)urgent"]
"""


def reload(daemon: Daemon, outcome: str = "reloaded") -> None:
    """SIGHUP, then wait until the daemon logs the reload's `outcome` once more."""
    assert daemon.process is not None
    before = daemon.log().count(f"config event={outcome}")
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(lambda: daemon.log().count(f"config event={outcome}") > before, timeout=10,
             message=daemon.log)


def text(ack: Received) -> str:
    return str(ack.message.get_body(preferencelist=("plain",)).get_content())


def agent(ack: Received) -> str:
    return str(ack.message["From"].addresses[0].display_name.split(",")[0])


@pytest.fixture
def config(tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> Path:
    templates = tmp_path / "mb" / "templates" / "en"
    templates.mkdir(parents=True)
    (templates / "ack.txt.j2").write_text(ACK.replace("VERSION", "v1"), encoding="utf-8")
    return write_config(tmp_path / "mb", dovecot, smtp_peer,
                        extra='\n[templates]\ndir = "templates"\n')


def test_a_reload_changes_the_next_acknowledgement(
        config: Path, tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """Renamed agents, an edited template and a new policy decide the first mail after
    SIGHUP; systemd hears RELOADING=1 with MONOTONIC_USEC, then READY=1."""
    notify = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(notify))
        sock.settimeout(10)
        with Daemon(config, env={"NOTIFY_SOCKET": str(notify)}) as daemon:
            assert sock.recv(256) == b"READY=1"
            dovecot.append(customer_mail(1))
            [first] = smtp_peer.wait_for_count(1, timeout=10)
            assert agent(first) in ("Dana Whitfield", "Sam Okafor") and "v1" in text(first)
            before = daemon.metric("mailbridge_config_last_reload_success_timestamp_seconds")

            edited = config.read_text(encoding="utf-8").replace(
                "Dana Whitfield", "Dana Reyes").replace("Sam Okafor", "Samuel Okafor")
            config.write_text(edited + URGENT, encoding="utf-8")
            ack = config.parent / "templates" / "en" / "ack.txt.j2"
            ack.write_text(ACK.replace("VERSION", "v2"), encoding="utf-8")
            reload(daemon)
            reloading = sock.recv(256).decode()
            assert reloading.startswith("RELOADING=1\nMONOTONIC_USEC="), reloading
            assert int(reloading.rpartition("=")[2]) > 0
            assert sock.recv(256) == b"READY=1"

            dovecot.append(customer_mail(2, subject="URGENT: the site is down"))
            second = smtp_peer.wait_for_count(2, timeout=10)[1]
            assert agent(second) in ("Dana Reyes", "Samuel Okafor")
            assert "v2" in text(second) and agent(second) in text(second)
            assert daemon.metric("mailbridge_config_last_reload_successful") == 1
            assert daemon.metric(
                "mailbridge_config_last_reload_success_timestamp_seconds") > before
            assert daemon.metric("mailbridge_sla_target_business_seconds", sla="first_response",
                                 policy="urgent", priority="high") == 3600
            store = daemon.store()
            try:
                threads = {m.sender: m.thread_id for m in store.messages()}
                with store.transaction() as tx:
                    thread = tx.thread(threads["customer2@example.org"] or "")
                    assert thread is not None and thread.policy == "urgent"
            finally:
                store.close()
            assert "needs_restart" not in daemon.log()


def test_a_broken_file_changes_nothing(config: Path, dovecot: Dovecot,
                                       smtp_peer: SmtpPeer) -> None:
    """A reload of a file with problems logs each (file, key, reason), sets the metric to 0
    and keeps the running configuration; the mended file then applies."""
    with Daemon(config) as daemon:
        good = config.read_text(encoding="utf-8")
        broken = good.replace("Dana Whitfield", "Dana Reyes").replace(
            'first_response = "4h"', 'first_response = "four hours"')
        config.write_text(broken, encoding="utf-8")
        reload(daemon, "reload_refused")
        log = daemon.log()
        assert "event=reload_refused" in log and str(config) in log
        assert "[sla] first_response" in log and "four hours" in log
        assert daemon.metric("mailbridge_config_last_reload_successful") == 0
        assert daemon.healthy()
        dovecot.append(customer_mail(1))
        [ack] = smtp_peer.wait_for_count(1, timeout=10)
        assert agent(ack) in ("Dana Whitfield", "Sam Okafor")

        config.write_text(good.replace("Sam Okafor", "Samuel Okafor"), encoding="utf-8")
        reload(daemon)
        assert daemon.metric("mailbridge_config_last_reload_successful") == 1


def test_what_needs_a_restart_is_named_and_kept(
        config: Path, tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> None:
    """A new store url and IMAP timeout are logged as needing a restart and keep their old
    values, while the agents' names in the same file apply."""
    elsewhere = tmp_path / "elsewhere.sqlite3"
    with Daemon(config) as daemon:
        edited = config.read_text(encoding="utf-8").replace(
            daemon.store_url, f"sqlite:///{elsewhere}").replace(
            'read_timeout = "20s"', 'read_timeout = "25s"').replace(
            "Dana Whitfield", "Dana Reyes").replace("Sam Okafor", "Samuel Okafor")
        config.write_text(edited, encoding="utf-8")
        reload(daemon)
        [line] = [x for x in daemon.log().splitlines() if "event=needs_restart" in x]
        assert "[store] url" in line and "[imap] read_timeout" in line
        assert "[support]" not in line and "[[agents]]" not in line
        assert daemon.metric("mailbridge_config_last_reload_successful") == 1
        dovecot.append(customer_mail(1))
        [ack] = smtp_peer.wait_for_count(1, timeout=10)
        assert agent(ack) in ("Dana Reyes", "Samuel Okafor")
        store = daemon.store()  # the url the daemon started with
        try:
            assert [m.sender for m in store.messages()] == ["customer1@example.org"]
        finally:
            store.close()
        assert not elsewhere.exists()
