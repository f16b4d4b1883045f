"""The relay part of the configuration: [relay], and the agents' relay credentials.

This module owns the settings of the agents' submission relay (`mailbridge.io.relay`) and the
checks that read files (certificate, key, password files). `mailbridge.config` calls
`prepare_relay` while loading and adds `RelaySettings` as [relay]. Public API:

- `RelaySettings` ([relay]: where the relay listens, its TLS, and the upstream smarthost).
- `PasswordHash` (an agent's `password_hash`, checked with `mailbridge.config.passwords.parse_hash`)
  and `SecretFile` (a `password_file`, read once while loading: its `path` and `secret`).
- `prepare_relay(data, base, env, problems)`: resolves relative paths (password files in
  $CREDENTIALS_DIRECTORY when systemd sets it, else next to the file), reads the secrets,
  fills in the default hostname, and when the relay is enabled checks that what it needs is
  there and usable. Each problem is a `[relay] key: ...` or `[[agents]] #n key: ...` line.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, GetCoreSchemaHandler, model_validator
from pydantic_core import CoreSchema, core_schema

from mailbridge.config.passwords import parse_hash
from mailbridge.config.problems import show
from mailbridge.config.values import (
    ADDRESS_PATTERN,
    Host,
    Listen,
    ListenAddress,
    NonEmpty,
    Port,
    Secret,
    StrictBool,
    Tls,
)

_UPSTREAM_PORTS = {"implicit": 465, "starttls": 587, "none": 25}


class SecretFile:
    """A password read from the first line of a file; shows only the file's path."""

    __slots__ = ("path", "secret")

    def __init__(self, path: Path, secret: Secret) -> None:
        self.path = path
        self.secret = secret

    def __repr__(self) -> str:
        return f"SecretFile({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretFile):
            return NotImplemented
        return self.path == other.path and self.secret == other.secret

    def __hash__(self) -> int:
        return hash(self.path)

    @classmethod
    def read(cls, path: Path) -> SecretFile:
        """Read `path` now; raise ValueError with the reason when it cannot be used."""
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else \
                (exc.strerror or str(exc))
            raise ValueError(f"cannot read {path}: {reason}") from None
        value = text.split("\n", 1)[0].removesuffix("\r")
        if not value:
            raise ValueError(f"the first line of {path} is empty; it must hold the password")
        return cls(path, Secret(value))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any,
                                     handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._coerce, serialization=core_schema.plain_serializer_function_ser_schema(
                lambda value: str(value.path)))

    @classmethod
    def _coerce(cls, value: object) -> SecretFile:
        if isinstance(value, SecretFile):
            return value
        if isinstance(value, str | Path) and str(value):
            return cls.read(Path(value))
        raise ValueError(f"expected a file name, got {show(value)}")


def _password_hash(value: str) -> str:
    parse_hash(value)
    return value.strip()


PasswordHash = Annotated[str, AfterValidator(_password_hash)]


