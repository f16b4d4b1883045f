"""OAuth2 access tokens for IMAP and SMTP logins: one grant, refreshed in one place.

Public API: `TokenSource` (`access_token()`, `refused(token)`, `run(stop)`, `problem()`,
built by `TokenSource.from_config(config.oauth2, state_dir=..., clock=..., metrics=...)`),
`TokenError` (a `TransientError`: the login waits and is tried again), `GrantProblem`,
`REFRESH_REASONS`, `LOGIN_REASONS`; shared with the first login
(`mailbridge.io.oauth2_login`): `post_form(url, form)`, `client_form(settings)` and
`write_private(file, value)`, the one writer of the refresh token file.

Tokens come by the refresh_token grant (RFC 6749 section 6): a form-encoded POST with the
client credentials in the body, over verified TLS (`mailbridge.io.tls`). The standard
library's urllib does it: the grant is one POST and one JSON answer, and a client library
(authlib, msal) would add a dependency and its own token cache without removing any of the
code that matters here (saving the rotated refresh token before use, single flight,
backoff, metrics). Every watcher, the sender and the relay's upstream share one
`TokenSource`: providers rotate the refresh token and only the latest is valid, so one
refresh runs at a time and the new refresh token is written to `refresh_token_file`
(a new file renamed over the old, mode 0600) before the new access token is handed out.
The file is read before each refresh, so a new `mailbridge oauth2-login` is picked up.

A failed refresh (a revoked grant: invalid_grant) is logged with the provider's error code,
counted in mailbridge_oauth2_refresh_failures_total{reason}, and tried again with capped
backoff; until then `access_token()` raises `TokenError` at once (a token that is still
valid is handed out meanwhile). While it waits, a changed refresh token file (a new
`mailbridge oauth2-login`) ends the wait: the timer tries it within `FILE_CHECK` seconds.
`problem()` tells health and `mailbridge status` what is wrong meanwhile, without taking the
refresh lock and without calling the endpoint. Tokens never reach a log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mailbridge.clock import Clock, SystemClock
from mailbridge.config.oauth2 import OAuth2Settings
from mailbridge.errors import TransientError
from mailbridge.io.backoff import Backoff
from mailbridge.io.tls import client_context
from mailbridge.logs import fields
from mailbridge.metrics.families import Metrics

log = logging.getLogger(__name__)

REFRESH_REASONS = ("invalid_grant", "invalid_client", "invalid_request", "invalid_scope",
                   "unauthorized_client", "unsupported_grant_type", "server_error",
                   "unreachable", "bad_response", "no_refresh_token", "save_failed", "other")
"""The bounded `reason` label values of refresh failures: RFC 6749 5.2's error codes,
then ours (the endpoint unreachable or its answer unreadable; no refresh token file; the
rotated refresh token could not be saved)."""
MAX_MARGIN = 300.0
"""A token is refreshed when a quarter of its lifetime is left, but at most this many
seconds before it expires."""
MIN_WAIT = 1.0
"""The timer never wakes sooner than this after a refresh (a token that lives 0 s)."""
HTTP_TIMEOUT = 30.0
FILE_CHECK = 5.0
"""While a failed refresh waits for its retry, the timer looks this often whether the
refresh token file changed (a new login), to try the new token at once."""
LOGIN_REASONS = frozenset({"invalid_grant", "no_refresh_token"})
"""Failures that no retry mends: the grant is gone, a new `mailbridge oauth2-login` is
needed."""


class TokenError(TransientError):
    """No access token: the refresh failed for `reason` (one of `REFRESH_REASONS`)."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class GrantProblem:
    """Why the last refresh failed, while no refresh has succeeded since."""

    reason: str
    """One of `REFRESH_REASONS`."""
    detail: str
    """The failure as logged (the provider's error code and description; never a token)."""
    since: datetime
    """The first failure of this run of failures."""
    failures: int
    token_valid: bool
    """An access token that has not expired is still held, so logins still work for now."""

    @property
    def needs_login(self) -> bool:
        return self.reason in LOGIN_REASONS


