"""A scripted IMAP server for the protocol answers Dovecot cannot be made to give (Microsoft
365's throttling), speaking just enough IMAP for the watcher and recording what it heard.

Public API: `ScriptedImap(answers)` (start, stop, port, connections, commands, wait_for).

`answers` maps a command (LOGIN, AUTHENTICATE, SELECT/EXAMINE, SEARCH, IDLE, ...) to the
text of its tagged answer, e.g. "NO [THROTTLED] Request is throttled."; the others get an
empty mailbox's OK. An asyncio server on 127.0.0.1 in a thread of its own, as in the
scripted transcripts of getmail6's tests.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from tests.servers import wait_for

T = TypeVar("T")
CAPABILITIES = "IMAP4rev1 IDLE AUTH=XOAUTH2 AUTH=PLAIN"


class ScriptedImap:
    """IMAP on a free loopback port; every connection answered from `answers`."""

    def __init__(self, answers: dict[str, str] | None = None) -> None:
        self.answers = dict(answers or {})
        self.connections: list[float] = []
        """time.monotonic() of each connection accepted."""
        self.commands: list[tuple[int, float, str]] = []
        """(connection number from 1, time.monotonic(), command name) of each command."""
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._lock = threading.Lock()

    def start(self) -> ScriptedImap:
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop)
        self._server = started.result(timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def __enter__(self) -> ScriptedImap:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def heard(self, name: str) -> list[tuple[int, float]]:
        """(connection, time) of each `name` command heard so far."""
        with self._lock:
            return [(conn, at) for conn, at, command in self.commands if command == name]

    def wait_for(self, predicate: Callable[[], T], timeout: float = 20.0) -> T:
        return wait_for(predicate, timeout=timeout,
                        message=lambda: f"heard {self.commands}")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections.append(time.monotonic())
            number = len(self.connections)
        writer.write(f"* OK [CAPABILITY {CAPABILITIES}] scripted server ready\r\n".encode())
        try:
            while line := await reader.readline():
                tag, _, rest = line.decode("ascii", "replace").strip().partition(" ")
                words = rest.split()
                name = words[0].upper() if words else ""
                if name == "UID" and len(words) > 1:
                    name = words[1].upper()
                with self._lock:
                    self.commands.append((number, time.monotonic(), name))
                if not await self._answer(tag, name, number, reader, writer):
                    break
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _answer(self, tag: str, name: str, number: int, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        """Answer one command; False ends the connection."""
        scripted = self.answers.get(name)
        if name == "AUTHENTICATE":
            writer.write(b"+ \r\n")
            await writer.drain()
            await reader.readline()  # the initial response (its token is not looked at)
        elif name in ("SELECT", "EXAMINE") and scripted is None:
            writer.write(b"* 0 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 1] ok\r\n")
        elif name == "SEARCH" and scripted is None:
            writer.write(b"* SEARCH\r\n")
        elif name == "CAPABILITY":
            writer.write(f"* CAPABILITY {CAPABILITIES}\r\n".encode())
        elif name == "IDLE" and scripted is None:
            writer.write(b"+ idling\r\n")
            await writer.drain()
            if (await reader.readline()).strip().upper() != b"DONE":
                return False
            with self._lock:
                self.commands.append((number, time.monotonic(), "DONE"))
        elif name == "LOGOUT":
            writer.write(f"* BYE scripted\r\n{tag} OK LOGOUT done\r\n".encode())
            return False
        writer.write(f"{tag} {scripted or 'OK ' + name + ' done'}\r\n".encode())
        return True
