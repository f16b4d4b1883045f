"""Instance identity: a random id with a heartbeat, the machine and boot ids, and the state
directory's lock; never the host name or the PID, which containers and reboots repeat."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from mailbridge.clock import FakeClock, SystemClock
from mailbridge.daemon.identity import HostFiles, Identity, StateLock
from mailbridge.daemon.membership import Membership, presumed_dead
from mailbridge.store import peers
from mailbridge.store.db import Store
from tests.hosts import BOOT_1, BOOT_2, CLONE, MACHINE, host_files
from tests.outbox import T0, outbox_item
from tests.servers import wait_for

LEASE = timedelta(seconds=20)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def two_stores(store_url: str) -> Iterator[tuple[Store, Store]]:
    """Two connections to one store, as two instances have."""
    first, second = Store.open(store_url), Store.open(store_url)
    yield first, second
    first.close()
    second.close()


def test_identity_is_read_from_the_files_and_unknown_where_they_say_nothing(
        tmp_path: Path) -> None:
    """Machine id, boot id and boot time come from their files; an absent, empty or
    "uninitialized" machine id is unknown, and so is a boot that is not a UUID."""
    read = Identity.read(host_files(tmp_path / "a"))
    assert (read.machine_id, read.boot_id) == (MACHINE, BOOT_1)
    assert read.booted_at == T0 - timedelta(hours=1)
    assert Identity.read(host_files(tmp_path / "b", machine=None, boot=None)).machine_id == ""
    odd = Identity.read(host_files(tmp_path / "c", machine="uninitialized", boot="?"))
    assert (odd.machine_id, odd.boot_id) == ("", "")
    assert Identity.read(HostFiles(*(tmp_path / "none" / n for n in "xyz"))) == Identity()


def test_a_peer_is_dead_only_when_silent_or_from_an_earlier_boot_of_this_machine() -> None:
    """Silence past the timeout, or our machine id with another boot id and a last heartbeat
    before this boot, means dead; a shared host name and PID, or a clone of our machine id
    that heartbeats after our boot, does not."""
    here = Identity(MACHINE, BOOT_2, booted_at=T0 + timedelta(seconds=5))

    def verdict(peer: peers.InstanceRow, after: float) -> str | None:
        return presumed_dead(peer, me="me", here=here, now=T0 + timedelta(seconds=after),
                             timeout=timedelta(seconds=30))

    twin = peers.InstanceRow("p", "h1", 1, "", T0, T0, machine_id=MACHINE, boot_id=BOOT_2)
    assert verdict(twin, after=10) is None, "same host, PID, machine and boot: alive"
    assert verdict(twin, after=31) == "no heartbeat for 31s"
    before = peers.InstanceRow("p", "h1", 1, "", T0, T0, machine_id=MACHINE, boot_id=BOOT_1)
    assert verdict(before, after=10) == "it ran before this machine rebooted"
    cloned = peers.InstanceRow("p", "h1", 1, "", T0, T0 + timedelta(seconds=6),
                               machine_id=MACHINE, boot_id=BOOT_1)
    assert verdict(cloned, after=10) is None, "heartbeat after our boot: another machine"
    other = peers.InstanceRow("p", "h1", 1, "", T0, T0, machine_id=CLONE, boot_id=BOOT_1)
    assert verdict(other, after=10) is None
    unknown = peers.InstanceRow("p", "h1", 1, "", T0, T0)
    assert verdict(unknown, after=10) is None, "an instance from before identities: wait"
    assert presumed_dead(before, me="me", here=Identity(), now=T0,
                         timeout=timedelta(seconds=30)) is None, "no ids here: wait"


def test_two_instances_sharing_host_pid_machine_and_boot_take_over_only_after_the_timeout(
        two_stores: tuple[Store, Store], tmp_path: Path) -> None:
    """Two containers on one host (both PID 1, one host name): while both heartbeat neither
    reaps the other; when the holder stops, the other takes its mailboxes within the lease
    timeout and reaps it only once its heartbeat is older than the timeout."""
    clock = FakeClock(T0)
    files = host_files(tmp_path / "host")
    a, b = (Membership(s, clock, mailboxes=["INBOX", "Sent"], lease_timeout=LEASE,
                       host="mailbridge", pid=1, files=files,
                       state_dir=tmp_path / name) for s, name in zip(two_stores, "ab", strict=True))
    assert a.join().gained == {"INBOX", "Sent"}
    assert b.join().gained == frozenset()
    for _ in range(8):  # two lease timeouts, both alive
        clock.advance(LEASE / 4)
        assert a.tick().lost == frozenset() and b.tick().gained == frozenset()
    assert all(i.stopped_at is None for i in peers.instances(two_stores[0]))

    stopped_at = clock.now()  # `a` stops heartbeating (a hung container)
    while not b.held:
        clock.advance(LEASE / 4)
        b.tick()
        silent = clock.now() - stopped_at
        [row] = [i for i in peers.instances(two_stores[1]) if i.id == a.id]
        assert (row.stopped_at is None) == (silent <= LEASE), "reaped only after the timeout"
    assert clock.now() - stopped_at <= LEASE and b.held == {"INBOX", "Sent"}
    while clock.now() - stopped_at <= LEASE:
        clock.advance(LEASE / 4)
        b.tick()
    [row] = [i for i in peers.instances(two_stores[1]) if i.id == a.id]
    assert row.stop_reason.startswith("no heartbeat for")
    assert a.tick().lost == {"INBOX", "Sent"}, "a stalled holder learns it lost them"


def test_leftovers_from_before_a_reboot_are_cleared_at_start(
        two_stores: tuple[Store, Store], tmp_path: Path) -> None:
    """The same machine after a reboot (new boot id): what the old instance held and was
    sending is cleared at once, within the lease timeout; a clone of the machine id on
    another machine, heartbeating since our boot, is left alone."""
    clock = FakeClock(T0)
    old = Membership(two_stores[0], clock, mailboxes=["INBOX"], lease_timeout=LEASE,
                     host="h1", pid=1, files=host_files(tmp_path / "boot1"))
    clone = Membership(two_stores[0], clock, mailboxes=["Sent"], lease_timeout=LEASE,
                       host="h1", pid=1, files=host_files(tmp_path / "clone", boot=BOOT_1))
    old.join()
    with two_stores[0].transaction() as tx:
        tx.add(outbox_item("AAAAAA"))
    assert two_stores[0].claim_outbox(T0, claimer=old.id) is not None

    clock.advance(LEASE / 4)  # the machine reboots: the old instance heartbeats no more
    clone.join()  # ...while the clone (another machine, same image) joins and heartbeats
    clock.advance(LEASE / 4)
    clone.tick()
    new = Membership(two_stores[1], clock, mailboxes=["INBOX", "Sent"], lease_timeout=LEASE,
                     host="h1", pid=1, files=host_files(
                         tmp_path / "boot2", boot=BOOT_2, booted_at=T0 + LEASE / 8))
    assert new.join().gained == {"INBOX"}
    rows = {i.id: i for i in peers.instances(two_stores[1])}
    assert rows[old.id].stop_reason == "it ran before this machine rebooted"
    assert rows[clone.id].stopped_at is None, "the clone heartbeats after our boot"
    assert rows[new.id].machine_id == MACHINE and rows[new.id].boot_id == BOOT_2
    [item] = two_stores[1].outbox()
    assert item.state == "failed" and "rebooted" in item.last_error, "never sent twice"


def test_a_restart_from_the_same_state_directory_clears_the_ended_run_at_once(
        store_url: str, tmp_path: Path) -> None:
    """A process that joined from a state directory holds its lock: while it lives a second
    instance there reaps nothing; once it is killed, a restart there reaps it at once."""
    state = tmp_path / "state"
    state.mkdir()
    script = ("import sys, threading; from datetime import timedelta;"
              "from pathlib import Path; from mailbridge.clock import SystemClock;"
              "from mailbridge.daemon.membership import Membership;"
              "from mailbridge.store.db import Store;"
              "m = Membership(Store.open(sys.argv[1]), SystemClock(), mailboxes=['INBOX'],"
              " lease_timeout=timedelta(minutes=5), host='h1', pid=1,"
              " state_dir=Path(sys.argv[2])); m.join(); threading.Event().wait()")
    killed = subprocess.Popen([sys.executable, "-c", script, store_url, str(state)], cwd=REPO)
    store = Store.open(store_url)
    try:
        def first() -> str | None:
            found = [i.id for i in peers.instances(store)]
            leases = [lease.holder for lease in peers.leases(store)]
            return found[0] if found and leases == found else None
        first_id = wait_for(first, timeout=20, message="the first instance did not join")
        beside = Membership(store, SystemClock(), mailboxes=["INBOX"],
                            lease_timeout=timedelta(minutes=5), host="h1", pid=1,
                            state_dir=state)
        assert beside.join().gained == frozenset(), "its lock is held: it may be alive"
        assert beside.lock is not None and not beside.lock.held
        beside.leave()
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(20)
        again = Membership(store, SystemClock(), mailboxes=["INBOX"],
                           lease_timeout=timedelta(minutes=5), host="h1", pid=1,
                           state_dir=state)
        assert again.join().gained == {"INBOX"}, "at once, not after five minutes"
        reason = {i.id: i.stop_reason for i in peers.instances(store)}[first_id]
        assert reason == "its process ended (restarted from the same state directory)"
        again.leave()
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.wait(20)
        store.close()


def test_the_state_lock_has_one_holder_and_names_the_one_before(tmp_path: Path) -> None:
    """A second taker while it is held gets nothing; after release, the next taker learns
    who held it."""
    first, second = StateLock(tmp_path), StateLock(tmp_path)
    assert first.take("one") is None and first.held
    assert second.take("two") is None and not second.held
    first.release()
    assert second.take("two") == "one" and second.held
    second.release()
    assert StateLock(tmp_path / "missing").take("three") is None
