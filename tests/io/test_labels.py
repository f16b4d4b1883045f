"""Gmail's labels on a real Dovecot: one message in two watched folders gets one ack.

On Gmail a label is a folder, and one message can carry several; mailbridge watches the
INBOX and the Sent folders, each with a watcher of its own, so the same Message-ID can
arrive twice, at the same moment, from two threads. Known Message-IDs are recorded with
the thread in the message's transaction (`daemon.ingest`), so the second copy is recorded
as a duplicate and acknowledged never.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.daemon import Daemon, write_config
from tests.mails import customer_mail
from tests.servers import Dovecot, SmtpPeer, wait_for

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_message_in_two_watched_folders_is_acknowledged_once(
        request: pytest.FixtureRequest, backend: str, tmp_path: Path, dovecot: Dovecot,
        smtp_peer: SmtpPeer) -> None:
    """Four customers' mails each delivered to the INBOX and, at the same time, appended to
    the watched Sent folder: four acks, one each; both copies of each are recorded, the
    one seen second as a duplicate. On SQLite and on PostgreSQL, where both watchers'
    transactions really run at once."""
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    config = write_config(tmp_path / "mb", dovecot, smtp_peer, store_url=url)
    customers = [f"label{n}@example.org" for n in range(4)]
    mails = {addr: customer_mail(n, addr=addr) for n, addr in enumerate(customers)}
    with Daemon(config) as daemon:
        wait_for(lambda: daemon.metric("mailbridge_imap_connected", mailbox="Sent") == 1,
                 timeout=20, message=daemon.log)

        def labelled(addr: str) -> None:
            dovecot.append(mails[addr], folder="Sent")

        appends = [threading.Thread(target=labelled, args=(addr,)) for addr in customers]
        for thread in appends:
            thread.start()
        for addr in customers:
            dovecot.deliver(mails[addr], sender=addr)
        for thread in appends:
            thread.join()
        store = daemon.store()
        try:
            wait_for(lambda: len(store.messages()) == 8, timeout=30,
                     message=lambda: f"recorded {len(store.messages())}; {daemon.log()}")
            recorded = store.messages()
        finally:
            store.close()
        wait_for(lambda: len(smtp_peer.messages) >= 4, timeout=15, message=daemon.log)
    assert Counter(r for m in smtp_peer.messages for r in m.rcpt_tos) == Counter(customers)
    by_id: dict[str | None, list[str]] = {}
    for message in recorded:
        by_id.setdefault(message.message_id, []).append(message.rule)
    assert len(by_id) == 4
    assert all(sorted(rules) == ["duplicate", "new_thread"] for rules in by_id.values()), by_id
    assert {m.mailbox for m in recorded} == {"INBOX", "Sent"}
