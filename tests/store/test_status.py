"""`mailbridge status` on each backend: instances, mailbox watchers, outbox and next deadline."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from mailbridge.cli import main
from mailbridge.cli.status import EXIT_UNWATCHED, gather
from mailbridge.clock import SystemClock
from mailbridge.config import load_config
from mailbridge.daemon.membership import Membership
from mailbridge.store.db import Store
from mailbridge.store.tables import OutboxItem, Thread
from tests.configs import MINIMAL
from tests.hosts import BOOT_2, CLONE, host_files


def _config(tmp_path: Path, store_url: str) -> Path:
    path = tmp_path / "mailbridge.toml"
    path.write_text(f"""
{MINIMAL}[imap]
host = "127.0.0.1"
username = "support@example.com"
password = "x"
sent_folders = ["Sent"]
[store]
url = "{store_url}"
lease_timeout = "20s"
[daemon]
state_dir = "{tmp_path}"
""")
    return path


def _account(config: Path) -> str:
    imap = load_config(config).imap
    assert imap is not None
    return imap.account


def test_status_shows_instances_watchers_outbox_and_next_deadline(
        store: Store, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two instances, one watching both mailboxes; an ack pending and one of unknown outcome;
    a deadline ahead."""
    config = _config(tmp_path, store_url)
    account = _account(config)
    clock = SystemClock()
    now = clock.now()
    here = Membership(store, clock, mailboxes=["INBOX", "Sent"],
                      lease_timeout=timedelta(seconds=20), synced=lambda m: now,
                      account=account)
    here.join()
    here.tick()  # records the watchers' last sync on the leases
    peer = Membership(store, clock, mailboxes=["INBOX", "Sent"],
                      lease_timeout=timedelta(seconds=20), host="other-host", account=account,
                      files=host_files(tmp_path / "other", machine=CLONE, boot=BOOT_2))
    peer.join()
    due = now + timedelta(hours=3)
    with store.transaction() as tx:
        tx.add(Thread(id="ABCDEF", created_at=now, customer="a@x", agent_name="D",
                      agent_email="d@x", first_response_due=due, next_due_at=due))
        tx.add(OutboxItem(thread_id="ABCDEF", kind="ack", mailbox="INBOX", message_id="<a@x>",
                          envelope_from="", recipient="a@x", body=b"x", next_attempt_at=now,
                          created_at=now, arrived_at=now))
        tx.add(OutboxItem(thread_id="GHIJKL", kind="ack", mailbox="INBOX", message_id="<b@x>",
                          envelope_from="", recipient="b@x", body=b"x", next_attempt_at=now,
                          created_at=now, arrived_at=now, state="unknown"))
        tx.advance_cursor(_account(config), "INBOX", 9, 41, now)
        tx.event("ABCDEF", now, "ack_bounced", "a delivery failure came back about our mail")

    status = gather(store, load_config(config), clock.now())
    by_id = {i.id: i for i in status.instances}
    assert by_id[here.id].mailboxes == ("INBOX", "Sent") and by_id[here.id].state == "alive"
    assert by_id[peer.id].mailboxes == () and not by_id[peer.id].this_host
    assert (by_id[peer.id].machine_id, by_id[peer.id].boot_id) == (CLONE, BOOT_2)
    inbox = status.mailboxes[0]
    assert (inbox.mailbox, inbox.holder, inbox.last_uid) == ("INBOX", here.id, 41)
    assert inbox.last_sync is not None and abs(inbox.last_sync - now) < timedelta(seconds=1)
    assert (status.outbox_pending, status.next_deadline_thread) == (1, "ABCDEF")
    assert (status.outbox_failed, status.outbox_unknown) == (0, 1)
    assert status.next_deadline == due and status.unwatched == []
    assert status.bounced == ("ABCDEF",)

    assert main(["status", "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert f"{here.id}" in text and "<- this instance" in text
    assert f"other-host:{peer.pid} machine {CLONE[:8]} boot {BOOT_2[:8]}  alive" in text
    assert "INBOX: watched by" in text and "last UID 41" in text
    assert "outbox: 1 pending, 0 sending, 0 failed, 1 unknown" in text
    assert "thread ABCDEF" in text
    assert "bounced: mail to the customer of 1 open threads came back (ABCDEF)" in text

    here.leave()
    assert main(["status", "--config", str(config), "--json"]) == EXIT_UNWATCHED
    data = json.loads(capsys.readouterr().out)
    assert data["unwatched"] == ["INBOX", "Sent"] and data["outbox_unknown"] == 1
    assert data["bounced"] == ["ABCDEF"]
    assert {i["id"]: i["state"] for i in data["instances"]}[here.id] == "stopped"


def test_status_of_a_fresh_store_says_nothing_runs(
        store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before any instance ran, status names the unwatched mailboxes and exits 3."""
    Store.open(store_url).close()  # created, as `run` creates it before it registers
    assert main(["status", "--config", str(_config(tmp_path, store_url))]) == EXIT_UNWATCHED
    text = capsys.readouterr().out
    assert "none has run on this store yet" in text
    assert "warning: no live instance watches INBOX" in text


def test_status_shows_what_a_live_instance_reports_degraded(
        store: Store, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The problems an instance reports with its heartbeat are printed with what to do, and
    listed in --json; once it stops, or reports none, they are gone."""
    config = _config(tmp_path, store_url)
    problems = ["oauth2 (mailbox INBOX, sender): the OAuth2 grant was refused (invalid_grant)"
                f" ...: run `mailbridge oauth2-login --config {config}` again"]
    here = Membership(store, SystemClock(), mailboxes=["INBOX", "Sent"],
                      lease_timeout=timedelta(seconds=20), problems=lambda: list(problems),
                      account=_account(config))
    here.join()
    assert main(["status", "--config", str(config)]) == 0
    assert f"degraded: {here.id}: {problems[0]}\n" in capsys.readouterr().out
    main(["status", "--config", str(config), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert data["degraded"] == [{"instance": here.id, "problem": problems[0]}]
    problems.clear()
    here.tick()
    assert main(["status", "--config", str(config)]) == 0
    assert "degraded" not in capsys.readouterr().out
    problems.append("oauth2 (sender): ...")
    here.tick()
    here.leave()
    main(["status", "--config", str(config)])
    assert "degraded" not in capsys.readouterr().out  # a stopped instance reports nothing


def test_status_names_another_accounts_mailbox_with_its_account(
        store: Store, store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An instance of another account on the same store watches its own INBOX: status shows
    this account's INBOX by its name and the other's with its account (no password), and
    warns about each one nobody watches."""
    config = _config(tmp_path, store_url)
    clock = SystemClock()
    here = Membership(store, clock, mailboxes=["INBOX", "Sent"],
                      lease_timeout=timedelta(seconds=20),
                      account=_account(config))
    other = Membership(store, clock, mailboxes=["INBOX"], lease_timeout=timedelta(seconds=20),
                       account="billing@example.com@127.0.0.1:993")
    assert here.join().gained == {"INBOX", "Sent"}
    assert other.join().gained == {"INBOX"}
    assert main(["status", "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert f"  INBOX: watched by {here.id}" in text
    assert f"  INBOX of billing@example.com@127.0.0.1:993: watched by {other.id}" in text
    assert "mailboxes: INBOX of billing@example.com@127.0.0.1:993  " in text
    assert "password" not in text
    main(["status", "--config", str(config), "--json"])
    rows = {(m["mailbox"], m["account"]) for m in json.loads(capsys.readouterr().out)["mailboxes"]}
    assert rows == {("INBOX", "support@example.com@127.0.0.1:993"),
                    ("Sent", "support@example.com@127.0.0.1:993"),
                    ("INBOX", "billing@example.com@127.0.0.1:993")}
    other.leave()
    here.leave()
    assert main(["status", "--config", str(config), "--json"]) == EXIT_UNWATCHED
    assert json.loads(capsys.readouterr().out)["unwatched"] == ["INBOX", "Sent"]
