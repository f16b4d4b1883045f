"""Secrets and other files the configuration points at: read once, while loading.

This module owns how a file the configuration names is found and read; [imap], [smtp],
[http] and [relay] (`mailbridge.config.relay`) all go through it. Public API:

- `resolve(value, base)`: a path relative to the config file's folder.
- `secret_path(label, value, base, env, problems)`: where a secret file name points; a
  relative name lives in $CREDENTIALS_DIRECTORY when systemd sets it, else next to the
  configuration file.
- `first_line(file, what=...)`: the first line of a file as a `Secret`, or ValueError saying
  why it cannot be; `read_secret(label, file, problems)` and `read_secret_file(label, value,
  base, env, problems)` list that reason as a problem instead.
- `readable(label, file, problems)`: whether a file (a certificate, a key) can be opened.

Every reader takes `read` (default True): with `read=False` (`mailbridge replay`, which logs
in nowhere) no secret file, key or certificate is opened; each secret is an empty `Secret`
and only the checks that need no file are made.
- `prepare_password(section, table, base, env, problems)` ([imap] and [smtp]: password,
  password_file or $CREDENTIALS_DIRECTORY/<section>-password), `prepare_http_auth(...)`
  ([http]'s bearer token and basic-auth password files, for /metrics and for pushes),
  `prepare_ca_file(...)`,
  `os_reason(exc)`.

Every problem is appended to `problems` as `[section] key: ...`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mailbridge.config.problems import show
from mailbridge.config.values import (
    Secret,
)


def resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def prepare_ca_file(section: str, table: dict[str, Any], base: Path, problems: list[str], *,
                    read: bool = True) -> None:
    if isinstance(table.get("ca_file"), str):
        table["ca_file"] = resolve(table["ca_file"], base)
        readable(f"[{section}] ca_file", table["ca_file"], problems, read=read)


def readable(label: str, file: Path, problems: list[str], *, read: bool = True) -> bool:
    """Whether `file` can be opened for reading; if not, the reason is listed. Not tried,
    and True, when `read` is False."""
    if not read:
        return True
    try:
        with file.open("rb"):
            return True
    except OSError as exc:
        problems.append(f"{label}: cannot read {file}: {os_reason(exc)}")
        return False


def prepare_password(
    section: str, table: dict[str, Any], base: Path, env: Mapping[str, str], problems: list[str],
    *, read: bool = True,
) -> None:
    """Replace password / password_file by one `Secret` under "password" (or leave it absent).

    With `read=False` nothing is read and nothing is missing: the password is an empty
    `Secret` wherever a login would need one.
    """
    if not read:
        table.pop("password_file", None)
        table.pop("password", None)
        if table.get("auth") != "oauth2" and (section == "imap" or "username" in table):
            table["password"] = Secret("")
        return
    creds = env.get("CREDENTIALS_DIRECTORY", "")
    inline, file_value = table.get("password"), table.pop("password_file", None)
    placeholder = Secret("")  # keeps pydantic from repeating a problem listed here
    if inline is not None and file_value is not None:
        problems.append(f"[{section}] password, password_file: set one of them, not both")
        table["password"] = placeholder
    elif inline is not None:
        if not isinstance(inline, str) or not inline:
            problems.append(f"[{section}] password: expected a non-empty string (value not shown)")
        table["password"] = Secret(inline) if isinstance(inline, str) and inline else placeholder
    elif file_value is not None:
        table["password"] = read_secret_file(
            f"[{section}] password_file", file_value, base, env, problems) or placeholder
    elif creds and _given(Path(creds) / f"{section}-password") and (
        section == "imap" or "username" in table
    ):
        table["password"] = read_secret(
            f"[{section}] password", Path(creds) / f"{section}-password", problems
        )
    _check_auth_pair(section, table, problems)


def _given(credential: Path) -> bool:
    """Whether a credential file holds a value. The unit's default for a password file that
    is missing is a blank line (SetCredential=), which is no password at all."""
    try:
        return bool(credential.read_text(encoding="utf-8").strip())
    except FileNotFoundError:
        return False
    except (OSError, UnicodeDecodeError):  # there, but unreadable: `read_secret` says why
        return True


def _check_auth_pair(section: str, table: dict[str, Any], problems: list[str]) -> None:
    example = f'password_file = "/etc/mailbridge/{section}-password"'
    if table.get("auth") == "oauth2":
        return  # the [oauth2] grant's token instead of a password
    if section == "imap" and "password" not in table:
        problems.append(
            f"[imap] password: missing; add {example} (or LoadCredential=imap-password:... "
            "in the systemd unit)"
        )
        table["password"] = Secret("")
    elif section == "smtp" and "username" in table and "password" not in table:
        problems.append(f"[smtp] password: username is set but no password; add {example} "
                        "or remove username to send without logging in")
    elif section == "smtp" and "password" in table and "username" not in table:
        problems.append('[smtp] username: a password is set but no username; add username = "..."')


def prepare_http_auth(
    table: dict[str, Any], base: Path, env: Mapping[str, str], problems: list[str], *,
    read: bool = True,
) -> None:
    """Replace bearer_token_file / basic_auth_password_file / push_password_file by `Secret`s;
    check the pairing."""
    for key in ("bearer_token", "basic_auth_password", "push_password"):
        if key in table:
            problems.append(f"[http] {key}: a secret never belongs in this file; put it in a "
                            f'file and set {key}_file = "/etc/mailbridge/{key}"')
            table.pop(key)
    for key, what in (("bearer_token", "the token"), ("basic_auth_password", "the password"),
                      ("push_password", "the password")):
        value = table.pop(f"{key}_file", None)
        if value is None:
            continue
        secret = read_secret_file(f"[http] {key}_file", value, base, env, problems, what=what,
                                  read=read)
        if secret is not None:
            table[key] = secret
    if "bearer_token" in table and "basic_auth_user" in table:
        problems.append("[http] bearer_token_file, basic_auth_user: set one way for scrapers "
                        "to authenticate, not both")
    else:
        _both_or_neither(table, problems, "basic_auth_user", "basic_auth_password",
                         examples=("prometheus", "/etc/mailbridge/metrics-password"))
    _push_auth_problems(table, problems)
    _both_or_neither(table, problems, "push_username", "push_password",
                     examples=("dovecot", "/etc/mailbridge/push-password"))


def _both_or_neither(table: dict[str, Any], problems: list[str], user: str, password: str,
                     *, examples: tuple[str, str]) -> None:
    """An [http] user name and its password file come together; `examples`: a user name
    and a file name to suggest."""
    user_example, file_example = examples
    if user in table and password not in table:
        problems.append(f"[http] {password}_file: {user} is set but no password; add "
                        f'{password}_file = "{file_example}"')
    elif password in table and user not in table:
        problems.append(f"[http] {user}: a password file is set but no user; add "
                        f'{user} = "{user_example}"')


URL_SAFE = re.compile(r"[A-Za-z0-9._~-]+")
"""What a user name or password inside a URL needs no escaping for (RFC 3986 unreserved)."""


def _push_auth_problems(table: dict[str, Any], problems: list[str]) -> None:
    """The push credentials go into the url of Dovecot's push driver: only characters a URL
    takes as they are."""
    password = table.get("push_password")
    if isinstance(password, Secret) and password.reveal() \
            and not URL_SAFE.fullmatch(password.reveal()):
        problems.append("[http] push_password_file: the password goes into the url of "
                        "Dovecot's push driver, so it may hold only letters, digits and "
                        "- . _ ~ (make one with `openssl rand -hex 24`)")
    user = table.get("push_username")
    if isinstance(user, str) and user and not URL_SAFE.fullmatch(user):
        problems.append(f"[http] push_username: {show(user)} goes into the url of Dovecot's "
                        "push driver, so it may hold only letters, digits and - . _ ~")


def secret_path(label: str, value: object, base: Path, env: Mapping[str, str],
                problems: list[str]) -> Path | None:
    """The file a secret's file name points at: a relative name in $CREDENTIALS_DIRECTORY when
    systemd sets it, else next to the configuration file; None when `value` is no file name."""
    if not isinstance(value, str) or not value:
        problems.append(f"{label}: expected a file name, got {show(value)}")
        return None
    creds = env.get("CREDENTIALS_DIRECTORY", "")
    path = Path(value).expanduser()
    return path if path.is_absolute() else (Path(creds) if creds else base) / path


def read_secret_file(label: str, value: object, base: Path, env: Mapping[str, str],
                     problems: list[str], *, what: str = "the password",
                     read: bool = True) -> Secret | None:
    """The secret in the file `value` names (`secret_path`, `read_secret`); None when `value`
    is no file name. Each problem is listed; an unreadable file gives an empty `Secret`."""
    path = secret_path(label, value, base, env, problems)
    return None if path is None else read_secret(label, path, problems, what=what, read=read)


def read_secret(label: str, file: Path, problems: list[str], *,
                what: str = "the password", read: bool = True) -> Secret:
    """`first_line(file)`, or an empty `Secret` and the reason listed as a problem; an empty
    `Secret`, the file unopened, when `read` is False."""
    if not read:
        return Secret("")
    try:
        return first_line(file, what=what)
    except ValueError as exc:
        problems.append(f"{label}: {exc}")
        return Secret("")


def first_line(file: Path, *, what: str = "the password") -> Secret:
    """The first line of `file`, without its line break; ValueError says why it is unusable."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {file}: {os_reason(exc)}") from None
    value = text.split("\n", 1)[0].removesuffix("\r")
    if not value:
        raise ValueError(f"the first line of {file} is empty; it must hold {what}")
    return Secret(value)


def os_reason(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
