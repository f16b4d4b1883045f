"""An OAuth2 token endpoint for tests: the refresh_token grant, rotating on every refresh.

Public API: `TokenEndpoint` (start, stop, url, refresh_token, issued, valid, revoke_grant,
refreshes). A stdlib ``http.server`` on 127.0.0.1 in a thread. Each refresh answers a new
access token living ``lifetime`` seconds and a new refresh token; the refresh token used
dies at once, as Microsoft's and Google's rotated tokens do. ``revoke_grant()`` makes every
refresh an ``invalid_grant``.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class TokenEndpoint:
    """Issues access tokens by the refresh_token grant; the old refresh token dies."""

    def __init__(self, *, lifetime: float = 3.0, client_id: str = "mailbridge-test") -> None:
        self.lifetime = lifetime
        self.client_id = client_id
        self.refresh_token = secrets.token_urlsafe(16)
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()
        self._revoked = False
        self.refreshes = 0
        self.failures = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def start(self) -> TokenEndpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                status, answer = endpoint._answer({k: v[0] for k, v in form.items()})
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _answer(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if form.get("grant_type") != "refresh_token" or form.get("client_id") != \
                    self.client_id:
                self.failures += 1
                return 400, {"error": "invalid_request"}
            if self._revoked or form.get("refresh_token") != self.refresh_token:
                self.failures += 1
                return 400, {"error": "invalid_grant",
                             "error_description": "the refresh token is not valid"}
            self.refreshes += 1
            self.refresh_token = secrets.token_urlsafe(16)
            access = secrets.token_urlsafe(24)
            self._tokens[access] = time.monotonic() + self.lifetime
            return 200, {"access_token": access, "token_type": "Bearer",
                         "expires_in": self.lifetime, "refresh_token": self.refresh_token}

    def valid(self, token: str) -> bool:
        """Whether `token` was issued here and has not expired."""
        with self._lock:
            return self._tokens.get(token, 0.0) > time.monotonic()

    def issued(self) -> list[str]:
        with self._lock:
            return list(self._tokens)

    def expire_all(self) -> None:
        """Every access token issued so far dies now (the server refuses it)."""
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, 0.0)

    def revoke_grant(self) -> None:
        with self._lock:
            self._revoked = True
