"""Several instances on one store: leases, heartbeats, reaping, and claims under contention."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from mailbridge.clock import FakeClock, SystemClock
from mailbridge.config import ImapSettings, SmtpSettings, load_config
from mailbridge.config.values import Secret
from mailbridge.daemon.membership import Change, Membership
from mailbridge.daemon.sender import OutboxSender, RetryPolicy
from mailbridge.errors import ConfigError, StoreUnavailableError
from mailbridge.io.smtp_sender import SmtpTransport
from mailbridge.metrics.families import Metrics
from mailbridge.store import peers
from mailbridge.store.db import Store
from mailbridge.store.outbox import Finished
from tests.configs import MINIMAL
from tests.outbox import T0, outbox_item
from tests.servers import SmtpPeer

LEASE = timedelta(seconds=20)


def _instance(store: Store, name: str, *, at: datetime = T0, host: str = "h1",
              pid: int = 1) -> str:
    peers.register(store, peers.InstanceRow(name, host, pid, "test", at, at))
    return name


def test_a_lease_has_one_holder_until_it_expires(store: Store) -> None:
    """A held lease is refused to others, renewed by its holder, and free once expired."""
    assert peers.acquire(store, "INBOX", "a", T0, LEASE)
    assert not peers.acquire(store, "INBOX", "b", T0 + timedelta(seconds=5), LEASE)
    assert peers.renew(store, "a", {"INBOX": T0}, T0 + timedelta(seconds=15), LEASE) == {"INBOX"}
    assert not peers.acquire(store, "INBOX", "b", T0 + timedelta(seconds=30), LEASE)
    later = T0 + timedelta(seconds=36)
    assert peers.acquire(store, "INBOX", "b", later, LEASE)
    assert peers.renew(store, "a", {"INBOX": None}, later, LEASE) == set()
    [lease] = peers.leases(store)
    assert (lease.holder, lease.acquired_at, lease.synced_at) == ("b", later, T0)


def test_reaping_fails_a_dead_instances_sends_and_frees_its_leases(store: Store) -> None:
    """What a dead instance was sending is failed (never repeated); a live one's is kept."""
    dead, live = _instance(store, "dead"), _instance(store, "live")
    with store.transaction() as tx:
        for thread in ("AAAAAA", "BBBBBB"):
            tx.add(outbox_item(thread))
    assert store.claim_outbox(T0, claimer=dead) is not None
    assert store.claim_outbox(T0, claimer=live) is not None
    peers.acquire(store, "INBOX", dead, T0, LEASE)
    reaped = peers.reap(store, [dead], T0, "no heartbeat for 40s")
    assert (reaped.instances, reaped.leases, reaped.interrupted) == (1, 1, 1)
    states = {i.claimed_by: (i.state, i.last_error) for i in store.outbox()}
    assert states[live] == ("sending", "")
    assert states[dead][0] == "failed" and "no heartbeat" in states[dead][1]
    assert peers.acquire(store, "INBOX", live, T0, LEASE)
    [gone] = [i for i in peers.instances(store) if i.id == dead]
    assert gone.stopped_at == T0 and gone.stop_reason == "no heartbeat for 40s"


def test_a_restarted_instance_takes_over_at_once_and_a_killed_peer_after_the_timeout(
        store: Store, tmp_path: Path) -> None:
    """Restarted from the same state directory (its lock gone): at once; another instance,
    silent: within the lease timeout. Host names and PIDs play no part."""
    clock = FakeClock(T0)
    first = Membership(store, clock, mailboxes=["INBOX", "Sent"], lease_timeout=LEASE,
                       host="h1", pid=1, state_dir=tmp_path)
    assert first.join().gained == {"INBOX", "Sent"}
    assert first.lock is not None
    first.lock.release()  # what the kernel does when its process ends, however it ends
    again = Membership(store, clock, mailboxes=["INBOX", "Sent"], lease_timeout=LEASE,
                       host="h1", pid=1, state_dir=tmp_path)
    assert again.join().gained == {"INBOX", "Sent"}, "its predecessor there has ended"
    other = Membership(store, clock, mailboxes=["INBOX", "Sent"], lease_timeout=LEASE,
                       host="h1", pid=1)
    assert other.join().gained == frozenset()
    for _ in range(3):  # both alive: the holder renews, the other waits
        clock.advance(LEASE / 4)
        assert again.tick().lost == frozenset()
        assert other.tick().gained == frozenset()
    # `again` stops renewing (killed); `other` takes over within the lease timeout.
    waited = timedelta(0)
    while not other.held:
        clock.advance(LEASE / 4)
        waited += LEASE / 4
        other.tick()
    assert waited <= LEASE and other.held == {"INBOX", "Sent"}
    clock.advance(LEASE / 4)
    assert again.tick().lost == {"INBOX", "Sent"}, "a stalled holder learns it lost them"


