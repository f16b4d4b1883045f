"""The configuration file: TOML in, validated, frozen, typed settings out.

This module owns the file; nothing else in mailbridge reads it. Public API:

- `load_config(path, *, environ=None) -> Config` validates everything and raises
  `ConfigError` listing every problem at once, each as `[section] key: what to change`.
- `demo_config(state_dir) -> Config`: the embedded settings of `mailbridge demo`.
- `parse_duration("1h30m") -> timedelta` and `format_duration(timedelta) -> "1h30m"`
  (re-exported from `mailbridge.durations`).
- `default_state_dir(environ) -> Path`: $STATE_DIRECTORY, else the XDG state directory.
- `Config` and its sections (`SupportSettings`, `ImapSettings`, `SmtpSettings`,
  `StoreSettings`, `HttpSettings`, `AgentSettings`, `DaemonSettings`; and `SlaSettings`,
  `CalendarSettings`, `HolidaySettings`, `PolicySettings`, `MatchSettings` from
  `mailbridge.config_sla`, which also checks names and calendar references; `FaqSettings`,
  `FaqMatchSettings` and the agents' profile keys from `mailbridge.config_agents`), and
  `Secret`, a password that shows as `Secret('**********')` until `.reveal()` (re-exported
  from `mailbridge.config_types`, which holds the value types of every field).

Loading takes three steps: tomllib parses; `_prepare` settles what depends on the environment
or on other keys (passwords and their files, the state directory, derived defaults); pydantic
validates the rest, and `mailbridge.config_problems.describe` turns its errors into the
operator's words.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mailbridge.config_agents import (
    AgentProfile,
    FaqMatchSettings,
    FaqSettings,
    agent_problems,
    describe_error,
)
from mailbridge.config_problems import AGENTS_NEEDED, rank, show, unknown
from mailbridge.config_relay import PasswordHash, RelaySettings, SecretFile, prepare_relay
from mailbridge.config_sla import (
    CalendarSettings,
    HolidaySettings,
    MatchSettings,
    PolicySettings,
    SlaSettings,
    reference_problems,
)
from mailbridge.config_types import (
    ADDRESS_PATTERN,
    Address,
    Duration,
    EnvelopeSender,
    Host,
    IdleRefresh,
    Listen,
    ListenAddress,
    NonEmpty,
    Port,
    PositiveDuration,
    Seconds,
    Secret,
    StoreUrl,
    StrictBool,
    TemplateLanguage,
    Timezone,
    Tls,
    mask_url,
)
from mailbridge.durations import format_duration, parse_duration
from mailbridge.errors import ConfigError

__all__ = [
    "AgentSettings", "CalendarSettings", "Config", "DaemonSettings", "FaqMatchSettings",
    "FaqSettings", "HolidaySettings",
    "HttpSettings", "ImapSettings", "MatchSettings", "PolicySettings", "RelaySettings", "Secret",
    "SlaSettings", "SmtpSettings", "StoreSettings", "SupportSettings", "default_state_dir",
    "demo_config", "format_duration", "load_config", "parse_duration",
]


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
    timezone: Timezone = "UTC"
    language: TemplateLanguage = "en"

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
    idle_refresh: IdleRefresh = timedelta(minutes=10)
    poll_interval: PositiveDuration = timedelta(seconds=60)
    fetch_batch: Annotated[int, Field(strict=True, ge=1, le=1000)] = 200
    backfill: Duration = timedelta(hours=1)
    sent_folders: tuple[NonEmpty, ...] = ("Sent",)

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
    envelope_sender: EnvelopeSender = ""
    helo: Host | None = None
    retry_initial: PositiveDuration = timedelta(seconds=30)
    retry_max: PositiveDuration = timedelta(minutes=15)
    give_up_after: PositiveDuration = timedelta(days=2)

    @model_validator(mode="before")
    @classmethod
    def _port_for_tls(cls, data: Any) -> Any:
        return _default_port(data, {"implicit": 465, "starttls": 587, "none": 25}, "starttls")


class StoreSettings(_Section):
    url: StoreUrl
    lease_timeout: PositiveDuration = timedelta(seconds=30)
    """How soon another instance takes over the mailboxes of one that died."""

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        yield "url", mask_url(self.url)


class HttpSettings(ListenAddress, _Section):
    listen: Listen = "127.0.0.1:9464"
    bearer_token: Secret | None = None
    """From bearer_token_file: /metrics then wants "Authorization: Bearer <token>"."""
    basic_auth_user: NonEmpty | None = None
    basic_auth_password: Secret | None = None
    """From basic_auth_password_file: /metrics then wants HTTP basic auth."""

    @field_validator("basic_auth_user")
    @classmethod
    def _no_colon(cls, user: str | None) -> str | None:
        if user is not None and ":" in user:
            raise ValueError("must not contain a colon (RFC 7617)")
        return user


class AgentSettings(AgentProfile):
    """An agent (profile, shift and cap: `mailbridge.config_agents.AgentProfile`)."""

    password_hash: PasswordHash | None = None  # the relay login ([relay], config_relay.py)
    password_file: SecretFile | None = None


class RulesSettings(_Section):
    """Who gets an acknowledgement (see `mailbridge.core.rules`)."""

    reply_to: Literal["return-path", "reply-to"] = "return-path"
    require_addressed: StrictBool = True
    robot_senders: tuple[NonEmpty, ...] = ()
    spam_header: NonEmpty = "X-Spam-Flag"
    spam_value: NonEmpty = "YES"
    dmarc_check: StrictBool = False
    trusted_authserv_id: str = ""
    sender_cap: Annotated[int, Field(strict=True, ge=1)] = 3
    sender_cap_window: PositiveDuration = timedelta(hours=24)
    global_cap_per_minute: Annotated[int, Field(strict=True, ge=1)] = 120


class ThreadsSettings(_Section):
    """Which thread a message joins when no header links it."""

    same_subject_window: Duration = timedelta(days=7)
    burst_window: Duration = timedelta(minutes=2)


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


class Config(_Section):
    path: Path | None = None
    support: SupportSettings
    imap: ImapSettings | None = None
    smtp: SmtpSettings | None = None
    relay: RelaySettings = Field(default_factory=RelaySettings)
    store: StoreSettings
    http: HttpSettings = Field(default_factory=HttpSettings)
    agents: tuple[AgentSettings, ...]
    sla: SlaSettings = Field(default_factory=SlaSettings)
    calendars: tuple[CalendarSettings, ...] = ()
    policies: tuple[PolicySettings, ...] = ()
    faq: tuple[FaqSettings, ...] = ()
    rules: RulesSettings = Field(default_factory=RulesSettings)
    threads: ThreadsSettings = Field(default_factory=ThreadsSettings)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)

    @field_validator("agents")
    @classmethod
    def _agents_unique(cls, agents: tuple[AgentSettings, ...]) -> tuple[AgentSettings, ...]:
        if not agents:
            raise ValueError(AGENTS_NEEDED)
        seen: dict[str, int] = {}
        for number, agent in enumerate(agents, start=1):
            first = seen.setdefault(agent.email.lower(), number)
            if first != number:
                raise ValueError(
                    f"#{number} email: {show(agent.email)} is already the address of #{first}; "
                    "each agent needs their own address"
                )
        return agents

    @model_validator(mode="after")
    def _references_known(self) -> Config:
        problems = reference_problems(
            [{"name": c.name} for c in self.calendars],
            [{"name": p.name, "calendar": p.calendar} for p in self.policies],
            {"calendar": self.sla.calendar},
        )
        problems += agent_problems(
            [{"policies": a.policies, "active": a.active} for a in self.agents],
            [{"name": p.name} for p in self.policies],
        )
        if problems:
            raise ValueError("\n".join(problems))
        return self


_SECTIONS: dict[str, type[BaseModel]] = {  # in the order of config.example.toml
    "support": SupportSettings, "agents": AgentSettings, "sla": SlaSettings,
    "calendars": CalendarSettings, "policies": PolicySettings, "faq": FaqSettings,
    "rules": RulesSettings, "threads": ThreadsSettings, "imap": ImapSettings,
    "smtp": SmtpSettings, "relay": RelaySettings, "store": StoreSettings,
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
    problems += reference_problems(data.get("calendars"), data.get("policies"), data.get("sla"))
    problems += agent_problems(data.get("agents"), data.get("policies"))
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            problems += describe_error(error, _SECTIONS)
    if problems:
        ordered = sorted(dict.fromkeys(problems), key=lambda problem: rank(problem, _SECTIONS))
        raise ConfigError(str(path), ordered)
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
        problems.append(unknown(("path",), data.pop("path"), _SECTIONS))
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
    http = _table(data, "http")
    if http is not None:
        _prepare_http_auth(http, base, env, problems)
    prepare_relay(data, base, env, problems)
    smtp, support = _table(data, "smtp"), data.get("support")
    if smtp is not None and "helo" not in smtp and isinstance(support, dict):
        address = support.get("address")
        if isinstance(address, str) and ADDRESS_PATTERN.fullmatch(address):
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
            shown = show(file_value)
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


def _prepare_http_auth(
    table: dict[str, Any], base: Path, env: Mapping[str, str], problems: list[str]
) -> None:
    """Replace bearer_token_file / basic_auth_password_file by `Secret`s; check the pairing."""
    for key in ("bearer_token", "basic_auth_password"):
        if key in table:
            problems.append(f"[http] {key}: a secret never belongs in this file; put it in a "
                            f'file and set {key}_file = "/etc/mailbridge/{key}"')
            table.pop(key)
    for key, what in (("bearer_token", "the token"), ("basic_auth_password", "the password")):
        value = table.pop(f"{key}_file", None)
        if value is None:
            continue
        if not isinstance(value, str) or not value:
            problems.append(f"[http] {key}_file: expected a file name, got {show(value)}")
            continue
        target = Path(value).expanduser()
        if not target.is_absolute():
            creds = env.get("CREDENTIALS_DIRECTORY", "")
            target = (Path(creds) if creds else base) / target
        table[key] = _read_secret(f"[http] {key}_file", target, problems, what=what)
    if "bearer_token" in table and "basic_auth_user" in table:
        problems.append("[http] bearer_token_file, basic_auth_user: set one way for scrapers "
                        "to authenticate, not both")
    elif "basic_auth_user" in table and "basic_auth_password" not in table:
        problems.append('[http] basic_auth_password_file: basic_auth_user is set but no '
                        'password; add basic_auth_password_file = "/etc/mailbridge/metrics-'
                        'password"')
    elif "basic_auth_password" in table and "basic_auth_user" not in table:
        problems.append('[http] basic_auth_user: a password file is set but no user; add '
                        'basic_auth_user = "prometheus"')


def _read_secret(label: str, file: Path, problems: list[str], *,
                 what: str = "the password") -> Secret:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{label}: cannot read {file}: {_os_reason(exc)}")
        return Secret("")
    value = text.split("\n", 1)[0].removesuffix("\r")
    if not value:
        problems.append(f"{label}: the first line of {file} is empty; it must hold {what}")
    return Secret(value)


def _os_reason(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
