"""A small OAuth2 token issuer with an RFC 7662 introspection endpoint, for the test rig.

Public API: `TokenIssuer` (start, stop, issue, revoke, trust, hold, release, introspect_url,
introspections, held),
`IssuedTokens` (a `TokenSource` drawing from an issuer).

Dovecot's ``oauth2`` passdb (``tests.servers.Dovecot(oauth2_introspection_url=...)``) POSTs
``token=...`` to ``/introspect``; the issuer answers ``{"active": true, "username": ...}``
for a token it issued that has neither expired nor been revoked, ``{"active": false}``
otherwise. `trust` makes it vouch as well for the tokens another issuer says are valid
(``tests.oauth2_token_endpoint``, whose tokens the daemon's token source refreshes). The
server is a stdlib ``http.server`` on 127.0.0.1, in a thread.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass
class _Grant:
    username: str
    expires: float
    """time.monotonic() after which the token is dead."""
    revoked: bool = False


class TokenIssuer:
    """Issues opaque access tokens and tells Dovecot which are alive."""

    def __init__(self) -> None:
        self._grants: dict[str, _Grant] = {}
        self._lock = threading.Lock()
        self.introspections = 0
        """How many introspection requests were answered."""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._trusted: list[tuple[Callable[[str], bool], str]] = []
        self._open = threading.Event()
        self._open.set()
        self.held = 0
        """Introspection requests that waited while `hold()` was in force."""

    @property
    def introspect_url(self) -> str:
        assert self._server is not None, "start() the issuer first"
        return f"http://127.0.0.1:{self._server.server_address[1]}/introspect"

    def start(self) -> None:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode("ascii", "replace"))
                issuer._wait_if_held()
                answer = issuer.introspect(form.get("token", [""])[0])
                body = json.dumps(answer).encode()
                code = 200 if self.path.split("?")[0] == "/introspect" else 404
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: request lines would put nothing useful in test output."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="oauth2-issuer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.release()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> TokenIssuer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def issue(self, username: str, lifetime: float = 300.0) -> str:
        """A new access token for `username`, alive for `lifetime` seconds."""
        token = "at-" + secrets.token_urlsafe(24)
        with self._lock:
            self._grants[token] = _Grant(username, time.monotonic() + lifetime)
        return token

    def revoke(self, token: str) -> None:
        with self._lock:
            self._grants[token].revoked = True

    def hold(self) -> None:
        """Introspection requests wait, unanswered, until `release()` (at most 30 s)."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def _wait_if_held(self) -> None:
        if not self._open.is_set():
            with self._lock:
                self.held += 1
            self._open.wait(30)

    def trust(self, valid: Callable[[str], bool], username: str) -> None:
        """Answer active, for `username`, for every token `valid` accepts."""
        with self._lock:
            self._trusted.append((valid, username))

    def introspect(self, token: str) -> dict[str, Any]:
        with self._lock:
            self.introspections += 1
            for valid, username in self._trusted:
                if valid(token):
                    return {"active": True, "username": username, "token_type": "Bearer"}
            grant = self._grants.get(token)
            if grant is None or grant.revoked or time.monotonic() >= grant.expires:
                return {"active": False}
            return {"active": True, "username": grant.username, "token_type": "Bearer"}


class IssuedTokens:
    """A `TokenSource` for tests: one current token from `issuer`, a new one after a refusal.

    `given` lists every token handed out and `refusals` every token reported refused."""

    def __init__(self, issuer: TokenIssuer, username: str, *, first: str | None = None) -> None:
        self.issuer = issuer
        self.username = username
        self._current = first
        self._lock = threading.Lock()
        self.given: list[str] = []
        self.refusals: list[str] = []

    def access_token(self) -> str:
        with self._lock:
            if self._current is None:
                self._current = self.issuer.issue(self.username)
            self.given.append(self._current)
            return self._current

    def refused(self, token: str) -> None:
        with self._lock:
            self.refusals.append(token)
            if token == self._current:
                self._current = None
