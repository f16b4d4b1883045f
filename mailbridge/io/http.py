"""The small HTTP endpoint: `/metrics` for Prometheus and `/healthz` for probes.

Public API: `HttpServer(host, port, registry, ready)`, with `start()`, `close()`
and `port` (the bound port, useful with port 0).

A plain asyncio server: two read-only GET routes do not need a web framework,
and it runs on our own event loop. The metrics are rendered in a worker thread
because scrape-time collectors may query the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            503: "Service Unavailable"}


class HttpServer:
    def __init__(self, host: str, port: int, registry: CollectorRegistry,
                 ready: Callable[[], bool]) -> None:
        self.host = host
        self.port = port
        self.registry = registry
        self.ready = ready
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head_only, (status, ctype, body) = await asyncio.wait_for(self._respond(reader),
                                                                      timeout=10)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            writer.close()
            return
        head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
        try:
            writer.write(head.encode("ascii") + (b"" if head_only else body))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _respond(self, reader: asyncio.StreamReader,
                       ) -> tuple[bool, tuple[int, str, bytes]]:
        """(whether this is a HEAD request, (status, content type, body))."""
        request = await reader.readuntil(b"\r\n\r\n")
        parts = request.split(b"\r\n", 1)[0].split()
        if len(parts) != 3:
            return False, (400, "text/plain", b"bad request\n")
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        return method == b"HEAD", await self._route(method, target)

    async def _route(self, method: bytes, target: bytes) -> tuple[int, str, bytes]:
        if method not in (b"GET", b"HEAD"):
            return 405, "text/plain", b"only GET\n"
        if target == b"/metrics":
            body = await asyncio.to_thread(generate_latest, self.registry)
            return 200, CONTENT_TYPE_LATEST, body
        if target == b"/healthz":
            if self.ready():
                return 200, "text/plain", b"ok\n"
            return 503, "text/plain", b"starting\n"
        return 404, "text/plain", b"not found: try /metrics or /healthz\n"
