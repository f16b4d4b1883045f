"""The SQLite writers' lock: waiting threads get it in the order they asked."""

from __future__ import annotations

import threading

import pytest

from mailbridge.store.writelock import FairLock
from tests.servers import wait_for


def test_a_waiter_gets_the_lock_before_its_holder_takes_it_again() -> None:
    """The holder releases and asks at once (a batch after a batch): the threads that were
    waiting go first, in their order."""
    lock = FairLock()
    order: list[str] = []
    lock.acquire()

    def worker(name: str) -> None:
        with lock:
            order.append(name)

    threads = []
    for queued, name in enumerate(("sender", "scheduler"), 1):
        thread = threading.Thread(target=worker, args=(name,))
        thread.start()
        threads.append(thread)

        def in_line(count: int = queued) -> bool:
            return len(lock._waiters) == count

        wait_for(in_line, message=f"{name} queued")
    lock.release()
    with lock:
        order.append("watcher again")
    for thread in threads:
        thread.join(5)
    assert order == ["sender", "scheduler", "watcher again"]


def test_the_holder_may_take_it_again_and_only_the_holder_releases() -> None:
    lock = FairLock()
    with lock, lock:
        pass
    with lock:
        failed: list[BaseException] = []

        def stranger() -> None:
            try:
                lock.release()
            except RuntimeError as exc:
                failed.append(exc)

        thread = threading.Thread(target=stranger)
        thread.start()
        thread.join(5)
        assert failed, "another thread cannot release it"
    with pytest.raises(RuntimeError):
        lock.release()
