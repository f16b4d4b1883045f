"""Which sent mail waits for its copy in the Sent folder, and who appends it."""

from __future__ import annotations

import threading
from datetime import timedelta

from mailbridge.store.db import Store
from mailbridge.store.sent_copies import claim_copies, next_copy_time, record_copies
from mailbridge.store.tables import Message, OutboxItem
from tests.outbox import T0, outbox_item

LEASE = timedelta(minutes=5)
SINCE = T0 - timedelta(days=7)
SUPPORT = "support@example.com@imap.example.com:993"
BILLING = "billing@example.com@imap.example.com:993"


def _sent(store: Store, thread: str, *, kind: str = "ack", mailbox: str = "INBOX",
          minutes: int = 0, state: str = "sent") -> int:
    item = outbox_item(thread, kind=kind)
    item.mailbox, item.state = mailbox, state
    item.sent_at = T0 + timedelta(minutes=minutes) if state == "sent" else None
    with store.transaction() as tx:
        tx.session.add(item)
        tx.session.flush()
        assert item.id is not None
        return item.id


def _item(store: Store, item_id: int) -> OutboxItem:
    with store.transaction() as tx:
        found = tx.session.get(OutboxItem, item_id)
        assert found is not None
        return found


def test_only_what_customers_were_sent_is_claimed_in_the_order_it_went_out(
        store: Store) -> None:
    """Acks, status updates and a relayed reply's first row are claimed, oldest first; staff
    notices, other recipients' rows, unsent mail and mail older than the horizon are not."""
    late_ack = _sent(store, "A", minutes=3)
    update = _sent(store, "A", kind="update-1", mailbox="scheduler", minutes=2)
    relayed = _sent(store, "B", kind="relay-1-0", mailbox="relay", minutes=1)
    _sent(store, "B", kind="relay-1-1", mailbox="relay", minutes=1)
    _sent(store, "C", kind="nudge-1", mailbox="scheduler")
    _sent(store, "D", kind="command-error-1", mailbox="commands")
    _sent(store, "E", state="pending")
    _sent(store, "F", minutes=-8 * 24 * 60)

    now = T0 + timedelta(hours=1)
    claimed = claim_copies(store, now, since=SINCE, lease=LEASE, limit=10, account=SUPPORT)
    assert [c.id for c in claimed] == [relayed, update, late_ack]
    assert claimed[0].body == b"Subject: x\r\n\r\nx\r\n"
    assert claim_copies(store, now, since=SINCE, lease=LEASE, limit=10,
                        account=SUPPORT) == [], "claimed"
    assert next_copy_time(store, since=SINCE, account=SUPPORT) == now + LEASE


def test_appended_items_are_done_and_failed_ones_wait_for_their_retry(store: Store) -> None:
    """An appended item is never claimed again; a failed one comes back at its retry time,
    and a claim whose instance died comes back when its lease ends."""
    first, second = _sent(store, "A"), _sent(store, "B", minutes=1)
    now = T0 + timedelta(hours=1)
    claim_copies(store, now, since=SINCE, lease=LEASE, limit=10, account=SUPPORT)
    record_copies(store, [(first, now)], retry=[second], retry_at=now + timedelta(seconds=30))
    assert _item(store, first).appended_at == now
    assert next_copy_time(store, since=SINCE, account=SUPPORT) == now + timedelta(seconds=30)
    assert claim_copies(store, now + timedelta(seconds=29), since=SINCE, lease=LEASE,
                        limit=10, account=SUPPORT) == []
    [again] = claim_copies(store, now + timedelta(seconds=30), since=SINCE, lease=LEASE,
                           limit=10, account=SUPPORT)
    assert again.id == second
    later = now + timedelta(seconds=30) + LEASE
    assert [c.id for c in claim_copies(store, later, since=SINCE, lease=LEASE, limit=10,
                                       account=SUPPORT)] == [second], \
        "the lease of an instance that died ends"
    record_copies(store, [(second, later)])
    assert next_copy_time(store, since=SINCE, account=SUPPORT) is None


def test_two_instances_claiming_at_once_never_take_the_same_item(
        store_url: str, postgresql_only: None) -> None:
    """Two stores on one PostgreSQL database claim a backlog together: each item once."""
    stores = [Store.open(store_url), Store.open(store_url)]
    try:
        ids = {_sent(stores[0], f"T{n}", minutes=n) for n in range(60)}
        taken: list[list[int]] = [[], []]
        start = threading.Barrier(2)

        def claim_all(index: int) -> None:
            start.wait()
            while found := claim_copies(stores[index], T0 + timedelta(hours=1), since=SINCE,
                                        lease=LEASE, limit=3, account=SUPPORT):
                taken[index].extend(c.id for c in found)

        workers = [threading.Thread(target=claim_all, args=(i,)) for i in (0, 1)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        assert sorted(taken[0] + taken[1]) == sorted(ids)
        assert taken[0] and taken[1], "both instances took part"
    finally:
        for store in stores:
            store.close()


def test_each_account_copies_what_its_own_customers_were_sent(store: Store) -> None:
    """Of accounts sharing a store, each claims the copies of threads its mailbox started
    (and of those that name no account); never another account's, whose Sent folder they
    belong in."""
    for uid, (thread, account) in enumerate((("A", SUPPORT), ("B", BILLING), ("C", "")), 1):
        with store.transaction() as tx:
            tx.insert(Message, source="imap", account=account, mailbox="INBOX",
                      uidvalidity=7, uid=uid, sender="a@x", subject="", received_at=T0,
                      recorded_at=T0, size=1, thread_id=thread, action="acknowledge",
                      rule="new_thread", reason="", defects="")
    ours, theirs, unnamed = _sent(store, "A"), _sent(store, "B", minutes=1), _sent(store, "C")
    relayed = _sent(store, "B", kind="relay-1-0", mailbox="relay", minutes=2)
    now = T0 + timedelta(hours=1)
    assert next_copy_time(store, since=SINCE, account=SUPPORT) == T0
    assert [c.id for c in claim_copies(store, now, since=SINCE, lease=LEASE, limit=10,
                                       account=SUPPORT)] == [ours, unnamed]
    assert next_copy_time(store, since=SINCE, account=SUPPORT) == now + LEASE
    assert [c.id for c in claim_copies(store, now, since=SINCE, lease=LEASE, limit=10,
                                       account=BILLING)] == [theirs, relayed]