def test_a_clean_shutdown_hands_over_at_once(store: Store) -> None:
    """Leaving releases the leases: a peer takes them at its next tick."""
    clock = FakeClock(T0)
    first = Membership(store, clock, mailboxes=["INBOX"], lease_timeout=LEASE, host="h1")
    second = Membership(store, clock, mailboxes=["INBOX"], lease_timeout=LEASE, host="h2")
    first.join()
    assert second.join().gained == frozenset()
    first.leave()
    assert second.tick().gained == {"INBOX"}
    [left] = [i for i in peers.instances(store) if i.id == first.id]
    assert left.stop_reason == "shutdown"


@pytest.mark.usefixtures("postgresql_only")
def test_concurrent_claimers_never_take_one_item_twice(store_url: str) -> None:
    """Four instances claiming at once with SKIP LOCKED take every item exactly once."""
    setup = Store.open(store_url)
    with setup.transaction() as tx:
        for n in range(200):
            tx.add(outbox_item(f"T{n:05d}"))
    stores = [Store.open(store_url) for _ in range(4)]
    claimed: list[list[int]] = [[] for _ in stores]
    start = threading.Barrier(len(stores))

    def claim(index: int) -> None:
        start.wait()
        finished = None
        while (item := stores[index].claim_outbox(T0, finished=finished,
                                                  claimer=f"i{index}")) is not None:
            claimed[index].append(item.id)
            finished = Finished(item.id, "sent", T0)
        if finished is not None:
            stores[index].finish_outbox(finished)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    every = [item for mine in claimed for item in mine]
    assert len(every) == len(set(every)) == 200, "no item claimed twice, none left"
    assert sum(1 for mine in claimed if mine) >= 2, "the claimers really ran side by side"
    assert {i.state for i in setup.outbox()} == {"sent"}
    by = {i.id: i.claimed_by for i in setup.outbox()}
    assert all(by[item] == f"i{index}" for index, mine in enumerate(claimed) for item in mine)
    for opened in (setup, *stores):
        opened.close()


@pytest.mark.usefixtures("postgresql_only")
def test_concurrent_lease_takers_get_one_holder(store_url: str) -> None:
    """Eight instances racing for one free mailbox: exactly one gets it."""
    stores = [Store.open(store_url) for _ in range(8)]
    start = threading.Barrier(len(stores))
    won: list[str] = []

    def take(index: int) -> None:
        start.wait()
        if peers.acquire(stores[index], "INBOX", f"i{index}", T0, LEASE):
            won.append(f"i{index}")

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(won) == 1
    assert [lease.holder for lease in peers.leases(stores[0])] == won
    for opened in stores:
        opened.close()


def test_the_lease_timeout_is_configured_in_the_store_section(tmp_path: Path) -> None:
    """`[store] lease_timeout` defaults to 30 s and must be a positive duration."""
    def load(extra: str) -> timedelta:
        path = tmp_path / "mailbridge.toml"
        path.write_text(f"""
{MINIMAL}[store]
url = "sqlite:///{tmp_path}/s.sqlite3"
{extra}
[daemon]
state_dir = "{tmp_path}"
""")
        return load_config(path).store.lease_timeout

    assert load("") == timedelta(seconds=30)
    assert load('lease_timeout = "2m"') == timedelta(minutes=2)
    with pytest.raises(ConfigError) as caught:
        load('lease_timeout = "0s"')
    assert any(p.startswith("[store] lease_timeout") for p in caught.value.problems)


@pytest.mark.usefixtures("postgresql_only")
def test_an_idle_sender_finds_mail_another_instance_queued(store_url: str) -> None:
    """Nothing wakes a sender for mail another instance queues; with `idle_poll` it looks
    again by itself, so a second instance helps with a backlog."""
    other, ours = Store.open(store_url), Store.open(store_url)
    with SmtpPeer() as peer:
        transport = SmtpTransport(SmtpSettings(host=peer.host, port=peer.port, tls="none"),
                                  local_hostname="test.example")
        sender = OutboxSender(ours, transport, SystemClock(),
                              Metrics(CollectorRegistry(), ["INBOX"]), RetryPolicy(),
                              claimer="ours", idle_poll=0.2)

        asleep = threading.Event()
        next_outbox_time = ours.next_outbox_time

        def looked_before_sleeping() -> datetime | None:  # the sender asks, then sleeps
            found = next_outbox_time()
            asleep.set()
            return found

        ours.next_outbox_time = looked_before_sleeping  # type: ignore[method-assign]

        async def scenario() -> None:
            stopping = asyncio.Event()
            task = asyncio.create_task(sender.run(stopping))
            assert await asyncio.to_thread(asleep.wait, 10), "the sender found nothing to do"
            now = datetime.now(UTC)
            with other.transaction() as tx:
                for n in range(3):
                    tx.add(outbox_item(f"T{n}", due=now, recipient=f"c{n}@example.org"))
            await asyncio.to_thread(peer.wait_for_count, 3, 10.0)
            stopping.set()
            await asyncio.wait_for(task, 10)

        asyncio.run(scenario())
        assert sorted(r for m in peer.messages for r in m.rcpt_tos) == [
            "c0@example.org", "c1@example.org", "c2@example.org"]
    assert {(i.state, i.claimed_by) for i in other.outbox()} == {("sent", "ours")}
    other.close()
    ours.close()


