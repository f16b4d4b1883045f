"""The first OAuth2 login: a person signs in once, mailbridge keeps the refresh token.

Public API: `device_login(settings, say=...)` (RFC 8628: a code entered on any browser;
Microsoft's way), `loopback_login(settings, say=...)` (RFC 6749 4.1 with PKCE, RFC 7636,
and a loopback redirect, RFC 8252; Google's way: its device flow does not grant the Gmail
scope), each returning the token endpoint's answer; `keep_grant(settings, answer, file)`
writes its refresh token with `mailbridge.io.oauth2.write_private`, the writer the daemon's
`TokenSource` uses (a new file renamed over the old, mode 0600). `LoginError` says how a
login ended without a token (`outcome`: "denied", "expired", "refused", "unreachable",
"no_refresh_token", "save_failed"). `mailbridge.cli.oauth2_login` chooses and runs them.

By hand with the standard library, as `mailbridge.io.oauth2` refreshes: each flow is one or
two form POSTs and, for the loopback, a one-request HTTP listener. msal covers Microsoft
only and google-auth-oauthlib Google only, each with its own token cache, and a `custom`
provider must work with no vendor SDK at all; authlib has no client for the device grant.
`say` gets the lines a person must read (where to sign in, the code); no token, code
verifier or authorization code is ever said or logged.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from mailbridge.clock import Clock, SystemClock
from mailbridge.config.oauth2 import OAuth2Settings
from mailbridge.errors import MailbridgeError
from mailbridge.io.oauth2 import TokenError, client_form, post_form, write_private

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SLOW_DOWN = 5.0
"""RFC 8628 section 3.5: slow_down adds 5 seconds to every later wait."""
DEVICE_EXPIRY = 900.0
"""How long a device code lives when the provider does not say (Microsoft: 15 minutes)."""
LOOPBACK_TIMEOUT = 300.0

Say = Callable[[str], None]


class LoginError(MailbridgeError):
    """The login ended without a refresh token; `outcome` says how, the message what next."""

    def __init__(self, outcome: str, message: str) -> None:
        self.outcome = outcome
        super().__init__(message)


# -- the device authorization grant (RFC 8628) -------------------------------------------------


def device_login(settings: OAuth2Settings, *, say: Say, clock: Clock | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Ask for a device code, tell the person where to enter it, and poll the token endpoint
    until they sign in, refuse, or the code expires."""
    assert settings.device_endpoint is not None  # the caller chose a flow the provider has
    clock = clock or SystemClock()
    form = client_form(settings)
    if settings.scopes:
        form["scope"] = settings.scopes
    status, answer = _post(settings.device_endpoint, form)
    if status != 200:
        raise _refused("device authorization endpoint", status, answer)
    device_code, user_code = answer.get("device_code"), answer.get("user_code")
    uri = answer.get("verification_uri") or answer.get("verification_url")  # Google's older name
    if not all(isinstance(value, str) and value for value in (device_code, user_code, uri)):
        raise LoginError("refused", "the device authorization endpoint's answer lacks "
                         "device_code, user_code or verification_uri")
    lifetime = _number(answer.get("expires_in"), DEVICE_EXPIRY)
    interval = _number(answer.get("interval"), SLOW_DOWN)
    say(f"Open {uri} in any browser and enter the code {user_code}")
    if isinstance(answer.get("verification_uri_complete"), str):
        say(f"(or open {answer['verification_uri_complete']}, the code filled in)")
    if isinstance(answer.get("message"), str):
        say(answer["message"])
    say(f"Waiting for the sign-in (the code is valid for {round(lifetime / 60)} minutes) ...")
    deadline = clock.monotonic() + lifetime
    poll = {"grant_type": DEVICE_GRANT, "device_code": str(device_code),
            **client_form(settings)}
    while True:
        sleep(interval)
        if clock.monotonic() >= deadline:
            raise LoginError("expired", "the code expired before the sign-in; nothing was "
                             "written: run the command again and sign in within the time")
        try:
            status, answer = _post(settings.endpoint, poll)
        except LoginError as exc:  # RFC 8628 3.5: a lost connection is waited out
            if exc.outcome != "unreachable":
                raise
            interval = min(interval * 2, 60.0)
            continue
        if status == 200:
            return answer
        error = answer.get("error")
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += SLOW_DOWN
        elif error == "expired_token":
            raise LoginError("expired", "the code expired before the sign-in; nothing was "
                             "written: run the command again and sign in within the time")
        elif error in ("access_denied", "authorization_declined"):
            raise LoginError("denied", "the sign-in was declined; nothing was written")
        else:
            raise _refused("token endpoint", status, answer)


# -- the authorization code grant with a loopback redirect (RFC 8252) --------------------------


