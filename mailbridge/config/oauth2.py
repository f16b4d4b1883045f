"""[oauth2]: the grant mailbridge logs in with where a server wants OAuth2 instead of a password.

This module owns the [oauth2] table and how its files are found; `mailbridge.config.sections`
adds `OAuth2Settings` to `Config` as `oauth2`, and `mailbridge.config.loader` calls
`prepare_oauth2` while loading. [imap] auth, [smtp] auth and [relay] upstream_auth choose
`"oauth2"`; all of them then share the one grant (`mailbridge.io.oauth2.TokenSource`). Public
API:

- `OAuth2Settings`: provider ("microsoft", "google" or "custom"), tenant, token_url,
  client_id, client_secret_file (a `SecretFile`, read while loading), refresh_token_file
  (a path; read by the daemon at start, never while loading) and scope. `endpoint` and
  `scopes` give what is sent, presets filled in.
- `prepare_oauth2(data, base, env, state_dir, problems)`: resolves the files (the client
  secret as every secret file, `mailbridge.config.secrets.secret_path`; a relative
  refresh_token_file in the state directory) and reads the client secret.
- `oauth2_problems(data)`: an `auth = "oauth2"` without an [oauth2] table.

Nothing here calls the token endpoint: check-config must never rotate the refresh token.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from mailbridge.config.relay import SecretFile
from mailbridge.config.secrets import read_secret, secret_path
from mailbridge.config.values import NonEmpty

MICROSOFT_TOKEN_URL = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"  # noqa: S105
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"  # noqa: S105
PRESET_SCOPES = {
    "microsoft": "https://outlook.office.com/IMAP.AccessAsUser.All "
                 "https://outlook.office.com/SMTP.Send offline_access",
    "google": "https://mail.google.com/",
}
"""The scopes a refresh asks for when [oauth2] scope is not set."""


def _check_token_url(url: str) -> str:
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
    client_id: NonEmpty
    client_secret_file: SecretFile | None = None
    """Public clients (Thunderbird-style desktop registrations) have none."""
    refresh_token_file: Path = Path("oauth2-refresh-token")
    """Resolved by the loader: a relative name lives in the state directory."""
    scope: NonEmpty | None = None

    @field_validator("token_url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        return None if url is None else _check_token_url(url)

    @model_validator(mode="after")
    def _custom_needs_url(self) -> OAuth2Settings:
        if self.provider == "custom" and self.token_url is None:
            raise ValueError('token_url: a custom provider needs it; add token_url = '
                             '"https://login.example.com/oauth2/token"')
        if self.provider != "custom" and self.token_url is not None:
            raise ValueError(f'token_url: the {self.provider} preset knows its token URL; '
                             'remove token_url, or set provider = "custom"')
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
