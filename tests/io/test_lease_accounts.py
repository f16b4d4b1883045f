"""Two IMAP accounts on one PostgreSQL store: each account's INBOX is watched by one
instance of that account, instead of one "INBOX" lease shared by both, and the messages
recorded and the cursors kept name the account, so two INBOXes with one UIDVALIDITY (and so
the same UIDs) are never taken for one."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from email import message_from_bytes
from email.utils import getaddresses
from pathlib import Path
from typing import Any

import pytest

from mailbridge.store import peers
from tests.daemon import REPO, Daemon, write_config
from tests.mails import customer_mail
from tests.servers import Dovecot, SmtpPeer, wait_for

pytestmark = pytest.mark.slow


class BillingDovecot(Dovecot):
    """A second mail server, for the billing@ account."""

    username = "billing@example.com"


@pytest.fixture
def billing(tmp_path: Path, dovecot: Dovecot) -> Iterator[Dovecot]:
    """A second mail server whose INBOX and Sent have the UIDVALIDITY of `dovecot`'s, as two
    servers' folders made in one second have: only the account tells their UIDs apart."""
    with BillingDovecot(tmp_path / "billing-dovecot") as server:
        for folder in ("INBOX", "Sent"):
            server.set_uidvalidity(dovecot.uidvalidity(folder), folder)
        yield server


def _status(config: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "mailbridge", "status", "--config", str(config),
                           "--json"], capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode in (0, 3), done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def test_two_accounts_on_one_store_each_watch_their_inbox(
        tmp_path: Path, postgres_url: str, dovecot: Dovecot, billing: Dovecot,
        smtp_peer: SmtpPeer) -> None:
    """support@ (two instances) and billing@ (one) share a store: mail to both INBOXes is
    acknowledged, support@'s INBOX is watched by one of its two instances, status names each
    account's mailbox (with no password), and metric labels name the bare folder."""
    support_config = write_config(tmp_path / "support-1", dovecot, smtp_peer,
                                  store_url=postgres_url)
    twin_config = write_config(tmp_path / "support-2", dovecot, smtp_peer,
                               store_url=postgres_url)
    billing_config = write_config(tmp_path / "billing", billing, smtp_peer,
                                  store_url=postgres_url)
    with Daemon(support_config) as support, Daemon(billing_config) as bill, \
            Daemon(twin_config) as twin:
        dovecot.deliver(customer_mail(1, addr="ana@example.org", subject="Support question"),
                        sender="ana@example.org")
        billing.deliver(customer_mail(2, addr="ben@example.org", subject="Invoice question"),
                        sender="ben@example.org")
        acks = smtp_peer.wait_for_count(2, timeout=30)
        assert sorted(rcpt for ack in acks for rcpt in ack.rcpt_tos) == [
            "ana@example.org", "ben@example.org"]

        store = support.store()
        try:
            inbox = {lease.account: lease.holder for lease in peers.leases(store)
                     if lease.mailbox == "INBOX"}
        finally:
            store.close()
        support_account = f"support@example.com@127.0.0.1:{dovecot.port}"
        billing_account = f"billing@example.com@127.0.0.1:{billing.port}"
        assert set(inbox) == {support_account, billing_account}
        status = _status(support_config)
        holders = {i["id"]: i["mailboxes"] for i in status["instances"]}
        # One support instance holds its INBOX and Sent; the twin of that account none.
        assert sorted(map(sorted, holders.values())) == [
            [], ["INBOX", "Sent"], [f"INBOX of {billing_account}", f"Sent of {billing_account}"]]
        rows = {(m["mailbox"], m["account"]): m["holder"]
                for m in status["mailboxes"]}
        assert rows[("INBOX", support_account)] == inbox[support_account]
        assert rows[("INBOX", billing_account)] == inbox[billing_account]
        assert "password" not in json.dumps(status)

        for daemon in (support, twin, bill):
            text = daemon.metrics()
            assert "billing@example.com" not in text and "support@example.com" not in text
        watching = [d for d in (support, twin)
                    if d.metric("mailbridge_imap_connected", mailbox="INBOX") == 1]
        assert len(watching) == 1
        assert bill.metric("mailbridge_imap_connected", mailbox="INBOX") == 1

        # The instance watching support@'s INBOX stops: its twin takes over, at once.
        watching[0].stop()
        other = twin if watching[0] is support else support
        wait_for(lambda: other.metric("mailbridge_imap_connected", mailbox="INBOX") == 1,
                 timeout=30, message=lambda: other.log()[-3000:])
        dovecot.deliver(customer_mail(3, addr="cai@example.org", subject="Another question"),
                        sender="cai@example.org")
        assert "cai@example.org" in smtp_peer.wait_for_count(3, timeout=30)[-1].rcpt_tos