class RelaySettings(ListenAddress, BaseModel):
    """The agents' SMTP submission relay; off unless `enabled = true`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: StrictBool = False
    listen: Listen = "127.0.0.1:587"
    tls: Literal["starttls", "implicit"] = "starttls"
    certificate: Path | None = None
    key: Path | None = None
    hostname: Host | None = None
    upstream_host: Host | None = None
    upstream_port: Port = 587
    upstream_tls: Tls = "starttls"
    upstream_username: NonEmpty | None = None
    upstream_password_file: SecretFile | None = None
    upstream_verify_tls: StrictBool = True
    upstream_ca_file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _port_for_tls(cls, data: Any) -> Any:
        if isinstance(data, dict) and "upstream_port" not in data:
            tls = data.get("upstream_tls", "starttls")
            port = _UPSTREAM_PORTS.get(tls, 587) if isinstance(tls, str) else 587
            data = {**data, "upstream_port": port}
        return data


# -- loading -----------------------------------------------------------------------------------


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _secret_file(label: str, value: object, base: Path, env: Mapping[str, str],
                 problems: list[str]) -> SecretFile:
    """The secret file `value` names, read; on a problem, a placeholder (the problem is listed,
    so loading fails, and pydantic does not report the key a second time)."""
    placeholder = SecretFile(Path(str(value)), Secret(""))
    if not isinstance(value, str) or not value:
        problems.append(f"{label}: expected a file name, got {show(value)}")
        return placeholder
    creds = env.get("CREDENTIALS_DIRECTORY", "")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = (Path(creds) if creds else base) / path
    try:
        return SecretFile.read(path)
    except ValueError as exc:
        problems.append(f"{label}: {exc}")
        return placeholder


def _prepare_agents(data: dict[str, Any], base: Path, env: Mapping[str, str],
                    problems: list[str]) -> None:
    agents = data.get("agents")
    if not isinstance(agents, list):
        return
    data["agents"] = agents = [dict(a) if isinstance(a, dict) else a for a in agents]
    for number, agent in enumerate(agents, start=1):
        if not isinstance(agent, dict) or "password_file" not in agent:
            continue
        if "password_hash" in agent:
            problems.append(f"[[agents]] #{number} password_hash, password_file: set one of "
                            "them, not both")
            del agent["password_file"]
            continue
        agent["password_file"] = _secret_file(f"[[agents]] #{number} password_file",
                                              agent["password_file"], base, env, problems)


def _readable(label: str, path: Path, problems: list[str]) -> bool:
    try:
        with path.open("rb"):
            return True
    except OSError as exc:
        problems.append(f"{label}: cannot read {path}: {exc.strerror or exc}")
        return False


def _check_enabled(relay: dict[str, Any], problems: list[str]) -> None:
    """What an enabled relay cannot start without."""
    examples = {"certificate": '"/etc/mailbridge/relay.pem" (PEM, with its chain)',
                "key": '"/etc/mailbridge/relay.key" (PEM)',
                "upstream_host": '"smtp.example.com" (the smarthost that delivers the mail)'}
    for key, example in examples.items():
        if key not in relay:
            problems.append(f"[relay] {key}: missing; an enabled relay needs it, add "
                            f"{key} = {example}")
    cert, key_file = relay.get("certificate"), relay.get("key")
    if isinstance(cert, Path) and isinstance(key_file, Path) \
            and _readable("[relay] certificate", cert, problems) \
            and _readable("[relay] key", key_file, problems):
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key_file)
        except (ssl.SSLError, OSError) as exc:
            problems.append(f"[relay] certificate, key: not a usable PEM certificate and "
                            f"matching key ({getattr(exc, 'reason', None) or exc})")
    if "upstream_username" in relay and "upstream_password_file" not in relay:
        problems.append("[relay] upstream_password_file: upstream_username is set but no "
                        'password; add upstream_password_file = "relay-upstream-password"')
    elif "upstream_password_file" in relay and "upstream_username" not in relay:
        problems.append("[relay] upstream_username: a password file is set but no user name; "
                        'add upstream_username = "..."')


def prepare_relay(data: dict[str, Any], base: Path, env: Mapping[str, str],
                  problems: list[str]) -> None:
    """Resolve and read what [relay] and the agents' relay credentials point at."""
    _prepare_agents(data, base, env, problems)
    raw = data.get("relay")
    if not isinstance(raw, dict):
        return
    relay = data["relay"] = dict(raw)
    for key in ("certificate", "key", "upstream_ca_file"):
        if isinstance(relay.get(key), str) and relay[key]:
            relay[key] = _resolve(relay[key], base)
    if "upstream_password_file" in relay:
        relay["upstream_password_file"] = _secret_file(
            "[relay] upstream_password_file", relay["upstream_password_file"], base, env,
            problems)
    support = data.get("support")
    address = support.get("address") if isinstance(support, dict) else None
    if "hostname" not in relay and isinstance(address, str) \
            and ADDRESS_PATTERN.fullmatch(address):
        relay["hostname"] = address.rpartition("@")[2].lower()
    if relay.get("enabled") is True:
        _check_enabled(relay, problems)
        ca_file = relay.get("upstream_ca_file")
        if isinstance(ca_file, Path):
            _readable("[relay] upstream_ca_file", ca_file, problems)
