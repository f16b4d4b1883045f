"""A wake-up call for a thread that blocks in poll(2) on a socket: the IMAP watcher in IDLE.

Public API: `Wakeup` with `set()` (any thread, or the event loop), `pending`, `take()`,
`wait(timeout)`, `fileno()` and `close()`.

A socket pair, not a `threading.Event`: the watcher waits in poll(2) on its IMAP socket
(imapclient's `idle_check`), and only a file descriptor can end that wait. Calls coalesce:
any number of `set()` before the next `take()` leave one byte in the pair, so a flood of
pushes costs the watcher one more look at the mailbox, not one per push.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading


class Wakeup:
    def __init__(self) -> None:
        self._recv, self._send = socket.socketpair()
        self._recv.setblocking(False)
        self._send.setblocking(False)
        self._lock = threading.Lock()
        self._pending = False
        self._closed = False

    def fileno(self) -> int:
        """Readable while a wake-up is pending: poll it beside the socket that blocks."""
        return self._recv.fileno()

    @property
    def pending(self) -> bool:
        return self._pending

    def set(self) -> None:
        """Ask for a wake-up; a no-op while one is pending or once closed."""
        with self._lock:
            if self._pending or self._closed:
                return
            self._pending = True
            with contextlib.suppress(OSError):
                self._send.send(b"\0")

    def take(self) -> bool:
        """Whether a wake-up was pending; clears it, so that a later `set()` counts anew."""
        with self._lock:
            pending, self._pending = self._pending, False
            if pending and not self._closed:
                with contextlib.suppress(OSError):  # BlockingIOError: drained
                    while self._recv.recv(64):
                        pass
            return pending

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` seconds for a wake-up; whether one is pending."""
        if not self._pending and not self._closed:
            with contextlib.suppress(OSError, ValueError):  # closed meanwhile
                select.select([self._recv], [], [], timeout)
        return self._pending

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._recv.close()
            self._send.close()
