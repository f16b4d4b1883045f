"""The configuration file: TOML in, validated, frozen, typed settings out.

This module owns the file; nothing else in mailbridge reads it. Public API:

- `load_config(path, *, environ=None) -> Config` validates everything and raises
  `ConfigError` listing every problem at once, each as `[section] key: what to change`.
- `demo_config(state_dir) -> Config`: the embedded settings of `mailbridge demo`.
- `parse_duration("1h30m") -> timedelta` and `format_duration(timedelta) -> "1h30m"`.
- `default_state_dir(environ) -> Path`: $STATE_DIRECTORY, else the XDG state directory.
- `Config` and its sections (`SupportSettings`, `ImapSettings`, `SmtpSettings`,
  `StoreSettings`, `HttpSettings`, `AgentSettings`, `SlaSettings`, `DaemonSettings`), and
  `Secret`, a password that shows as `Secret('**********')` until `.reveal()`.

Loading takes three steps: tomllib parses; `_prepare` settles what depends on the environment
or on other keys (passwords and their files, the state directory, derived defaults); pydantic
validates the rest, and `_describe` turns its errors into the operator's words.
"""

from __future__ import annotations

import difflib
import hmac
import ipaddress
import json
import os
import re
import tomllib
import zoneinfo
from collections.abc import Iterator, Mapping
from datetime import date, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import CoreSchema, ErrorDetails, core_schema

from mailbridge.errors import ConfigError

# -- durations ---------------------------------------------------------------------------------

_UNITS = {"w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_PART = re.compile(r"([0-9]+)([a-z]+)\s*")
_DURATION_LIKE = 'expected a duration like "4h", "30m", "1h30m" or "2d"'


def parse_duration(text: str) -> timedelta:
    """Parse "45s", "30m", "4h", "2d", "1w", "1h30m" or "1d 12h"; raise ValueError otherwise.

    Units go from largest to smallest, each at most once. A bare number is refused because
    its unit would be a guess.
    """
    rest = text.strip()
    if rest.isdecimal():
        raise ValueError(f'{_show(text)} has no unit: write "{rest}s", "{rest}m" or "{rest}h"')
    seconds, pos, last = 0, 0, -1
    while pos < len(rest):
        match = _PART.match(rest, pos)
        if match is None or match[2] not in _UNITS:
            raise ValueError(f"{_DURATION_LIKE} (units w, d, h, m, s), got {_show(text)}")
        rank = list(_UNITS).index(match[2])
        if rank <= last:
            raise ValueError(f"units in {_show(text)} must go from largest to smallest, once each")
        seconds, pos, last = seconds + int(match[1]) * _UNITS[match[2]], match.end(), rank
    if pos == 0:
        raise ValueError(f"{_DURATION_LIKE}, got {_show(text)}")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"duration {_show(text)} is too long") from None


def format_duration(td: timedelta) -> str:
    """Write a whole-second, non-negative timedelta the way `parse_duration` reads it."""
    if td < timedelta(0) or td.microseconds:
        raise ValueError(f"cannot write {td!r} as a duration of whole seconds")
    seconds, parts = td.days * 86_400 + td.seconds, []
    for unit in "dhms":
        count, seconds = divmod(seconds, _UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


# -- secrets -----------------------------------------------------------------------------------


class Secret:
    """A password. repr, str and serialisation show stars; only `reveal()` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._coerce, serialization=core_schema.plain_serializer_function_ser_schema(str)
        )

    @classmethod
    def _coerce(cls, value: object) -> Secret:
        if isinstance(value, Secret):
            return value
        if isinstance(value, str):
            return cls(value)
        raise ValueError("expected a string (the value is not shown)")


# -- field types -------------------------------------------------------------------------------

_ADDRESS = re.compile(r'[^@\s<>()\[\],;:"]+@[^@\s<>()\[\],;:"]+')
_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?")
_STORE_SCHEMES = ("sqlite://", "postgresql://", "postgresql+psycopg://")


def _address(value: str) -> str:
    domain = value.rpartition("@")[2]
    if _ADDRESS.fullmatch(value) and not domain.startswith(".") and ".." not in domain:
        return value
    hint = "; write only the address here, without a name or <>" if "<" in value else ""
    raise ValueError(f'expected an address like "support@example.com", got {_show(value)}{hint}')


def _envelope_sender(value: str) -> str:
    return value if value == "" else _address(value)


def _host(value: str) -> str:
    if _HOSTNAME.fullmatch(value) and ".." not in value:
        return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        shown = _show(value)
    raise ValueError(f'expected a host name like "mail.example.com" (no scheme/port), got {shown}')


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value.strip()


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        close = difflib.get_close_matches(value, zoneinfo.available_timezones(), n=1)
        hint = f'; did you mean "{close[0]}"?' if close else '; e.g. "Europe/Berlin" or "UTC"'
        raise ValueError(f"unknown IANA time zone {_show(value)}{hint}") from None
    return value


def _store_url(value: str) -> str:
    if value.startswith(_STORE_SCHEMES):
        return value
    schemes, shown = ", ".join(_STORE_SCHEMES), _show(_mask_url(value))
    raise ValueError(f"expected a URL starting with {schemes}, got {shown}")


def _mask_url(url: str) -> str:
    """Hide the password in scheme://user:password@host, for repr and error messages."""
    return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)


