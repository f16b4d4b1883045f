"""The sections of the configuration file: frozen pydantic models, one per table.

Public API: `Config` (the whole file) and its sections `SupportSettings`, `ImapSettings`,
`SmtpSettings`, `StoreSettings`, `HttpSettings`, `AgentSettings`, `RulesSettings`,
`ThreadsSettings`, `TemplatesSettings`, `DaemonSettings`; `SECTIONS`, the tables in the order of
config.example.toml; `default_state_dir(environ)`. The [sla], calendar and policy tables are
in `mailbridge.config.sla`, the agents' profile keys in `mailbridge.config.agents`, [relay] in
`mailbridge.config.relay`, [oauth2] (`OAuth2Settings`) in `mailbridge.config.oauth2`, the
value types of every field in `mailbridge.config.values`.
`SmtpSettings` is `mailbridge.config.peers.SmtpPeerSettings` (the SMTP server, as [relay]'s
upstream is one too) with the keys only [smtp] has.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mailbridge.config.agents import (
    AgentProfile,
    FaqSettings,
    agent_problems,
)
from mailbridge.config.branding import DEFAULT_ACCENT, HexColor, InlineImage
from mailbridge.config.oauth2 import OAuth2Settings
from mailbridge.config.peers import Auth, SmtpPeerSettings, default_port
from mailbridge.config.problems import AGENTS_NEEDED, show
from mailbridge.config.relay import PasswordHash, RelaySettings, SecretFile
from mailbridge.config.sla import (
    CalendarSettings,
    PolicySettings,
    SlaSettings,
    reference_problems,
)
from mailbridge.config.values import (
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
from mailbridge.core.folders import USUAL_SENT_NAMES


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SupportSettings(_Section):
    address: Address
    aliases: tuple[Address, ...] = ()
    name: NonEmpty
    timezone: Timezone = "UTC"
    language: TemplateLanguage = "en"
    leads: tuple[Address, ...] = ()
    """Leads besides the policies' escalate_to: staff who are not agents. Their mail counts
    as theirs only when authenticated, as an agent's (`mailbridge.core.trust`)."""
    accent_color: HexColor = DEFAULT_ACCENT
    """The colour of the rules and links in customer mail's HTML part."""
    logo_file: InlineImage | None = None
    """The desk's logo atop customer mail's HTML part, sent inside the mail
    (`mailbridge.config.branding`)."""

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
    password: Secret = Secret("")
    """Required with auth = "password" (the loader says so); empty, unused, with "oauth2"."""
    auth: Auth = "password"
    """"oauth2": SASL XOAUTH2 / OAUTHBEARER with the [oauth2] grant's token."""
    mailbox: NonEmpty = "INBOX"
    verify_tls: StrictBool = True
    ca_file: Path | None = None
    connect_timeout: Seconds = 15.0
    read_timeout: Seconds = 60.0
    idle_refresh: IdleRefresh = timedelta(minutes=10)
    poll_interval: PositiveDuration = timedelta(seconds=60)
    fetch_batch: Annotated[int, Field(strict=True, ge=1, le=1000)] = 200
    backfill: Duration = timedelta(hours=1)
    sent_folders: Literal["auto"] | tuple[NonEmpty, ...] = "auto"
    """"auto": the folders the server marks \\Sent, else one by a usual name
    (`core.folders`); the daemon resolves it against the server's folders at start."""
    copy_sent: StrictBool = True
    """Append what customers are sent to the Sent folder (`daemon.sent_copies`)."""

    @property
    def account(self) -> str:
        """`user@host:port`: which account a mailbox belongs to, the same for every instance
        configured for it and with no secret in it. It keys the mailbox leases, the recorded
        messages' sources and the cursors (several accounts may share one store), and is
        shown by `mailbridge status`, never a metric label. Host names are
        case-insensitive; user names are kept as configured."""
        host = self.host.lower()
        return f"{self.username}@{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def sent_names(self) -> tuple[str, ...]:
        """The Sent folders: as configured, or (`"auto"` not yet resolved against the
        server, as in offline tools) the usual names."""
        if isinstance(self.sent_folders, str):
            return USUAL_SENT_NAMES
        return self.sent_folders

    @model_validator(mode="before")
    @classmethod
    def _port_for_tls(cls, data: Any) -> Any:
        return default_port(data, {"implicit": 993, "starttls": 143, "none": 143}, "implicit")


class SmtpSettings(SmtpPeerSettings):
    """[smtp]: the server acknowledgements go to (the `SmtpPeerSettings` keys), our name in
    EHLO, and the envelope sender and retries of what goes out."""

    envelope_sender: EnvelopeSender = ""
    helo: Host | None = None
    retry_initial: PositiveDuration = timedelta(seconds=30)
    retry_max: PositiveDuration = timedelta(minutes=15)
    give_up_after: PositiveDuration = timedelta(days=2)