def test_leases_are_per_account_and_the_key_holds_no_secret(store: Store) -> None:
    """Two accounts' INBOX are two leases; one account's is one, whichever instance of it
    asks; the key is the same for every instance of an account and names no password."""
    def imap(username: str, host: str, port: int = 993) -> ImapSettings:
        return ImapSettings(host=host, port=port, username=username, password=Secret("hunter2"))

    support = imap("support@example.com", "IMAP.example.com").account
    assert support == "support@example.com@imap.example.com:993"
    billing = imap("billing@example.com", "imap.example.com").account
    other_host = imap("support@example.com", "imap.example.com", 1993).account
    assert len({support, billing, other_host}) == 3
    assert imap("u", "::1", 143).account == "u@[::1]:143"
    assert "hunter2" not in support

    assert peers.acquire(store, "INBOX", "a", T0, LEASE, account=support)
    assert peers.acquire(store, "INBOX", "b", T0, LEASE, account=billing)
    assert peers.acquire(store, "INBOX", "c", T0, LEASE, account=other_host)
    assert not peers.acquire(store, "INBOX", "d", T0, LEASE, account=support)
    assert peers.renew(store, "a", {"INBOX": T0}, T0, LEASE, account=billing) == set()
    assert peers.renew(store, "a", {"INBOX": T0}, T0, LEASE, account=support) == {"INBOX"}
    peers.release(store, "a", ["INBOX"], account=billing)  # not its lease there: kept
    assert {(x.account, x.holder) for x in peers.leases(store)} == {
        (support, "a"), (billing, "b"), (other_host, "c")}
    peers.release(store, "a", ["INBOX"], account=support)
    assert peers.acquire(store, "INBOX", "d", T0, LEASE, account=support)


def test_instances_of_two_accounts_each_watch_their_inbox(store: Store) -> None:
    """Instances of different accounts on one store each hold their INBOX; a second
    instance of an account waits for the first, and takes over once it leaves."""
    clock = FakeClock(T0)
    support = [Membership(store, clock, mailboxes=["INBOX"], lease_timeout=LEASE,
                          account="support@example.com@127.0.0.1:993") for _ in range(2)]
    billing = Membership(store, clock, mailboxes=["INBOX"], lease_timeout=LEASE,
                         account="billing@example.com@127.0.0.1:993")
    assert support[0].join().gained == {"INBOX"}
    assert billing.join().gained == {"INBOX"}
    assert support[1].join().gained == frozenset()
    support[0].leave()
    assert support[1].tick().gained == {"INBOX"}
    assert billing.tick() == Change()


@pytest.mark.usefixtures("postgresql_only")
def test_a_frozen_holder_does_not_keep_its_lease(store_url: str) -> None:
    """An instance stopped (SIGSTOP, a frozen VM) inside a transaction that renewed its
    lease holds that row's lock: the server ends its transaction once it has been idle for
    `idle_in_transaction` seconds, so another instance takes the expired lease over instead
    of waiting behind the lock for as long as the holder is frozen. The holder finds its
    transaction gone when it wakes (a store outage, retried) and its store works again."""
    frozen = Store.open(store_url, idle_in_transaction=1.0)
    other = Store.open(store_url)
    assert peers.acquire(frozen, "INBOX", "a", T0, LEASE)
    renewing = frozen.transaction()
    tx = renewing.__enter__()
    tx.session.connection().execute(
        peers.LEASES.update().where(peers.LEASES.c.mailbox == "INBOX")
        .values(expires_at=T0 + LEASE))
    with ThreadPoolExecutor(1) as pool:
        later = T0 + 2 * LEASE
        taking = pool.submit(peers.acquire, other, "INBOX", "b", later, LEASE)
        try:
            assert taking.result(timeout=30), "the other instance took the expired lease"
        finally:
            with pytest.raises(StoreUnavailableError):
                renewing.__exit__(None, None, None)
    assert [(lease.mailbox, lease.holder) for lease in peers.leases(frozen)] == [("INBOX", "b")]
    frozen.close()
    other.close()
