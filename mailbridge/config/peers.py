"""The mail servers mailbridge connects to: what [smtp] and [relay]'s upstream share.

This module owns the settings of an SMTP server we hand mail to, whichever part of the file
names it: [smtp] (`mailbridge.config.sections.SmtpSettings` adds its own keys to them) and
[relay]'s `upstream_*` keys (`mailbridge.config.relay.RelaySettings.upstream`). The SMTP
transport (`mailbridge.io.smtp_sender`) takes these settings. Public API:

- `SmtpPeerSettings`: host, port, tls, auth, username, password, verify_tls, ca_file, timeout.
- `Auth`: how we log in, "password" (the default) or "oauth2" (the [oauth2] grant's
  access token, SASL XOAUTH2 or OAUTHBEARER).
- `default_port(data, ports, default_tls)`: a server's raw table with the port of its TLS
  mode filled in when the file sets none; `SMTP_PORTS` (465, 587, 25) for SMTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from mailbridge.config.values import Host, NonEmpty, Port, Seconds, Secret, StrictBool, Tls

Auth = Literal["password", "oauth2"]

SMTP_PORTS = {"implicit": 465, "starttls": 587, "none": 25}


def default_port(data: Any, ports: Mapping[str, int], default_tls: str) -> Any:
    """`data` with "port" set to the standard port of its "tls" mode, unless it has one."""
    if isinstance(data, dict) and "port" not in data:
        tls = data.get("tls", default_tls)
        port = ports.get(tls, ports[default_tls]) if isinstance(tls, str) else ports[default_tls]
        data = {**data, "port": port}
    return data


class SmtpPeerSettings(BaseModel):
    """An SMTP server we hand mail to: where it is, how we talk to it, and our login there."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: Host
    port: Port = 587
    tls: Tls = "starttls"
    username: NonEmpty | None = None
    password: Secret | None = None
    auth: Auth = "password"
    """"oauth2": log in as `username` with the [oauth2] grant's token; no password."""
    verify_tls: StrictBool = True
    ca_file: Path | None = None
    timeout: Seconds = 30.0

    @model_validator(mode="before")
    @classmethod
    def _port_for_tls(cls, data: Any) -> Any:
        return default_port(data, SMTP_PORTS, "starttls")

    @model_validator(mode="after")
    def _oauth2_has_user(self) -> SmtpPeerSettings:
        if self.auth == "oauth2" and self.username is None:
            raise ValueError('auth = "oauth2" needs a username (by default [imap] username); '
                             'add username = "support@example.com"')
        return self