@dataclass
class _Token:
    value: str
    refresh_at: float
    """On the monotonic clock: when the timer (or the next caller) refreshes."""
    expires_at: float
    stale: bool = False
    """A server refused it: the next caller refreshes."""


class TokenSource:
    """Access tokens of one grant, shared by every login; thread-safe, one refresh at a time."""

    def __init__(self, settings: OAuth2Settings, *, refresh_token_file: Path,
                 clock: Clock | None = None, metrics: Metrics | None = None,
                 backoff: Backoff | None = None, timeout: float = HTTP_TIMEOUT) -> None:
        self.settings = settings
        self.refresh_token_file = refresh_token_file
        self.clock = clock or SystemClock()
        self.metrics = metrics
        self.backoff = backoff or Backoff(initial=5.0, cap=300.0)
        self.timeout = timeout
        self._lock = threading.Lock()
        self._token: _Token | None = None
        self._refresh_token: str | None = None
        self._unsaved = False
        """The held refresh token is newer than the file's (saving it failed)."""
        self._retry_at: float | None = None
        self._last_error: TokenError | None = None
        self._failing_since: datetime | None = None
        self._file_seen: tuple[int, int, int] | None = None
        """(inode, size, mtime) of the refresh token file when it was last read."""
        if metrics is not None:
            metrics.oauth2_enabled(REFRESH_REASONS)

    @classmethod
    def from_config(cls, settings: OAuth2Settings, *, state_dir: Path,
                    clock: Clock | None = None, metrics: Metrics | None = None,
                    backoff: Backoff | None = None) -> TokenSource:
        """A source for `settings`; a relative refresh_token_file lives in `state_dir`.
        Nothing is read or fetched yet."""
        return cls(settings, refresh_token_file=settings.refresh_token_path(state_dir),
                   clock=clock, metrics=metrics, backoff=backoff)

    # -- the interface the logins use --------------------------------------------------------

    def access_token(self) -> str:
        """A valid access token; refreshes first when none is held or it is near expiry."""
        with self._lock:
            now = self.clock.monotonic()
            token = self._token
            if token is not None and not token.stale and now < token.refresh_at:
                return token.value
            usable = token is not None and not token.stale and now < token.expires_at
            if self._retry_at is not None and now < self._retry_at:
                if usable and token is not None:
                    return token.value
                assert self._last_error is not None
                raise self._last_error
            try:
                return self._refresh()
            except TokenError:
                if usable and token is not None:  # an early refresh failed: it still works
                    return token.value
                raise

    def refused(self, token: str) -> None:
        """A server refused `token`: the next `access_token()` refreshes (unless a newer
        token is held already)."""
        with self._lock:
            # A second refusal of a token already known stale (a slow login that started
            # with it) says nothing new: it must not cut short the backoff of a failed refresh.
            if self._token is not None and self._token.value == token and not self._token.stale:
                self._token.stale = True
                self._retry_at = None

    def problem(self) -> GrantProblem | None:
        """Why refreshing fails, or None while it works (or has not been tried yet).

        Never waits for a refresh in progress (health answers from the event loop)."""
        error, since, token = self._last_error, self._failing_since, self._token
        if error is None or since is None:
            return None
        valid = token is not None and not token.stale \
            and self.clock.monotonic() < token.expires_at
        return GrantProblem(error.reason, str(error), since, self.backoff.failures, valid)

    def next_refresh_in(self) -> float:
        """Seconds until the timer should refresh (0: now); while a failed refresh waits,
        at most `FILE_CHECK`, and 0 once the refresh token file has changed. Called on the
        event loop: while another thread refreshes, it does not wait but says `MIN_WAIT`."""
        if not self._lock.acquire(blocking=False):
            return MIN_WAIT
        try:
            now = self.clock.monotonic()
            if self._retry_at is not None and now < self._retry_at:
                if self._file_changed():
                    self._retry_at = None
                    log.info("oauth2 %s", fields(event="refresh_token_file_changed",
                                                 path=str(self.refresh_token_file)))
                    return 0.0
                return min(self._retry_at - now, FILE_CHECK)
            if self._token is None or self._token.stale:
                return 0.0
            return max(0.0, self._token.refresh_at - now)
        finally:
            self._lock.release()

    async def run(self, stop: asyncio.Event) -> None:
        """Refresh ahead of expiry while connections stay open, until `stop` is set.

        The refresh runs in a thread of its own, not the loop's shared executor: a store
        that is slow to answer (scrapes, the sender, membership) must not hold it up."""
        loop = asyncio.get_running_loop()
        refresher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="oauth2")
        try:
            while not stop.is_set():
                delay = self.next_refresh_in()
                if delay <= 0:
                    with contextlib.suppress(TokenError):  # logged and counted already
                        await loop.run_in_executor(refresher, self.access_token)
                    delay = max(MIN_WAIT, self.next_refresh_in())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
        finally:  # never wait here for a refresh under way: this runs on the loop
            refresher.shutdown(wait=False, cancel_futures=True)

    # -- the refresh (under the lock) ----------------------------------------------------------

    def _refresh(self) -> str:
        try:
            answer = self._post(self._current_refresh_token())
            token = self._accept(answer)
        except TokenError as exc:
            delay = self.backoff.next_delay()
            self._retry_at = self.clock.monotonic() + delay
            self._last_error = exc
            if self.metrics is not None:
                self.metrics.oauth2_failed(exc.reason)
            log.warning("oauth2 %s", fields(event="refresh_failed", reason=exc.reason,
                                            error=str(exc), retry_in_s=round(delay, 1)))
            if self._failing_since is None:
                self._failing_since = self.clock.now()
            raise
        self.backoff.reset()
        self._retry_at = self._last_error = self._failing_since = None
        return token

    def _file_stat(self) -> tuple[int, int, int] | None:
        try:
            found = self.refresh_token_file.stat()
        except OSError:
            return None
        return found.st_ino, found.st_size, found.st_mtime_ns

    def _file_changed(self) -> bool:
        """Whether the refresh token file is another than the one last read (a new login
        renames a new file over it)."""
        current = self._file_stat()
        return current is not None and current != self._file_seen

    def _current_refresh_token(self) -> str:
        """The refresh token in the file (a new login may have replaced it), else the one
        held since the last refresh."""
        if self._unsaved and self._refresh_token:
            try:
                write_private(self.refresh_token_file, self._refresh_token)
            except OSError:
                return self._refresh_token  # the file's token is dead: keep using ours
            self._unsaved = False
        try:
            self._file_seen = self._file_stat()
            text = self.refresh_token_file.read_text(encoding="utf-8")
            first = text.split("\n", 1)[0].strip()
            if first:
                self._refresh_token = first
        except (OSError, UnicodeDecodeError) as exc:
            if self._refresh_token is None:
                raise TokenError("no_refresh_token", f"cannot read {self.refresh_token_file}: "
                                 f"{exc.strerror if isinstance(exc, OSError) else exc}; run "
                                 "`mailbridge oauth2-login` to obtain one") from None
        if not self._refresh_token:
            raise TokenError("no_refresh_token", f"{self.refresh_token_file} is empty; run "
                             "`mailbridge oauth2-login` to obtain a refresh token")
        return self._refresh_token

    def _post(self, refresh_token: str) -> dict[str, Any]:
        s = self.settings
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token,
                **client_form(s)}
        if s.scopes:
            form["scope"] = s.scopes
        status, answer = post_form(s.endpoint, form, timeout=self.timeout)
        if status != 200:
            raise _endpoint_error(status, answer)
        return answer

    def _accept(self, answer: dict[str, Any]) -> str:
        """Save a rotated refresh token, then hold and return the new access token."""
        access, lifetime = answer.get("access_token"), answer.get("expires_in", 3600)
        if not isinstance(access, str) or not access or not isinstance(lifetime, int | float):
            raise TokenError("bad_response", "the token endpoint's answer has no access_token")
        rotated = answer.get("refresh_token")
        if isinstance(rotated, str) and rotated and rotated != self._refresh_token:
            self._refresh_token = rotated  # the old one may be dead already: keep this one
            try:
                write_private(self.refresh_token_file, rotated)
                self._file_seen = self._file_stat()
            except OSError as exc:
                self._unsaved = True
                raise TokenError("save_failed", f"cannot save the new refresh token in "
                                 f"{self.refresh_token_file}: {exc.strerror}") from None
        now, lifetime = self.clock.monotonic(), max(0.0, float(lifetime))
        margin = min(lifetime / 4, MAX_MARGIN)
        self._token = _Token(access, refresh_at=now + lifetime - margin,
                             expires_at=now + lifetime)
        if self.metrics is not None:
            self.metrics.oauth2_expiry(self.clock.now().timestamp() + lifetime)
        log.info("oauth2 %s", fields(event="refreshed", expires_in_s=round(lifetime),
                                     rotated=isinstance(rotated, str) and bool(rotated)))
        return access


