"""[oauth2]: the grant mailbridge logs in with where a server wants OAuth2 instead of a password.

This module owns the [oauth2] table and how its files are found; `mailbridge.config.sections`
adds `OAuth2Settings` to `Config` as `oauth2`, and `mailbridge.config.loader` calls
`prepare_oauth2` while loading. [imap] auth, [smtp] auth and [relay] upstream_auth choose
`"oauth2"`; all of them then share the one grant (`mailbridge.io.oauth2.TokenSource`). Public
API:

- `OAuth2Settings`: provider ("microsoft", "google" or "custom"), tenant, token_url,
  device_authorization_url and authorization_url (the first login's endpoints; custom
  only), client_id, client_secret_file (a `SecretFile`, read while loading),
  refresh_token_file (a path; read by the daemon at start, never while loading) and scope.
  `endpoint`, `device_endpoint`, `authorization_endpoint`, `flows` and `scopes` give what
  is used, presets filled in; `refresh_token_path(state_dir)` where the token lives.
- `prepare_oauth2(data, base, env, state_dir, problems)`: resolves the files (the client
  secret as every secret file, `mailbridge.config.secrets.secret_path`; a relative
  refresh_token_file in the state directory) and reads the client secret.
- `oauth2_problems(data)`: an `auth = "oauth2"` without an [oauth2] table.
- `refresh_token_problems(settings, state_dir, config_file)`: no refresh token to start
  with (the file missing, empty or unreadable); check-config reports it, naming
  `mailbridge oauth2-login`.

Nothing here calls the token endpoint: check-config must never rotate the refresh token.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from mailbridge.config.relay import SecretFile
from mailbridge.config.secrets import os_reason, read_secret, secret_path
from mailbridge.config.values import NonEmpty

MICROSOFT_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"  # noqa: S105
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"  # noqa: S105
MICROSOFT_DEVICE_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/devicecode"
"""Microsoft's device authorization endpoint (RFC 8628): the first login on a server."""
GOOGLE_AUTHORIZATION_URL = "https://accounts.google.com/o/oauth2/v2/auth"
"""Google's authorization endpoint: its device flow does not grant the Gmail scope, so the
first login is the installed-app flow with a loopback redirect (RFC 8252)."""
PRESET_SCOPES = {
    "microsoft": "https://outlook.office.com/IMAP.AccessAsUser.All "
                 "https://outlook.office.com/SMTP.Send offline_access",
    "google": "https://mail.google.com/",
}
"""The scopes a refresh asks for when [oauth2] scope is not set."""


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f'expected an https:// URL, got "{url}"')
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "::1"):
        raise ValueError(f'plain http is allowed only to 127.0.0.1 or ::1, got "{url}"; '
                         "use https://")
    return url


class OAuth2Settings(BaseModel):
    """The OAuth2 client and grant: where tokens come from (RFC 6749 section 6)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: Literal["microsoft", "google", "custom"]
    tenant: NonEmpty = "common"
    """Microsoft only: the directory (tenant) the app is registered in."""
    token_url: str | None = None
    """Custom only (the presets know theirs)."""
    device_authorization_url: str | None = None
    """Custom only: where `mailbridge oauth2-login` starts a device login (RFC 8628)."""
    authorization_url: str | None = None
    """Custom only: where `mailbridge oauth2-login` sends the browser (loopback redirect)."""
    client_id: NonEmpty
    client_secret_file: SecretFile | None = None
    """Public clients (Thunderbird-style desktop registrations) have none."""
    refresh_token_file: Path = Path("oauth2-refresh-token")
    """Resolved by the loader: a relative name lives in the state directory."""
    scope: NonEmpty | None = None

    @field_validator("token_url", "device_authorization_url", "authorization_url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        return None if url is None else _check_url(url)

    @model_validator(mode="after")
    def _custom_needs_url(self) -> OAuth2Settings:
        if self.provider == "custom" and self.token_url is None:
            raise ValueError('token_url: a custom provider needs it; add token_url = '
                             '"https://login.example.com/oauth2/token"')
        for key in ("token_url", "device_authorization_url", "authorization_url"):
            if self.provider != "custom" and getattr(self, key) is not None:
                raise ValueError(f'{key}: the {self.provider} preset knows its endpoints; '
                                 f'remove {key}, or set provider = "custom"')
        if self.provider != "microsoft" and "tenant" in self.model_fields_set:
            raise ValueError("tenant: only a microsoft provider has one; remove it")
        return self

    @property
    def endpoint(self) -> str:
        """The token endpoint refreshes are posted to."""
        if self.provider == "microsoft":
            return MICROSOFT_TOKEN_URL.format(tenant=self.tenant)
        if self.provider == "google":
            return GOOGLE_TOKEN_URL
        assert self.token_url is not None  # checked while validating
        return self.token_url

    @property
    def device_endpoint(self) -> str | None:
        """Where a device login starts (RFC 8628 section 3.1), if the provider has one."""
        if self.provider == "microsoft":
            return MICROSOFT_DEVICE_URL.format(tenant=self.tenant)
        return self.device_authorization_url

    @property
    def authorization_endpoint(self) -> str | None:
        """Where a browser login starts (RFC 6749 section 4.1), if the provider has one."""
        if self.provider == "google":
            return GOOGLE_AUTHORIZATION_URL
        return self.authorization_url

    @property
    def flows(self) -> tuple[str, ...]:
        """The first logins this provider offers, the preferred first: "device" (a code
        entered on any browser), "loopback" (a browser redirected to this machine)."""
        return tuple(flow for flow, url in (("device", self.device_endpoint),
                                            ("loopback", self.authorization_endpoint))
                     if url is not None)

    def refresh_token_path(self, state_dir: Path) -> Path:
        """The refresh token's file: a relative refresh_token_file lives in `state_dir`."""
        file = self.refresh_token_file
        return file if file.is_absolute() else state_dir / file

    @property
    def scopes(self) -> str | None:
        """The scope sent with a refresh: the file's, else the preset's, else none."""
        return self.scope or PRESET_SCOPES.get(self.provider)


