"""The fault suite: a stream of customer mail through Dovecot to two daemons on one PostgreSQL,
while instances are killed, hung and restarted, Dovecot and PostgreSQL go down, and the SMTP
peer refuses (4xx) and then fails (5xx). Afterwards every message is recorded, every new
thread has exactly one acknowledgement or a failure with its reason, and nothing was sent
twice. Run alone with `./scripts/test -m fault`; MAILBRIDGE_FAULT_SEED=N repeats a run.

PostgreSQL is a private cluster (`tests.postgres.PrivateCluster`), so restarting it is a real
server restart that touches nothing else on the machine.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest

from mailbridge.errors import StoreUnavailableError
from mailbridge.store import peers
from mailbridge.store.db import Store
from mailbridge.store.tables import Message, OutboxItem
from tests.daemon import Daemon, maildir_deliver, write_config
from tests.mails import customer_mail
from tests.postgres import PrivateCluster
from tests.servers import Dovecot, SmtpPeer, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.slow]

LEASE_TIMEOUT = 4.0
"""Seconds; the daemons renew every second, so a dead holder is replaced within 4 s."""
RATE = 5.0
"""Customer messages per second during the faults."""

T = TypeVar("T")


@dataclass
class Rig:
    """The servers, two daemons, the mail stream, and what happened, for one seeded run."""

    rng: random.Random
    cluster: PrivateCluster
    dovecot: Dovecot
    peer: SmtpPeer
    daemons: list[Daemon]
    store: Store
    appended: list[str] = field(default_factory=list)
    via_maildir: int = 0
    events: list[str] = field(default_factory=list)
    takeovers: list[tuple[str, float]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    # -- looking at the store (which may be restarting) ---------------------------------

    def read(self, query: Callable[[Store], T]) -> T:
        deadline = time.monotonic() + 30
        while True:
            try:
                return query(self.store)
            except StoreUnavailableError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def holder(self, mailbox: str = "INBOX") -> Daemon | None:
        """The daemon whose live lease covers `mailbox`, if any."""
        def find(store: Store) -> int | None:
            now = store_now()
            lease = next((x for x in peers.leases(store) if x.mailbox == mailbox), None)
            if lease is None or lease.expires_at < now:
                return None
            pid = {i.id: i.pid for i in peers.instances(store)}.get(lease.holder)
            return pid
        pid = self.read(find)
        return next((d for d in self.daemons if d.process and d.process.pid == pid), None)

    def note(self, text: str) -> None:
        self.events.append(f"{time.monotonic() - self.started:5.1f}s  {text}")

    # -- the stream ----------------------------------------------------------------------

    def feed(self, stop: threading.Event) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            addr = f"fault{n}@example.org"
            raw = customer_mail(n, addr=addr, subject=f"Order {n} never arrived")
            try:
                if not self.dovecot.running:
                    raise ConnectionRefusedError("IMAP is down")
                self.dovecot.append(raw)
            except Exception:  # IMAP down: mail keeps arriving through the MDA
                maildir_deliver(self.dovecot, raw, f"{int(time.time())}.M{n}P{os.getpid()}.f")
                self.via_maildir += 1
            self.appended.append(addr)
            stop.wait(1 / RATE)

    # -- the faults ----------------------------------------------------------------------

    def kill_and_restart(self) -> None:
        victim = self.rng.choice(self.daemons)
        down = self.rng.uniform(0.2, 1.5)
        victim.kill()
        time.sleep(down)  # the outage itself
        victim.start()
        self.note(f"SIGKILL {victim.config.parent.name}, restarted after {down:.1f}s")

    def kill_mid_send(self) -> None:
        before = self.peer.stalled_count
        self.peer.stall(3.0)
        wait_for(lambda: self.peer.stalled_count > before, timeout=20,
                 message="no acknowledgement reached the peer to stall")
        sending = self.read(lambda s: [i for i in s.outbox() if i.state == "sending"])
        pids = self.read(lambda s: {i.id: i.pid for i in peers.instances(s)})
        claimers = {pids.get(i.claimed_by or "") for i in sending}
        victims = [d for d in self.daemons if d.process and d.process.pid in claimers]
        for victim in victims:
            victim.kill()
        time.sleep(0.5)
        for victim in victims:
            victim.start()
        self.note(f"SIGKILL mid-send of {len(sending)} ack(s) "
                  f"({', '.join(v.config.parent.name for v in victims)}), restarted")

    def _takeover(self, how: str, stop: Callable[[Daemon], None],
                  resume: Callable[[Daemon], None]) -> None:
        holder = wait_for(self.holder, timeout=LEASE_TIMEOUT * 3, message="INBOX not watched")
        other = next(d for d in self.daemons if d is not holder)
        stop(holder)
        cut = time.monotonic()
        try:
            wait_for(lambda: self.holder() is other, timeout=LEASE_TIMEOUT + 5,
                     message=f"{other.config.parent.name} did not take over INBOX")
            took = time.monotonic() - cut
        finally:
            resume(holder)
        self.takeovers.append((how, took))
        self.note(f"{how} {holder.config.parent.name} (INBOX holder): "
                  f"{other.config.parent.name} took over in {took:.1f}s")

    def kill_holder_keep_other(self) -> None:
        self._takeover("SIGKILL", lambda d: d.kill(), lambda d: d.start())

    def hang_holder(self) -> None:
        def stop(daemon: Daemon) -> None:
            assert daemon.process is not None
            os.kill(daemon.process.pid, signal.SIGSTOP)

        def resume(daemon: Daemon) -> None:
            assert daemon.process is not None
            os.kill(daemon.process.pid, signal.SIGCONT)

        self._takeover("SIGSTOP", stop, resume)

    def dovecot_outage(self) -> None:
        down = self.rng.uniform(2.0, 4.0)
        self.dovecot.stop()
        time.sleep(down)
        self.dovecot.start()
        self.note(f"Dovecot stopped for {down:.1f}s")

    def smtp_refuses_then_fails(self) -> None:
        before = self.peer.refused_count
        self.peer.fail_with(451, "4.3.0 try again later", times=3)
        wait_for(lambda: self.peer.refused_count >= before + 3, timeout=20,
                 message="the peer never refused")
        self.peer.fail_with(550, "5.7.1 refused by policy", times=2)
        wait_for(lambda: self.peer.refused_count >= before + 5, timeout=20,
                 message="the peer never failed")
        self.note("SMTP peer refused 3 (451), then failed 2 (550)")

    def postgres_restart(self) -> None:
        down = self.rng.uniform(1.0, 2.5)
        self.cluster.stop()
        time.sleep(down)
        self.cluster.start()
        self.note(f"PostgreSQL stopped (fast shutdown) for {down:.1f}s, restarted")


def store_now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def rig(tmp_path: Path, dovecot: Dovecot, smtp_peer: SmtpPeer) -> Iterator[Rig]:
    seed = int(os.environ.get("MAILBRIDGE_FAULT_SEED", random.SystemRandom().randrange(10**6)))
    PrivateCluster.remove_orphans()
    cluster = PrivateCluster().init()
    daemons = []
    try:
        for name in ("instance-a", "instance-b"):
            config = write_config(
                tmp_path / name, dovecot, smtp_peer, store_url=cluster.url(),
                extra_store=f'lease_timeout = "{LEASE_TIMEOUT:g}s"',
                extra_rules="global_cap_per_minute = 1000000")
            daemons.append(Daemon(config))
        store = Store.open(cluster.url())
        rig = Rig(random.Random(seed), cluster, dovecot, smtp_peer, daemons, store)
        rig.note(f"seed {seed}")
        for daemon in daemons:
            daemon.start()
        yield rig
    finally:
        for daemon in daemons:
            if daemon.process is not None:
                os.kill(daemon.process.pid, signal.SIGCONT)
                daemon.stop()
        cluster.destroy()


def test_faults_lose_nothing_and_send_nothing_twice(
        rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    """Under kills, hangs and outages every message is recorded and acknowledged at most once."""
    faults = [rig.kill_and_restart, rig.kill_mid_send, rig.kill_holder_keep_other,
              rig.hang_holder, rig.dovecot_outage, rig.smtp_refuses_then_fails,
              rig.postgres_restart]
    rig.rng.shuffle(faults)
    stop = threading.Event()
    feeder = threading.Thread(target=rig.feed, args=(stop,), name="feeder")
    feeder.start()
    try:
        for fault in faults:
            time.sleep(rig.rng.uniform(0.3, 2.0))  # a random point in the stream
            fault()
    finally:
        stop.set()
        feeder.join(30)
    for daemon in rig.daemons:
        if daemon.process is None:
            daemon.start()
    rig.note(f"stream ended: {len(rig.appended)} messages")

    def recorded(store: Store) -> set[str]:
        return {m.sender for m in store.messages()}
    wait_for(lambda: set(rig.appended) <= rig.read(recorded), timeout=90,
             message=lambda: "not all recorded; events:\n" + "\n".join(rig.events))

    def unfinished(store: Store) -> list[OutboxItem]:
        return [i for i in store.outbox() if i.state in ("pending", "sending")]
    wait_for(lambda: not rig.read(unfinished), timeout=60,
             message=lambda: f"outbox not drained: {rig.read(unfinished)}")
    rig.note("everything recorded, outbox drained")

    messages: list[Message] = rig.read(lambda s: s.messages())
    outbox: list[OutboxItem] = rig.read(lambda s: s.outbox())
    received = Counter(rcpt for m in rig.peer.messages for rcpt in m.rcpt_tos)
    customers = set(rig.appended)
    rules = Counter(m.rule for m in messages)
    threads_by_customer = Counter(m.sender for m in messages if m.rule == "new_thread")
    acks = {i.recipient: i for i in outbox if i.kind == "ack"}
    sent = [i for i in acks.values() if i.state == "sent"]
    failed = [i for i in acks.values() if i.state == "failed"]
    interrupted = [i for i in failed if "interrupted" in i.last_error]
    refused = [i for i in failed if "550" in i.last_error]
    races = sum(d.log().count("event=lost_race") for d in rig.daemons)
    reaped = sum(d.log().count("event=reaped") for d in rig.daemons)

    with capsys.disabled():
        print("\n--- fault suite ---\n" + "\n".join(rig.events))
        print(f"messages appended {len(rig.appended)} (via Maildir while IMAP was down: "
              f"{rig.via_maildir}); recorded {len(messages)}: {dict(rules)}")
        print(f"new threads {sum(threads_by_customer.values())}; acks sent {len(sent)}, "
              f"failed {len(failed)} (5xx {len(refused)}, interrupted {len(interrupted)}); "
              f"SMTP peer accepted {sum(received.values())}, most to one customer "
              f"{max(received.values(), default=0)}")
        print(f"takeovers: {', '.join(f'{how} {s:.1f}s' for how, s in rig.takeovers)}; "
              f"instances reaped {reaped}; races lost to a peer {races}")

    assert set(threads_by_customer) == customers, "every customer's mail opened a thread"
    assert max(threads_by_customer.values()) == 1, "no customer got a second thread"
    assert set(acks) == customers, "every new thread has its acknowledgement queued"
    assert max(received.values()) == 1, "nobody was sent two acknowledgements"
    assert all(received[i.recipient] == 1 for i in sent), "sent means delivered, once"
    assert all(i.last_error for i in failed), "every failure is recorded with its reason"
    assert all(received[i.recipient] == 0 for i in refused), "a 5xx ack was not delivered"
    assert len(refused) == 2 and interrupted, "the 5xx and the mid-send kill were recorded"
    assert set(received) <= customers
    assert all(took <= LEASE_TIMEOUT + 1.5 for _how, took in rig.takeovers), "within the lease"