def loopback_login(settings: OAuth2Settings, *, say: Say, port: int = 0,
                   timeout: float = LOOPBACK_TIMEOUT,
                   clock: Clock | None = None) -> dict[str, Any]:
    """Listen on 127.0.0.1, send the person's browser to the authorization endpoint, take the
    code it is redirected back with, and exchange it (with the PKCE verifier)."""
    assert settings.authorization_endpoint is not None
    clock = clock or SystemClock()
    verifier = secrets.token_urlsafe(64)
    state = secrets.token_urlsafe(24)
    try:
        server = _Listener(("127.0.0.1", port), _Redirect)
    except OSError as exc:
        raise LoginError("unreachable", f"cannot listen on 127.0.0.1:{port} for the "
                         f"browser's redirect: {exc.strerror}") from None
    with server:
        server.state = state
        redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/"
        say("Open this address in a browser and sign in:")
        say(_authorization_url(settings, redirect_uri, state, verifier))
        say(f"The browser is sent back to {redirect_uri} (on another machine, forward the "
            f"port first: ssh -L {server.server_address[1]}:127.0.0.1:"
            f"{server.server_address[1]} THIS-HOST).")
        say(f"Waiting for the sign-in (up to {round(timeout / 60)} minutes) ...")
        deadline = clock.monotonic() + timeout
        while server.outcome is None:
            left = deadline - clock.monotonic()
            if left <= 0:
                raise LoginError("expired", "no sign-in came back in time; nothing was "
                                 "written: run the command again")
            server.timeout = left
            server.handle_request()
    outcome = server.outcome
    if isinstance(outcome, LoginError):
        raise outcome
    form = {"grant_type": "authorization_code", "code": outcome,
            "redirect_uri": redirect_uri, "code_verifier": verifier, **client_form(settings)}
    status, answer = _post(settings.endpoint, form)
    if status != 200:
        raise _refused("token endpoint", status, answer)
    return answer


def _authorization_url(settings: OAuth2Settings, redirect_uri: str, state: str,
                       verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    query = {"response_type": "code", "client_id": settings.client_id,
             "redirect_uri": redirect_uri, "state": state,
             "code_challenge": base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"),
             "code_challenge_method": "S256"}
    if settings.scopes:
        query["scope"] = settings.scopes
    if settings.provider == "google":  # a refresh token only with both (Google's own names)
        query |= {"access_type": "offline", "prompt": "consent"}
    base = settings.authorization_endpoint
    assert base is not None
    return f"{base}{'&' if '?' in base else '?'}{urllib.parse.urlencode(query)}"


class _Listener(HTTPServer):
    state = ""
    outcome: str | LoginError | None = None
    """The authorization code, or why the redirect brought none."""


class _Redirect(BaseHTTPRequestHandler):
    """The browser's one request: the redirect with code (or error) and state."""

    server: _Listener
    timeout = 10  # a connection that never sends its request does not hold the listener

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        if url.path != "/" or not ("code" in query or "error" in query):
            self._page(404, "Not found", "This is not the sign-in's answer.")
            return
        if not secrets.compare_digest(query.get("state", ""), self.server.state):
            self.server.outcome = LoginError(
                "refused", "the browser came back with a state that is not this login's "
                "(an old or a forged redirect); nothing was written: run the command again")
            self._page(400, "Sign-in refused", "This answer does not belong to the sign-in "
                       "mailbridge started. Nothing was saved; run the command again.")
            return
        if "error" in query:
            error = query["error"][:100]
            denied = error == "access_denied"
            self.server.outcome = LoginError(
                "denied" if denied else "refused",
                "the sign-in was declined; nothing was written" if denied else
                f"the authorization endpoint answered {error}"
                f"{': ' + query['error_description'][:200] if 'error_description' in query else ''}"
                "; nothing was written")
            self._page(403, "Sign-in not completed", f"The provider answered: {error}. "
                       "Nothing was saved.")
            return
        self.server.outcome = query["code"]
        self._page(200, "Signed in", "mailbridge has the authorization and finishes in the "
                   "terminal. You can close this tab.")

    def _page(self, status: int, title: str, text: str) -> None:
        body = (f"<!doctype html><meta charset=utf-8><title>mailbridge: {html.escape(title)}"
                f"</title><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request line holds the authorization code


# -- keeping the grant -------------------------------------------------------------------------


def keep_grant(settings: OAuth2Settings, answer: dict[str, Any], file: Path) -> None:
    """Write the answer's refresh token to `file`; LoginError when there is none (nothing
    is written then) or it cannot be written."""
    refresh = answer.get("refresh_token")
    if not isinstance(refresh, str) or not refresh.strip():
        raise LoginError("no_refresh_token", "the token endpoint answered no refresh_token, "
                         f"so nothing was written; {_no_refresh_hint(settings)}")
    try:
        write_private(file, refresh.strip())
    except OSError as exc:
        raise LoginError("save_failed", f"cannot write {file}: {exc.strerror}; run the "
                         "command as a user who may write there (sudo)") from None


def _no_refresh_hint(settings: OAuth2Settings) -> str:
    if settings.provider == "microsoft":
        return ("Microsoft gives one only for the scope offline_access: keep it in [oauth2] "
                "scope (or remove scope for the default) and grant it in the app registration")
    if settings.provider == "google":
        return ("Google gives one only on the consent screen of an offline request: remove "
                "mailbridge's access at https://myaccount.google.com/permissions and run the "
                "command again")
    return ("the provider gives one only when offline access is asked for, often by the "
            "scope offline_access: add it to [oauth2] scope")


def _post(url: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    try:
        return post_form(url, form)
    except TokenError as exc:
        raise LoginError("unreachable" if exc.reason == "unreachable" else "refused",
                         str(exc)) from None


def _refused(what: str, status: int, answer: dict[str, Any]) -> LoginError:
    error, description = answer.get("error"), answer.get("error_description")
    detail = f" {str(error)[:100]}" if error else ""
    detail += f": {str(description)[:300]}" if description else ""
    if error == "invalid_client" or status == 401:
        detail += " (check [oauth2] client_id and client_secret_file, and that the app " \
                  "registration allows this flow)"
    return LoginError("refused", f"the {what} refused: HTTP {status}{detail}; nothing was "
                      "written")


def _number(value: object, default: float) -> float:
    return float(value) if isinstance(value, int | float) and value > 0 else default