def prepare_oauth2(data: dict[str, Any], base: Path, env: Mapping[str, str],
                   state_dir: Path | None, problems: list[str], *, read: bool = True) -> None:
    """Resolve [oauth2]'s files; read the client secret (the refresh token is the daemon's)."""
    raw = data.get("oauth2")
    if raw == {}:  # the example's section, every key commented out: no grant
        data.pop("oauth2")
    if not isinstance(raw, dict) or not raw:
        return
    table = data["oauth2"] = dict(raw)
    if "client_secret" in table:
        problems.append("[oauth2] client_secret: a secret never belongs in this file; put it "
                        'in a file and set client_secret_file = "oauth2-client-secret"')
        table.pop("client_secret")
    if "client_secret_file" in table:
        label = "[oauth2] client_secret_file"
        path = secret_path(label, table["client_secret_file"], base, env, problems)
        if path is None:
            table.pop("client_secret_file")
        else:
            table["client_secret_file"] = SecretFile(
                path, read_secret(label, path, problems, what="the client secret", read=read))
    name = table.get("refresh_token_file", "oauth2-refresh-token")
    if isinstance(name, str) and name and state_dir is not None:
        path = Path(name).expanduser()
        table["refresh_token_file"] = path if path.is_absolute() else state_dir / path


def oauth2_problems(data: Mapping[str, Any]) -> list[str]:
    """`auth = "oauth2"` somewhere, and no [oauth2] table to say whose grant."""
    if isinstance(data.get("oauth2"), dict):
        return []
    users = []
    for section, key in (("imap", "auth"), ("smtp", "auth"), ("relay", "upstream_auth")):
        table = data.get(section)
        if isinstance(table, dict) and table.get(key) == "oauth2":
            users.append(f'[{section}] {key} = "oauth2"')
    if not users:
        return []
    return [f"[oauth2]: missing section; {' and '.join(users)} needs it, add [oauth2] with "
            'provider = "microsoft" and client_id = "..." (or set auth = "password")']


def refresh_token_problems(settings: OAuth2Settings, state_dir: Path,
                           config_file: Path) -> list[str]:
    """Why the daemon would have no refresh token to log in with, as one problem; it only
    looks at the file (the token endpoint is never called here)."""
    file = settings.refresh_token_path(state_dir)
    todo = f"run `mailbridge oauth2-login --config {config_file}` to sign in and write it"
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [f"[oauth2] refresh_token_file: {file} does not exist; {todo}"]
    except (OSError, UnicodeDecodeError) as exc:
        return [f"[oauth2] refresh_token_file: cannot read {file}: {os_reason(exc)}"]
    if not text.split("\n", 1)[0].strip():
        return [f"[oauth2] refresh_token_file: {file} is empty; {todo}"]
    return []
