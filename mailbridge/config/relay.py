"""The relay part of the configuration: [relay], and the agents' relay credentials.

This module owns the settings of the agents' submission relay (`mailbridge.io.relay`) and the
checks that read files (certificate, key, password files), which go through
`mailbridge.config.secrets`. `mailbridge.config` calls `prepare_relay` while loading and adds
`RelaySettings` as [relay]. Public API:

- `RelaySettings` ([relay]: where the relay listens, its TLS, and `upstream`, the smarthost).
  The file writes the smarthost as `upstream_*` keys; validation gathers them into one
  `mailbridge.config.peers.SmtpPeerSettings`, the settings [smtp] is built on, and
  `FILE_KEYS` tells `mailbridge.config.problems` which key a problem of `upstream` is about.
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
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    GetCoreSchemaHandler,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import CoreSchema, core_schema

from mailbridge.config.passwords import parse_hash
from mailbridge.config.peers import SmtpPeerSettings
from mailbridge.config.problems import show, unknown
from mailbridge.config.secrets import (
    first_line,
    read_secret,
    read_secret_file,
    readable,
    resolve,
    secret_path,
)
from mailbridge.config.values import (
    ADDRESS_PATTERN,
    Host,
    Listen,
    ListenAddress,
    Secret,
    StrictBool,
)

_UPSTREAM = {"upstream_host": "host", "upstream_port": "port", "upstream_tls": "tls",
             "upstream_username": "username", "upstream_password_file": "password",
             "upstream_auth": "auth",
             "upstream_verify_tls": "verify_tls", "upstream_ca_file": "ca_file"}
"""The file's upstream_* keys, and the `SmtpPeerSettings` field each one sets."""


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
            return cls(Path(value), first_line(Path(value)))
        raise ValueError(f"expected a file name, got {show(value)}")


def _password_hash(value: str) -> str:
    parse_hash(value)
    return value.strip()


PasswordHash = Annotated[str, AfterValidator(_password_hash)]


class RelaySettings(ListenAddress, BaseModel):
    """The agents' SMTP submission relay; off unless `enabled = true`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    FILE_KEYS: ClassVar[Mapping[str, tuple[str, str]]] = {
        key: ("upstream", field) for key, field in _UPSTREAM.items()}
    """The keys the file writes for `upstream`: upstream_port is upstream.port."""

    enabled: StrictBool = False
    listen: Listen = "127.0.0.1:587"
    tls: Literal["starttls", "implicit"] = "starttls"
    certificate: Path | None = None
    key: Path | None = None
    hostname: Host | None = None
    reply_to: Literal["support", "agent"] = "support"
    """Whose address relayed mail names in Reply-To when the agent's client set none."""
    upstream: SmtpPeerSettings | None = None
    """The smarthost (upstream_host and the other upstream_* keys); None without upstream_host."""

    @model_validator(mode="before")
    @classmethod
    def _gather_upstream(cls, data: Any) -> Any:
        """upstream_port = 25 becomes upstream = {port = 25}, and so on."""
        if not isinstance(data, dict) or not _UPSTREAM.keys() & data.keys():
            return data
        upstream = {field: data[key] for key, field in _UPSTREAM.items() if key in data}
        if isinstance(upstream.get("password"), str | Path):  # a file name, in code
            upstream["password"] = first_line(Path(upstream["password"]))
        return {**{k: v for k, v in data.items() if k not in _UPSTREAM}, "upstream": upstream}

    @field_validator("upstream", mode="wrap")
    @classmethod
    def _no_host_no_upstream(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """upstream_* keys without upstream_host (as a disabled relay may have them) are
        checked, but there is no upstream; an enabled relay without one is a problem."""
        if isinstance(value, dict) and "host" not in value:
            handler({**value, "host": "localhost"})
            return None
        return handler(value)


# -- loading -----------------------------------------------------------------------------------


def _prepare_agents(data: dict[str, Any], base: Path, env: Mapping[str, str],
                    problems: list[str], read: bool) -> None:
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
        label = f"[[agents]] #{number} password_file"
        path = secret_path(label, agent["password_file"], base, env, problems)
        if path is None:
            del agent["password_file"]  # listed as a problem already
        else:
            agent["password_file"] = SecretFile(path, read_secret(label, path, problems,
                                                                  read=read))


def _check_enabled(relay: dict[str, Any], problems: list[str], read: bool) -> None:
    """What an enabled relay cannot start without."""
    examples = {"certificate": '"/etc/mailbridge/relay.pem" (PEM, with its chain)',
                "key": '"/etc/mailbridge/relay.key" (PEM)',
                "upstream_host": '"smtp.example.com" (the smarthost that delivers the mail)'}
    for key, example in examples.items():
        if key not in relay:
            problems.append(f"[relay] {key}: missing; an enabled relay needs it, add "
                            f"{key} = {example}")
    cert, key_file = relay.get("certificate"), relay.get("key")
    if read and isinstance(cert, Path) and isinstance(key_file, Path) \
            and readable("[relay] certificate", cert, problems) \
            and readable("[relay] key", key_file, problems):
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key_file)
        except (ssl.SSLError, OSError) as exc:
            problems.append(f"[relay] certificate, key: not a usable PEM certificate and "
                            f"matching key ({getattr(exc, 'reason', None) or exc})")
    if relay.get("upstream_auth") == "oauth2":
        pass  # the [oauth2] grant's token, as upstream_username (default: [imap] username)
    elif "upstream_username" in relay and "upstream_password_file" not in relay:
        problems.append("[relay] upstream_password_file: upstream_username is set but no "
                        'password; add upstream_password_file = "relay-upstream-password"')
    elif "upstream_password_file" in relay and "upstream_username" not in relay:
        problems.append("[relay] upstream_username: a password file is set but no user name; "
                        'add upstream_username = "..."')


def prepare_relay(data: dict[str, Any], base: Path, env: Mapping[str, str],
                  problems: list[str], *, read: bool = True) -> None:
    """Resolve and read what [relay] and the agents' relay credentials point at (nothing is
    read when `read` is False)."""
    _prepare_agents(data, base, env, problems, read)
    raw = data.get("relay")
    if not isinstance(raw, dict):
        return
    relay = data["relay"] = dict(raw)
    if "upstream" in relay:  # the settings' name for the upstream_* keys, not a key of the file
        problems.append(unknown(("relay", "upstream"), relay.pop("upstream"),
                                {"relay": RelaySettings}))
    for key in ("certificate", "key", "upstream_ca_file"):
        if isinstance(relay.get(key), str) and relay[key]:
            relay[key] = resolve(relay[key], base)
    if "upstream_password_file" in relay:
        relay["upstream_password_file"] = read_secret_file(
            "[relay] upstream_password_file", relay["upstream_password_file"], base, env,
            problems, read=read) or Secret("")  # a placeholder: the problem is listed already
    support = data.get("support")
    address = support.get("address") if isinstance(support, dict) else None
    if "hostname" not in relay and isinstance(address, str) \
            and ADDRESS_PATTERN.fullmatch(address):
        relay["hostname"] = address.rpartition("@")[2].lower()
    if relay.get("enabled") is True:
        _check_enabled(relay, problems, read)
        ca_file = relay.get("upstream_ca_file")
        if isinstance(ca_file, Path):
            readable("[relay] upstream_ca_file", ca_file, problems, read=read)
