"""Recorded messages and mailbox cursors name the IMAP account: two accounts' INBOX with one
UIDVALIDITY are two sources, and what was recorded before accounts were named is adopted by
its account (`tests.store.test_migrations` upgrades a desk); on SQLite and on PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from mailbridge.store.db import Store
from mailbridge.store.tables import Message
from tests.outbox import T0

SUPPORT = "support@example.com@imap.example.com:993"
BILLING = "billing@example.com@imap.example.com:993"


def _message(account: str, uidvalidity: int, uid: int, **extra: Any) -> dict[str, Any]:
    return {"source": f"INBOX/{uidvalidity}:{uid}", "account": account, "mailbox": "INBOX",
            "uidvalidity": uidvalidity, "uid": uid, "message_id": None, "sender": "a@x",
            "subject": "", "received_at": T0, "recorded_at": T0, "size": 1,
            "thread_id": None, "action": "ignore", "rule": "robot_sender", "reason": "",
            "defects": "", **extra}


def _recorded(store: Store, account: str, uidvalidity: int, uids: range) -> list[int]:
    with store.transaction() as tx:
        return [uid for uid in uids if tx.source_recorded(account, "INBOX", uidvalidity, uid)]


def test_one_uid_of_two_accounts_inboxes_is_two_messages(store: Store) -> None:
    """UID 1 of support@'s INBOX recorded is not UID 1 of billing@'s with the same
    UIDVALIDITY; both are recorded, and each only once."""
    with store.transaction() as tx:
        assert not tx.source_recorded(SUPPORT, "INBOX", 7, 1)
        tx.insert(Message, **_message(SUPPORT, 7, 1))
        assert tx.source_recorded(SUPPORT, "INBOX", 7, 1)
        assert not tx.source_recorded(BILLING, "INBOX", 7, 1)
    assert _recorded(store, BILLING, 7, range(1, 3)) == []
    with store.transaction() as tx:
        tx.insert(Message, **_message(BILLING, 7, 1))
    assert _recorded(store, SUPPORT, 7, range(1, 3)) == [1]
    assert _recorded(store, BILLING, 7, range(1, 3)) == [1]
    with pytest.raises(IntegrityError), store.transaction() as tx:
        tx.insert(Message, **_message(BILLING, 7, 1))
    assert len(store.messages()) == 2


def test_what_was_recorded_before_accounts_is_adopted_by_its_folder_and_uidvalidity(
        store: Store) -> None:
    """Rows that name no account become the account's whose folder has their UIDVALIDITY,
    the cursor with them unless the account has its own; once, and never another's."""
    with store.transaction() as tx:
        for uidvalidity, uid in ((7, 1), (7, 2), (6, 1)):
            tx.insert(Message, **_message("", uidvalidity, uid))
        tx.advance_cursor("", "INBOX", 7, 2, T0)
    assert store.adopt_unnamed(BILLING, "INBOX", 8) == 0
    assert store.cursor(BILLING, "INBOX") is None
    assert store.adopt_unnamed(SUPPORT, "INBOX", 7) == 2
    assert store.cursor(SUPPORT, "INBOX") == (7, 2)
    assert store.cursor("", "INBOX") is None
    assert _recorded(store, SUPPORT, 7, range(1, 4)) == [1, 2]
    assert store.adopt_unnamed(SUPPORT, "INBOX", 7) == 0
    assert store.adopt_unnamed(BILLING, "INBOX", 7) == 0
    assert _recorded(store, BILLING, 7, range(1, 4)) == []
    assert sorted((m.account, m.uidvalidity, m.uid) for m in store.messages()) == [
        ("", 6, 1), (SUPPORT, 7, 1), (SUPPORT, 7, 2)]


def test_an_account_keeps_its_own_cursor_and_its_own_rows(store: Store) -> None:
    """An account that has a cursor of its own keeps it; an unnamed row of a UID it also
    recorded stays unnamed instead of breaking the unique source."""
    with store.transaction() as tx:
        tx.insert(Message, **_message("", 7, 1))
        tx.insert(Message, **_message(SUPPORT, 7, 1))
        tx.insert(Message, **_message("", 7, 2))
        tx.advance_cursor("", "INBOX", 7, 2, T0)
        tx.advance_cursor(SUPPORT, "INBOX", 7, 5, T0)
    assert store.adopt_unnamed(SUPPORT, "INBOX", 7) == 1
    assert store.cursor(SUPPORT, "INBOX") == (7, 5)
    assert sorted((m.account, m.uid) for m in store.messages()) == [
        ("", 1), (SUPPORT, 1), (SUPPORT, 2)]


def test_cursor_only_moves_forward(store: Store) -> None:
    """The mailbox cursor keeps the highest UID and resets on a new UIDVALIDITY; another
    account's INBOX, with the same UIDVALIDITY, has a cursor of its own."""
    assert store.cursor(SUPPORT, "INBOX") is None
    for uid in (5, 3, 9):
        with store.transaction() as tx:
            tx.advance_cursor(SUPPORT, "INBOX", 100, uid, T0)
            tx.advance_cursor(BILLING, "INBOX", 100, uid - 2, T0)
    assert store.cursor(SUPPORT, "INBOX") == (100, 9)
    assert store.cursor(BILLING, "INBOX") == (100, 7)
    store.reset_cursor(SUPPORT, "INBOX", 200, 4, T0)
    assert store.cursor(SUPPORT, "INBOX") == (200, 4)
    assert store.cursor(BILLING, "INBOX") == (100, 7)
