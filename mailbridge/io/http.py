"""The small HTTP endpoint: `/metrics` for Prometheus, `/healthz` for probes, and the mail
server's pushes (`mailbridge.io.push`).

Public API: `HttpServer(host, port, registry, health, *, auth=None, push=None,
degraded=None)`, with `start()`, `close()` and `port` (the bound port, useful with port 0);
`HttpAuth` and `http_auth(settings)`, the credentials /metrics asks for (none by default);
`Request`, `Response` and `Then`: `push` (a `PushReceiver`) takes the request at
`PUSH_PATH` and gives the response and what to do once it is sent. `health()` is
None while the daemon is healthy, else what is wrong: /healthz answers 503 with it.
`degraded()` lists what works but not as it should and a restart cannot mend (a refused
OAuth2 grant): /healthz answers 200 with "degraded:" and those lines, so that a probe
or systemd does not restart the daemon in a loop for it (`mailbridge.daemon.health`).

A plain asyncio server: two read-only GET routes and one small PUT do not need a web
framework, and it runs on our own event loop. The metrics are rendered in a worker thread
because scrape-time collectors query the store. /healthz never asks for
credentials: a liveness probe must not need a secret. A request body (only the push takes
one) is read up to `MAX_BODY` bytes; the rest, up to `MAX_DISCARD`, is read and dropped, so
that an over-long push still has its first fields read; beyond that: 413.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from mailbridge.config import HttpSettings
from mailbridge.logs import fields

log = logging.getLogger(__name__)

_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
            404: "Not Found", 405: "Method Not Allowed", 411: "Length Required",
            413: "Content Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}
PUSH_PATH = b"/push/dovecot"
MAX_BODY = 65536
MAX_DISCARD = 8 * 1024 * 1024

Response = tuple[int, str, bytes, dict[str, str]]
"""(status, content type, body, extra headers)."""
Then = Callable[[], object] | None
"""What to do once the response is handed to the socket (a push: wake the watcher)."""


@dataclass(frozen=True)
class Request:
    method: bytes
    target: bytes
    """The path, without the query."""
    headers: tuple[tuple[bytes, bytes], ...]
    """(lower-case name, value), in order."""
    body: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        """The last value of the header `name` (lower case), or None."""
        found = [value for key, value in self.headers if key == name]
        return found[-1] if found else None


def _same(given: bytes, expected: bytes) -> bool:
    """Constant-time equality that does not reveal the expected length either."""
    return hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(expected).digest())


@dataclass(frozen=True, repr=False)
class HttpAuth:
    """A bearer token, or a basic-auth user and password, that /metrics requires."""

    bearer_token: str | None = None
    basic_user: str | None = None
    basic_password: str | None = None

    def __repr__(self) -> str:
        return f"HttpAuth(scheme={self.scheme!r})"

    @property
    def scheme(self) -> str:
        return "Bearer" if self.bearer_token is not None else "Basic"

    def allows(self, authorization: bytes | None) -> bool:
        """Whether an Authorization header value carries the configured credentials."""
        if authorization is None:
            return False
        scheme, _, credentials = authorization.strip().partition(b" ")
        credentials = credentials.strip()
        if self.bearer_token is not None:
            return scheme.lower() == b"bearer" and _same(credentials,
                                                         self.bearer_token.encode())
        if scheme.lower() != b"basic" or self.basic_user is None \
                or self.basic_password is None:
            return False
        try:
            decoded = base64.b64decode(credentials, validate=True)
        except (binascii.Error, ValueError):
            return False
        user, colon, password = decoded.partition(b":")
        user_ok = _same(user, self.basic_user.encode())
        password_ok = _same(password, self.basic_password.encode())
        return bool(colon) & user_ok & password_ok  # no short cut: both are always compared


def http_auth(settings: HttpSettings) -> HttpAuth | None:
    """The credentials [http] asks for, or None when /metrics is open."""
    if settings.bearer_token is not None:
        return HttpAuth(bearer_token=settings.bearer_token.reveal())
    if settings.basic_auth_user is not None and settings.basic_auth_password is not None:
        return HttpAuth(basic_user=settings.basic_auth_user,
                        basic_password=settings.basic_auth_password.reveal())
    return None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HttpServer:
    def __init__(self, host: str, port: int, registry: CollectorRegistry,
                 health: Callable[[], str | None], *, auth: HttpAuth | None = None,
                 push: Callable[[Request], tuple[Response, Then]] | None = None,
                 degraded: Callable[[], list[str]] | None = None) -> None:
        self.host = host
        self.port = port
        self.registry = registry
        self.health = health
        self.degraded = degraded or list
        self.auth = auth
        self.push = push
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.auth is None and not _is_loopback(self.host):
            log.warning("http %s", fields(
                event="unauthenticated", listen=f"{self.host}:{self.port}",
                hint="set [http] bearer_token_file or basic_auth_user with "
                     "basic_auth_password_file"))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head_only, (status, ctype, body, extra), then = await asyncio.wait_for(
                self._respond(reader, writer), timeout=10)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ConnectionError):
            writer.close()
            return
        headers = "".join(f"{name}: {value}\r\n" for name, value in extra.items())
        length = "" if status == 204 else (f"Content-Type: {ctype}\r\n"
                                           f"Content-Length: {len(body)}\r\n")
        head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\n{length}"
                f"{headers}Connection: close\r\n\r\n")
        try:
            writer.write(head.encode("ascii") + (b"" if head_only else body))
            if then is not None:  # the answer is in the socket: the push's sender goes on
                then()
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _respond(self, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> tuple[bool, Response, Then]:
        """(whether this is a HEAD request, the response, what to do once it is sent)."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split()
        if len(parts) != 3:
            return False, (400, "text/plain", b"bad request\n", {}), None
        headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if colon:
                headers.append((name.strip().lower(), value.strip()))
        request = Request(parts[0], parts[1].split(b"?", 1)[0], tuple(headers))
        if request.method in (b"PUT", b"POST") and request.target == PUSH_PATH \
                and self.push is not None:
            body = await _read_body(request, reader, writer)
            if not isinstance(body, bytes):
                return False, body, None
            request = dataclasses.replace(request, body=body)
        if request.target == PUSH_PATH and self.push is not None:
            return False, *self.push(request)
        return request.method == b"HEAD", await self._route(request), None

    async def _route(self, request: Request) -> Response:
        method, target = request.method, request.target
        if method not in (b"GET", b"HEAD"):
            return 405, "text/plain", b"only GET\n", {"Allow": "GET, HEAD"}
        if target == b"/metrics":
            if self.auth is not None and not self.auth.allows(request.header(b"authorization")):
                return (401, "text/plain", b"unauthorized\n",
                        {"WWW-Authenticate": f'{self.auth.scheme} realm="mailbridge"'})
            try:
                body = await asyncio.to_thread(generate_latest, self.registry)
            except Exception:  # a broken collector must not take the endpoint down
                log.exception("http %s", fields(event="metrics_failed"))
                return 500, "text/plain", b"metrics failed; see the log\n", {}
            return 200, CONTENT_TYPE_LATEST, body, {}
        if target == b"/healthz":
            problem = self.health()
            if problem is None:
                lines = self.degraded()
                text = "".join(f"\n  {line}" for line in lines)
                return 200, "text/plain", f"degraded:{text}\n".encode() if lines else b"ok\n", {}
            return 503, "text/plain", f"{problem}\n".encode(), {}
        return 404, "text/plain", b"not found: try /metrics or /healthz\n", {}


async def _read_body(request: Request, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> bytes | Response:
    """The first `MAX_BODY` bytes of the body (the rest is read and dropped), or a refusal."""
    length = request.header(b"content-length")
    if length is None or not length.isdigit():
        return 411, "text/plain", b"send Content-Length\n", {}
    size = int(length)
    if size > MAX_DISCARD:
        return 413, "text/plain", b"body too large\n", {}
    if (request.header(b"expect") or b"").lower() == b"100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    body = await reader.readexactly(min(size, MAX_BODY))
    left = size - len(body)
    while left:
        left -= len(await reader.readexactly(min(left, MAX_BODY)))
    return body
