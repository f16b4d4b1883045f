"""An OAuth2 token endpoint for tests: the refresh_token grant, rotating on every refresh.

Public API: `TokenEndpoint` (start, stop, url, refresh_token, issued, valid, revoke_grant,
new_grant, refreshes; for the first login: device_url, authorize_url, device_script,
device_polls, authorize_error, omit_refresh_token, codes_redeemed, handed_out). A stdlib
``http.server`` on 127.0.0.1 in a thread. Each refresh answers a new access token living
``lifetime`` seconds and a new refresh token; the refresh token used dies at once, as
Microsoft's and Google's rotated tokens do. ``revoke_grant()`` makes every refresh an
``invalid_grant`` until ``new_grant()``.

The first login, as the providers serve it: ``/devicecode`` starts a device login
(RFC 8628) whose polls the token endpoint answers from ``device_script`` (error codes such
as "authorization_pending", then "approved"; "drop" ends the connection unanswered);
``/authorize`` is the authorization endpoint
of the code grant with PKCE (RFC 7636): it "signs the person in" at once and redirects the
browser to the loopback ``redirect_uri`` with a code, or with ``authorize_error``. Either
grant, approved, issues the grant's refresh token (without it when ``omit_refresh_token``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class TokenEndpoint:
    """Issues access tokens by the refresh_token grant; the old refresh token dies."""

    def __init__(self, *, lifetime: float = 3.0, client_id: str = "mailbridge-test",
                 client_secret: str | None = None) -> None:
        self.lifetime = lifetime
        self.client_id = client_id
        self.client_secret = client_secret
        """When set, the first login's grants must send it (a confidential client)."""
        self.device_script: list[str] = ["approved"]
        """What the polls of a device login are answered, in turn (the last repeats)."""
        self.device_interval = 1
        self.device_polls: list[float] = []
        """time.monotonic() of each poll of the device code."""
        self.device_requests: list[dict[str, str]] = []
        self.authorize_error: str | None = None
        self.authorize_queries: list[dict[str, str]] = []
        self.omit_refresh_token = False
        self.codes_redeemed = 0
        self.handed_out: list[str] = []
        """Every device code, authorization code and token the first login was given."""
        self._device_code: str | None = None
        self._codes: dict[str, tuple[str, str]] = {}
        """authorization code -> (code_challenge, redirect_uri)."""
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

    @property
    def device_url(self) -> str:
        return self.url.replace("/token", "/devicecode")

    @property
    def authorize_url(self) -> str:
        return self.url.replace("/token", "/authorize")

    def start(self) -> TokenEndpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                fields = {k: v[0] for k, v in form.items()}
                if self.path == "/devicecode":
                    status, answer = endpoint._device(fields)
                else:
                    status, answer = endpoint._answer(fields)
                if status == 0:  # "drop": the connection ends without an answer
                    self.close_connection = True
                    return
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
                status, location = endpoint._authorize(query)
                self.send_response(status)
                if location:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

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
        if form.get("grant_type") == "urn:ietf:params:oauth:grant-type:device_code":
            return self._device_poll(form)
        if form.get("grant_type") == "authorization_code":
            return self._redeem(form)
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

    # -- the first login ---------------------------------------------------------------------

    def _client_ok(self, form: dict[str, str]) -> bool:
        return form.get("client_id") == self.client_id and (
            self.client_secret is None or form.get("client_secret") == self.client_secret)

    def _device(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.device_requests.append(form)
            if not self._client_ok(form):
                return 400, {"error": "invalid_client"}
            self._device_code = secrets.token_urlsafe(32)
            self.handed_out.append(self._device_code)
            return 200, {"device_code": self._device_code, "user_code": "WDJB-MJHT",
                         "verification_uri": "https://login.example.test/device",
                         "expires_in": 900, "interval": self.device_interval,
                         "message": "To sign in, open https://login.example.test/device and "
                                    "enter the code WDJB-MJHT."}

    def _device_poll(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.device_polls.append(time.monotonic())
            if not self._client_ok(form) or form.get("device_code") != self._device_code:
                return 400, {"error": "invalid_grant"}
            step = self.device_script.pop(0) if len(self.device_script) > 1 \
                else self.device_script[0]
            if step == "drop":
                return 0, {}
            if step != "approved":
                return 400, {"error": step, "error_description": f"test: {step}"}
            self._device_code = None
            return 200, self._grant()

    def _authorize(self, query: dict[str, str]) -> tuple[int, str | None]:
        """The browser at the authorization endpoint: a redirect with a code (or error)."""
        with self._lock:
            self.authorize_queries.append(query)
            redirect = query.get("redirect_uri", "")
            if query.get("client_id") != self.client_id or \
                    not redirect.startswith("http://127.0.0.1:") or \
                    query.get("response_type") != "code" or \
                    query.get("code_challenge_method") != "S256":
                return 400, None
            answer = {"state": query.get("state", "")}
            if self.authorize_error:
                answer["error"] = self.authorize_error
            else:
                code = secrets.token_urlsafe(16)
                self._codes[code] = (query.get("code_challenge", ""), redirect)
                self.handed_out.append(code)
                answer["code"] = code
            return 302, f"{redirect}?{urllib.parse.urlencode(answer)}"

    def _redeem(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            challenge, redirect = self._codes.pop(form.get("code", ""), ("", ""))
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if not self._client_ok(form) or not challenge or computed != challenge or \
                    form.get("redirect_uri") != redirect:
                return 400, {"error": "invalid_grant"}
            self.codes_redeemed += 1
            return 200, self._grant()

    def _grant(self) -> dict[str, Any]:
        """A new grant's first tokens (under the lock): its refresh token is the valid one,
        even after `revoke_grant()` (the user consented again)."""
        self._revoked = False
        self.refresh_token = secrets.token_urlsafe(16)
        access = secrets.token_urlsafe(24)
        self._tokens[access] = time.monotonic() + self.lifetime
        self.handed_out += [access, self.refresh_token]
        answer = {"access_token": access, "token_type": "Bearer",
                  "expires_in": self.lifetime, "refresh_token": self.refresh_token}
        if self.omit_refresh_token:
            del answer["refresh_token"]
        return answer

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

    def new_grant(self) -> str:
        """The user consents again (what `mailbridge oauth2-login` obtains): refreshes work
        with the refresh token returned; every earlier one stays dead."""
        with self._lock:
            return str(self._grant()["refresh_token"])