class StoreSettings(_Section):
    url: StoreUrl
    lease_timeout: PositiveDuration = timedelta(seconds=30)
    """How soon another instance takes over the mailboxes of one that died."""
    retention: PositiveDuration = timedelta(days=365)
    """How long a resolved thread is kept after its resolution (`daemon.retention`)."""

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        yield "url", mask_url(self.url)


class HttpSettings(ListenAddress, _Section):
    listen: Listen = "127.0.0.1:9464"
    bearer_token: Secret | None = None
    """From bearer_token_file: /metrics then wants "Authorization: Bearer <token>"."""
    basic_auth_user: NonEmpty | None = None
    basic_auth_password: Secret | None = None
    """From basic_auth_password_file: /metrics then wants HTTP basic auth."""
    push_username: NonEmpty | None = None
    push_password: Secret | None = None
    """From push_password_file: /push/dovecot then wants HTTP basic auth (the user:pass@ of
    Dovecot's push driver url), whatever /metrics wants. Both only of URL-safe characters
    (`mailbridge.config.secrets`)."""

    @field_validator("basic_auth_user")
    @classmethod
    def _no_colon(cls, user: str | None) -> str | None:
        if user is not None and ":" in user:
            raise ValueError("must not contain a colon (RFC 7617)")
        return user


class AgentSettings(AgentProfile):
    """An agent (profile, shift and cap: `mailbridge.config.agents.AgentProfile`)."""

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


class TemplatesSettings(_Section):
    """[templates]: an operator's folder of templates, laid out as the shipped one (en/,
    de/, ...); its files override the shipped ones file by file, and each folder in it holding
    an ack.txt.j2 is a language customers can be written in."""

    dir: Path | None = None
    """Resolved against the configuration file's folder while loading; None: shipped only."""


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
    log_format: Literal["text", "json"] = "text"
    shutdown_timeout: Duration = timedelta(seconds=10)
    """How long a stop waits for work in progress. Unless set, at least 10 s and 5 s more
    than the longest SMTP timeout in use (`Config`), so that a send waiting for the
    server's reply ends and is recorded instead of being cut off."""


class Config(_Section):
    path: Path | None = None
    support: SupportSettings
    imap: ImapSettings | None = None
    smtp: SmtpSettings | None = None
    relay: RelaySettings = Field(default_factory=RelaySettings)
    oauth2: OAuth2Settings | None = None
    store: StoreSettings
    http: HttpSettings = Field(default_factory=HttpSettings)
    agents: tuple[AgentSettings, ...]
    sla: SlaSettings = Field(default_factory=SlaSettings)
    calendars: tuple[CalendarSettings, ...] = ()
    policies: tuple[PolicySettings, ...] = ()
    faq: tuple[FaqSettings, ...] = ()
    templates: TemplatesSettings = Field(default_factory=TemplatesSettings)
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

    @property
    def uses_oauth2(self) -> bool:
        """Whether a login ([imap], [smtp] or the relay's upstream) uses the [oauth2] grant."""
        upstream = self.relay.upstream if self.relay.enabled else None
        return any(peer is not None and peer.auth == "oauth2"
                   for peer in (self.imap, self.smtp, upstream))

    @model_validator(mode="after")
    def _oauth2_given(self) -> Config:
        if self.uses_oauth2 and self.oauth2 is None:
            raise ValueError('auth = "oauth2" needs an [oauth2] section (provider, client_id)')
        return self

    @model_validator(mode="after")
    def _shutdown_outlasts_smtp(self) -> Config:
        if "shutdown_timeout" in self.daemon.model_fields_set:
            return self
        peers = [self.smtp, self.relay.upstream if self.relay.enabled else None]
        longest = max((peer.timeout for peer in peers if peer is not None), default=0.0)
        wait = max(timedelta(seconds=10), timedelta(seconds=longest + 5))
        # Frozen: the derived default is filled in once, while validating.
        object.__setattr__(self, "daemon",
                           self.daemon.model_copy(update={"shutdown_timeout": wait}))
        return self


SECTIONS: dict[str, type[BaseModel]] = {  # in the order of config.example.toml
    "support": SupportSettings, "agents": AgentSettings, "sla": SlaSettings,
    "calendars": CalendarSettings, "policies": PolicySettings, "faq": FaqSettings,
    "templates": TemplatesSettings, "rules": RulesSettings, "threads": ThreadsSettings,
    "imap": ImapSettings, "smtp": SmtpSettings, "relay": RelaySettings,
    "oauth2": OAuth2Settings, "store": StoreSettings,
    "http": HttpSettings, "daemon": DaemonSettings,
}