def _split_listen(listen: str) -> tuple[str, int]:
    """Split "host:port" or "[ipv6]:port" into (host, port); raise ValueError otherwise."""
    if listen.startswith("["):
        host, _, rest = listen[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = listen.rpartition(":")
    bracketed = listen.startswith("[")
    if not host or (":" in host and not bracketed) or not (port.isascii() and port.isdigit()):
        raise ValueError(
            f'expected "host:port" like "127.0.0.1:9464" or "[::1]:9464", got {_show(listen)}'
        )
    if int(port) > 65_535:
        raise ValueError(f"port must be at most 65535, got {port} in {_show(listen)}")
    return host, int(port)


def _listen(value: str) -> str:
    _split_listen(value)
    return value


def _to_timedelta(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError:
            pass
    bare = (isinstance(value, str) and value.strip().isdecimal()) or (
        isinstance(value, int | float) and not isinstance(value, bool))
    hint = '; a bare number has no unit, write e.g. "30s" or "30m"' if bare else ""
    raise ValueError(f"{_DURATION_LIKE}, got {_show(value)}{hint}")


def _positive(td: timedelta) -> timedelta:
    if td <= timedelta(0):
        raise ValueError('must be longer than "0s"')
    return td


def _idle_limit(td: timedelta) -> timedelta:
    if td > timedelta(minutes=29):
        raise ValueError(
            f'must be at most "29m" (RFC 2177: servers may end an IDLE after 30 minutes), '
            f'got "{format_duration(td)}"'
        )
    return td


def _to_seconds(value: object) -> float:
    return _positive(_to_timedelta(value)).total_seconds()


Address = Annotated[str, AfterValidator(_address)]
Host = Annotated[str, AfterValidator(_host)]
NonEmpty = Annotated[str, AfterValidator(_non_empty)]
Port = Annotated[int, Field(strict=True, ge=1, le=65_535)]
StrictBool = Annotated[bool, Field(strict=True)]
Tls = Literal["implicit", "starttls", "none"]
Duration = Annotated[
    timedelta,
    BeforeValidator(_to_timedelta),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
Seconds = Annotated[float, BeforeValidator(_to_seconds)]


# -- the settings ------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _default_port(data: Any, ports: Mapping[str, int], default_tls: str) -> Any:
    if isinstance(data, dict) and "port" not in data:
        tls = data.get("tls", default_tls)
        port = ports.get(tls, ports[default_tls]) if isinstance(tls, str) else ports[default_tls]
        data = {**data, "port": port}
    return data


class SupportSettings(_Section):
    address: Address
    aliases: tuple[Address, ...] = ()
    name: NonEmpty
    timezone: Annotated[str, AfterValidator(_timezone)] = "UTC"

    @property
    def addresses(self) -> tuple[str, ...]:
        """The support address and its aliases, lowercased."""
        return tuple(a.lower() for a in (self.address, *self.aliases))

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower()


class ImapSettings(_Section):
    host: Host
    port: Port = 993
    tls: Tls = "implicit"
    username: NonEmpty
    password: Secret
    mailbox: NonEmpty = "INBOX"
    verify_tls: StrictBool = True
    ca_file: Path | None = None
    connect_timeout: Seconds = 15.0
    read_timeout: Seconds = 60.0
    idle_refresh: Annotated[PositiveDuration, AfterValidator(_idle_limit)] = timedelta(minutes=10)
    poll_interval: PositiveDuration = timedelta(seconds=60)
    fetch_batch: Annotated[int, Field(strict=True, ge=1, le=1000)] = 200
    backfill: Duration = timedelta(hours=1)

    @model_validator(mode="before")
    @classmethod
    def _port_for_tls(cls, data: Any) -> Any:
        return _default_port(data, {"implicit": 993, "starttls": 143, "none": 143}, "implicit")


class SmtpSettings(_Section):
    host: Host
    port: Port = 587
    tls: Tls = "starttls"
    username: NonEmpty | None = None
    password: Secret | None = None
    verify_tls: StrictBool = True
    ca_file: Path | None = None
    timeout: Seconds = 30.0
    envelope_sender: Annotated[str, AfterValidator(_envelope_sender)] = ""
    helo: Host | None = None
    retry_initial: PositiveDuration = timedelta(seconds=30)
    retry_max: PositiveDuration = timedelta(minutes=15)
    give_up_after: PositiveDuration = timedelta(days=2)

    @model_validator(mode="before")
    @classmethod
    def _port_for_tls(cls, data: Any) -> Any:
        return _default_port(data, {"implicit": 465, "starttls": 587, "none": 25}, "starttls")


class StoreSettings(_Section):
    url: Annotated[str, AfterValidator(_store_url)]

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        yield "url", _mask_url(self.url)


class HttpSettings(_Section):
    listen: Annotated[str, AfterValidator(_listen)] = "127.0.0.1:9464"

    @property
    def host(self) -> str:
        return _split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return _split_listen(self.listen)[1]


class AgentSettings(_Section):
    name: NonEmpty
    email: Address


class SlaSettings(_Section):
    first_response: PositiveDuration = timedelta(hours=4)


def default_state_dir(environ: Mapping[str, str]) -> Path:
    """$STATE_DIRECTORY (systemd), else $XDG_STATE_HOME/mailbridge, else ~/.local/state/..."""
    if environ.get("STATE_DIRECTORY"):
        return Path(environ["STATE_DIRECTORY"].split(":")[0])
    xdg = environ.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return Path(xdg) / "mailbridge"
    home = Path(environ["HOME"]) if environ.get("HOME") else Path.home()
    return home / ".local" / "state" / "mailbridge"


class DaemonSettings(_Section):
    state_dir: Path = Field(default_factory=lambda: default_state_dir(os.environ))
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_timeout: Duration = timedelta(seconds=10)


_AGENTS_NEEDED = 'at least one agent is needed, e.g. [[agents]] name = "Dana Whitfield" ' + (
    'email = "dana@example.com"'
)


class Config(_Section):
    path: Path | None = None
    support: SupportSettings
    imap: ImapSettings | None = None
    smtp: SmtpSettings | None = None
    store: StoreSettings
    http: HttpSettings = Field(default_factory=HttpSettings)
    agents: tuple[AgentSettings, ...]
    sla: SlaSettings = Field(default_factory=SlaSettings)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)

    @field_validator("agents")
    @classmethod
    def _agents_unique(cls, agents: tuple[AgentSettings, ...]) -> tuple[AgentSettings, ...]:
        if not agents:
            raise ValueError(_AGENTS_NEEDED)
        seen: dict[str, int] = {}
        for number, agent in enumerate(agents, start=1):
            first = seen.setdefault(agent.email.lower(), number)
            if first != number:
                raise ValueError(
                    f"#{number} email: {_show(agent.email)} is already the address of #{first}; "
                    "each agent needs their own address"
                )
        return agents


_SECTIONS: dict[str, type[_Section]] = {  # in the order of config.example.toml
    "support": SupportSettings, "agents": AgentSettings, "sla": SlaSettings,
    "imap": ImapSettings, "smtp": SmtpSettings, "store": StoreSettings,
    "http": HttpSettings, "daemon": DaemonSettings,
}


# -- loading -----------------------------------------------------------------------------------


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the file at `path`; raise ConfigError listing every problem.

    `environ` (default: os.environ) supplies $CREDENTIALS_DIRECTORY and $STATE_DIRECTORY.
    """
    env = os.environ if environ is None else environ
    file = Path(path)
    raw = _read_toml(file)
    problems: list[str] = []
    data = _prepare(raw, file.absolute(), env, problems)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems += [_describe(error) for error in exc.errors(include_url=False)]
    if problems:
        raise ConfigError(str(path), sorted(dict.fromkeys(problems), key=_rank))
    return config


def demo_config(state_dir: Path) -> Config:
    """The settings of `mailbridge demo`: no mail server, two agents, SQLite in `state_dir`."""
    return Config.model_validate({
        "support": {"address": "support@example.com", "name": "Example Support",
                    "timezone": "Europe/Berlin"},
        "store": {"url": f"sqlite:///{state_dir / 'mailbridge.sqlite3'}"},
        "agents": [{"name": "Dana Whitfield", "email": "dana@example.com"},
                   {"name": "Sam Okafor", "email": "sam@example.com"}],
        "daemon": {"state_dir": state_dir},
    })


def _read_toml(file: Path) -> dict[str, Any]:
    try:
        text = file.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(str(file), [f"cannot read {file}: {_os_reason(exc)}"]) from exc
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError(str(file), [f"line {line}: not UTF-8 text"]) from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.fullmatch(r"(.*) \(at (line \d+, column \d+|end of document)\)", str(exc))
        what, where = (match[1], match[2]) if match else (str(exc), "TOML syntax")
        raise ConfigError(str(file), [f"{where}: {what[:1].lower()}{what[1:]}"]) from exc


def _prepare(
    raw: dict[str, Any], file: Path, env: Mapping[str, str], problems: list[str]
) -> dict[str, Any]:
    """Resolve passwords, paths and the defaults that depend on `env` or on other keys."""
    data, base = dict(raw), file.parent
    if "path" in data:  # Config.path is where the file is, not a key in it
        problems.append(_unknown(("path",), data.pop("path")))
    data["path"] = file
    state_dir = _prepare_state_dir(data, base, env)
    store = _table(data, "store", create=True)
    if store is not None and "url" not in store:
        store["url"] = f"sqlite:///{(state_dir or default_state_dir(env)) / 'mailbridge.sqlite3'}"
    for section in ("imap", "smtp"):
        table = _table(data, section)
        if table is not None:
            _prepare_password(section, table, base, env, problems)
            _prepare_ca_file(section, table, base, problems)
    smtp, support = _table(data, "smtp"), data.get("support")
    if smtp is not None and "helo" not in smtp and isinstance(support, dict):
        address = support.get("address")
        if isinstance(address, str) and _ADDRESS.fullmatch(address):
            smtp["helo"] = address.rpartition("@")[2].lower()
    return data


def _table(data: dict[str, Any], name: str, *, create: bool = False) -> dict[str, Any] | None:
    """A private copy of the table `name`, or None when it is absent or not a table."""
    value = data.get(name, {} if create else None)
    if not isinstance(value, dict):
        return None
    copy = data[name] = dict(value)
    return copy


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _prepare_state_dir(data: dict[str, Any], base: Path, env: Mapping[str, str]) -> Path | None:
    """Fill in [daemon] state_dir (relative to the file's directory); return it when valid."""
    daemon = _table(data, "daemon", create=True)
    if daemon is None:
        return None
    if "state_dir" not in daemon:
        daemon["state_dir"] = default_state_dir(env)
    elif isinstance(daemon["state_dir"], str):
        daemon["state_dir"] = _resolve(daemon["state_dir"], base)
    state_dir = daemon["state_dir"]
    return state_dir if isinstance(state_dir, Path) else None


def _prepare_ca_file(section: str, table: dict[str, Any], base: Path, problems: list[str]) -> None:
    if isinstance(table.get("ca_file"), str):
        file = table["ca_file"] = _resolve(table["ca_file"], base)
        try:
            with file.open("rb"):
                pass
        except OSError as exc:
            problems.append(f"[{section}] ca_file: cannot read {file}: {_os_reason(exc)}")


def _prepare_password(
    section: str, table: dict[str, Any], base: Path, env: Mapping[str, str], problems: list[str]
) -> None:
    """Replace password / password_file by one `Secret` under "password" (or leave it absent)."""
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
        if not isinstance(file_value, str) or not file_value:
            shown = _show(file_value)
            problems.append(f"[{section}] password_file: expected a file name, got {shown}")
            table["password"] = placeholder
        else:
            target = Path(file_value).expanduser()
            if not target.is_absolute():
                target = (Path(creds) if creds else base) / target
            table["password"] = _read_secret(f"[{section}] password_file", target, problems)
    elif creds and (Path(creds) / f"{section}-password").exists() and (
        section == "imap" or "username" in table
    ):
        table["password"] = _read_secret(
            f"[{section}] password", Path(creds) / f"{section}-password", problems
        )
    _check_auth_pair(section, table, problems)


def _check_auth_pair(section: str, table: dict[str, Any], problems: list[str]) -> None:
    example = f'password_file = "/etc/mailbridge/{section}-password"'
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


def _read_secret(label: str, file: Path, problems: list[str]) -> Secret:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{label}: cannot read {file}: {_os_reason(exc)}")
        return Secret("")
    value = text.split("\n", 1)[0].removesuffix("\r")
    if not value:
        problems.append(f"{label}: the first line of {file} is empty; it must hold the password")
    return Secret(value)


def _os_reason(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)


# -- problems, in the operator's words ---------------------------------------------------------

_MISSING_EXAMPLES = {
    ("support",): '[support] with address = "support@example.com" and name = "Example Support"',
    ("support", "address"): 'address = "support@example.com"',
    ("support", "name"): 'name = "Example Support"',
    ("imap", "host"): 'host = "mail.example.com"',
    ("imap", "username"): 'username = "support@example.com"',
    ("smtp", "host"): 'host = "mail.example.com"',
    ("agents", "name"): 'name = "Dana Whitfield"',
    ("agents", "email"): 'email = "dana@example.com"',
}
_EXPECTED = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "bool_type": "true or false", "bool_parsing": "true or false", "string_type": "a string",
    "path_type": "a file path (a string)", "tuple_type": "an array", "model_type": "a table",
    "dict_type": "a table", "float_type": "a number",
}


def _describe(error: ErrorDetails) -> str:
    """One pydantic error as `[section] key: reason`, showing the bad value (never a secret)."""
    loc, kind, value = error["loc"], error["type"], error["input"]
    keys = tuple(part for part in loc if isinstance(part, str))
    if kind == "extra_forbidden":
        return _unknown(loc, value)
    if loc == ("agents",) and kind in ("missing", "too_short"):
        return f"[[agents]]: {_AGENTS_NEEDED}"
    if loc == ("agents",) and str(error.get("ctx", {}).get("error")).startswith("#"):
        return f"[[agents]] {error['ctx']['error']}"  # one agent's problem, found among them all
    if loc == ("agents",) and kind == "tuple_type":
        return "[[agents]]: expected [[agents]] blocks (an array of tables), not [agents]"
    if kind == "missing":
        example = _MISSING_EXAMPLES.get(keys)
        what = "missing section" if len(loc) == 1 else "missing"
        return f"{_where(loc)}: {what}" + (f"; add {example}" if example else "")
    return f"{_where(loc)}: {_reason(error, value, keys)}"


def _reason(error: ErrorDetails, value: Any, keys: tuple[str, ...]) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    shown = "a value not shown" if "password" in keys else _show(value)
    if kind == "value_error":
        return str(ctx["error"])
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {shown}"
    if kind == "literal_error":
        return f"expected one of {str(ctx['expected']).replace(chr(39), chr(34))}, got {shown}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}, got {shown}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}, got {shown}"
    message = error["msg"]
    return f"{message[:1].lower()}{message[1:]}, got {shown}"


def _where(loc: tuple[int | str, ...]) -> str:
    head = f"[[{loc[0]}]]" if loc[0] == "agents" else f"[{loc[0]}]"
    rest = [f"#{part + 1}" if isinstance(part, int) else part for part in loc[1:]]
    return " ".join([head, *rest])


def _unknown(loc: tuple[int | str, ...], value: object) -> str:
    """An unknown key or section; its value is never shown (it may be a mistyped password)."""
    key = str(loc[-1])
    if len(loc) == 1:
        sections = [f"[[{name}]]" if name == "agents" else f"[{name}]" for name in _SECTIONS]
        if isinstance(value, dict):
            hint = _did_you_mean(f"[{key}]", sections)
            return f"[{key}]: unknown section (allowed: {', '.join(sections)}){hint}"
        homes = [f"[{name}]" for name, model in _SECTIONS.items() if key in model.model_fields]
        where = f"under {' or '.join(homes)}" if homes else "under a [section] header"
        return f"{key}: unknown top-level key; keys go {where} (sections: {', '.join(sections)})"
    allowed = list(_SECTIONS[str(loc[0])].model_fields)
    if "password" in allowed:
        allowed.insert(allowed.index("password") + 1, "password_file")
    hint = _did_you_mean(key, allowed)
    return f"{_where(loc)}: unknown key (allowed: {', '.join(allowed)}){hint}"


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.7)
    return f'; did you mean "{close[0]}"?' if close else ""


def _rank(problem: str) -> int:
    """Sort problems in the order of the sections in config.example.toml."""
    match = re.match(r"\[\[?(\w+)", problem)
    names = list(_SECTIONS)
    return names.index(match[1]) + 1 if match and match[1] in names else 0


def _show(value: object) -> str:
    """A value as it would be written in TOML, shortened: "abc", 42, true, a table."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 80 else f'{text[:76]}…"'
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, Path):
        return json.dumps(str(value))
    return "a table" if isinstance(value, dict) else "an array" if isinstance(value, list) else "?"
