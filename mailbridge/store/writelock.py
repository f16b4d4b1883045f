"""A lock handed to waiting threads in the order they asked: the SQLite writers' queue.

Public API: `FairLock` (a context manager; re-entrant for its holder).

`threading.Lock` is not fair: a thread that releases it and asks again at once (the IMAP
watcher recording one batch after another) usually gets it back before a waiting thread
(the outbox sender) is even scheduled, so the waiter starves while a backlog is read.
Here a release hands the lock straight to the longest waiter.
"""

from __future__ import annotations

import threading
from collections import deque


class FairLock:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()
        self._owner: int | None = None
        self._depth = 0

    def acquire(self) -> None:
        me = threading.get_ident()
        with self._guard:
            if self._owner == me:
                self._depth += 1
                return
            if self._owner is None:
                self._owner, self._depth = me, 1
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        turn.acquire()  # released by the holder that hands the lock over to us
        with self._guard:
            self._owner, self._depth = me, 1

    def release(self) -> None:
        with self._guard:
            if self._owner != threading.get_ident():
                raise RuntimeError("release of a FairLock this thread does not hold")
            self._depth -= 1
            if self._depth:
                return
            self._owner = None
            if self._waiters:
                # Reserved for the next waiter until it wakes: a thread asking meanwhile
                # finds the lock owned and queues behind it.
                self._owner = -1
                self._waiters.popleft().release()

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