def client_form(settings: OAuth2Settings) -> dict[str, str]:
    """The client's credentials as every request to the token endpoint sends them (in the
    body, RFC 6749 section 2.3.1): client_id, and client_secret when there is one."""
    form = {"client_id": settings.client_id}
    if settings.client_secret_file is not None:
        form["client_secret"] = settings.client_secret_file.secret.reveal()
    return form


def post_form(url: str, form: Mapping[str, str], *,
              timeout: float = HTTP_TIMEOUT) -> tuple[int, dict[str, Any]]:
    """POST `form` (form-encoded) to an endpoint of the provider over verified TLS; its
    HTTP status and JSON object (empty for an error answer that is not JSON).
    TokenError "unreachable" or "bad_response" when there is no usable answer."""
    request = urllib.request.Request(  # noqa: S310 (https, or http to loopback: config)
        url, data=urllib.parse.urlencode(form).encode("ascii"), method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded",
                 "Accept": "application/json"})
    context = client_context(verify=True, ca_file=None)
    try:
        with urllib.request.urlopen(request, timeout=timeout,  # noqa: S310 (checked URL)
                                    context=context) as response:
            return response.status, _json(response.read())
    except urllib.error.HTTPError as exc:
        try:
            answer = json.loads(exc.read())
        except (ValueError, OSError):
            answer = {}
        return exc.code, answer if isinstance(answer, dict) else {}
    except (urllib.error.URLError, OSError) as exc:
        raise TokenError("unreachable", f"{url} unreachable: "
                         f"{getattr(exc, 'reason', exc)}") from None