def _ack_recipients(peer: SmtpPeer) -> list[str]:
    return sorted(rcpt for ack in peer.messages for rcpt in ack.rcpt_tos)


def _copied_to(server: Dovecot, count: int) -> list[str]:
    """The recipients of the `count` copies in the server's Sent folder, once there."""
    wait_for(lambda: len(server.uids("Sent")) >= count, timeout=30)
    return sorted(addr for uid in server.uids("Sent") for _, addr in getaddresses(
        message_from_bytes(server.fetch_raw(uid, "Sent")).get_all("To", [])))


def test_two_accounts_inboxes_with_one_uidvalidity_are_kept_apart(
        tmp_path: Path, postgres_url: str, dovecot: Dovecot, billing: Dovecot,
        smtp_peer: SmtpPeer) -> None:
    """support@ and billing@ share a store and one INBOX UIDVALIDITY: billing@'s UID 1 is
    acknowledged after support@'s UID 1 was, and after each daemon restarts (mail having come
    meanwhile), each goes on from its own cursor: every customer gets exactly one ack, and
    its copy is in the Sent folder of the account the customer wrote to."""
    validity = dovecot.uidvalidity()
    assert billing.uidvalidity() == validity
    support_config = write_config(tmp_path / "support", dovecot, smtp_peer,
                                  store_url=postgres_url, copy_sent=True)
    billing_config = write_config(tmp_path / "billing", billing, smtp_peer,
                                  store_url=postgres_url, copy_sent=True)
    support_account = f"support@example.com@127.0.0.1:{dovecot.port}"
    billing_account = f"billing@example.com@127.0.0.1:{billing.port}"

    def deliver(server: Dovecot, number: int, customer: str) -> None:
        server.deliver(customer_mail(number, addr=f"{customer}@example.org"),
                       sender=f"{customer}@example.org")

    with Daemon(support_config) as support, Daemon(billing_config) as bill:
        deliver(dovecot, 1, "ana")
        deliver(dovecot, 2, "cai")
        smtp_peer.wait_for_count(2, timeout=30)
        deliver(billing, 3, "ben")  # UID 1 of billing@'s INBOX, as ana's is of support@'s
        smtp_peer.wait_for_count(3, timeout=30)
        assert _ack_recipients(smtp_peer) == [
            "ana@example.org", "ben@example.org", "cai@example.org"]

        bill.stop()  # billing@'s cursor is at UID 1, support@'s at 2
        deliver(billing, 4, "dan")  # billing@'s UID 2, while no one watches
        bill.start()
        smtp_peer.wait_for_count(4, timeout=30)
        support.stop()
        deliver(dovecot, 5, "eve")  # support@'s UID 3
        support.start()
        smtp_peer.wait_for_count(5, timeout=30)
        assert _copied_to(dovecot, 3) == ["ana@example.org", "cai@example.org",
                                          "eve@example.org"]
        assert _copied_to(billing, 2) == ["ben@example.org", "dan@example.org"]

        store = support.store()
        try:
            recorded = sorted((m.account, m.uid) for m in store.messages()
                              if m.mailbox == "INBOX")
            cursors = {account: store.cursor(account, "INBOX")
                       for account in (support_account, billing_account, "")}
        finally:
            store.close()
    assert _ack_recipients(smtp_peer) == [
        "ana@example.org", "ben@example.org", "cai@example.org", "dan@example.org",
        "eve@example.org"]
    assert recorded == [(billing_account, 1), (billing_account, 2), (support_account, 1),
                        (support_account, 2), (support_account, 3)]
    assert cursors == {support_account: (validity, 3), billing_account: (validity, 2), "": None}