def _json(body: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise TokenError("bad_response", "the token endpoint's answer is not JSON") from None
    if not isinstance(answer, dict):
        raise TokenError("bad_response", "the token endpoint's answer is not a JSON object")
    return answer


def _endpoint_error(status: int, answer: dict[str, Any]) -> TokenError:
    """The provider's error (RFC 6749 5.2) as a `TokenError` with a bounded reason."""
    code = answer.get("error")
    if isinstance(code, str) and code in REFRESH_REASONS:
        reason = code
    else:
        reason = "server_error" if status >= 500 else "other"
    description = answer.get("error_description")
    detail = f": {str(description)[:200]}" if description else ""
    hint = "; the grant was revoked or expired: run `mailbridge oauth2-login` again" \
        if reason == "invalid_grant" else ""
    return TokenError(reason, f"token endpoint: HTTP {status} {code or ''}{detail}{hint}")


def write_private(file: Path, value: str) -> None:
    """Replace `file` by one holding `value`: a new file (mode 0600) renamed over it.

    Run by root (`sudo mailbridge oauth2-login`), the file gets the owner of the file it
    replaces, else of its folder: the state directory is the daemon's user's, and the
    daemon must go on reading and replacing the file."""
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(value + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, 0o600)
        if os.geteuid() == 0:
            owner = file.stat() if file.exists() else file.parent.stat()
            os.chown(temp, owner.st_uid, owner.st_gid)
        os.replace(temp, file)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(file.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
