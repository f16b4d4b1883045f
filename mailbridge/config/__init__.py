"""The configuration: one TOML file in, validated, frozen, typed settings out.

This package owns the file; nothing else in mailbridge reads it. It imports only
`mailbridge.core` (calendar and language checks) and `mailbridge.errors`. Public API:

- `load_config(path, *, environ=None, secrets=True) -> Config` validates everything and raises
  `ConfigError` listing every problem at once, each as `[section] key: what to change`
  (`mailbridge.config.loader`).
- `demo_config(state_dir) -> Config`: the embedded settings of `mailbridge demo`.
- `parse_duration("1h30m") -> timedelta` and `format_duration(timedelta) -> "1h30m"`
  (`mailbridge.config.durations`).
- `default_state_dir(environ) -> Path`: $STATE_DIRECTORY, else the XDG state directory.
- `Config` and its sections (`mailbridge.config.sections`; [sla], calendars and policies in
  `mailbridge.config.sla`; the agents' profile keys and [[faq]] in `mailbridge.config.agents`;
  [relay] in `mailbridge.config.relay`), `SmtpPeerSettings`, an SMTP server we hand mail to
  ([smtp] and [relay]'s upstream, `mailbridge.config.peers`), and `Secret`, a password that
  shows as `Secret('**********')` until `.reveal()` (`mailbridge.config.values`, which holds
  the value types of every field).

The rest of the package: `problems` (the operator's words for every validation error),
`secrets` (how every secret file and certificate is found and read), `passwords` (the relay's
scrypt hashes), `languages` (where the shipped templates are, and the language folders of
any template folder).
"""

from __future__ import annotations

from mailbridge.config.agents import FaqMatchSettings, FaqSettings
from mailbridge.config.durations import format_duration, parse_duration
from mailbridge.config.loader import demo_config, load_config
from mailbridge.config.peers import SmtpPeerSettings
from mailbridge.config.relay import RelaySettings
from mailbridge.config.sections import (
    AgentSettings,
    Config,
    DaemonSettings,
    HttpSettings,
    ImapSettings,
    RulesSettings,
    SmtpSettings,
    StoreSettings,
    SupportSettings,
    TemplatesSettings,
    ThreadsSettings,
    default_state_dir,
)
from mailbridge.config.sla import (
    CalendarSettings,
    HolidaySettings,
    MatchSettings,
    PolicySettings,
    SlaSettings,
)
from mailbridge.config.values import Secret

__all__ = [
    "AgentSettings", "CalendarSettings", "Config", "DaemonSettings", "FaqMatchSettings",
    "FaqSettings", "HolidaySettings", "HttpSettings", "ImapSettings", "MatchSettings",
    "PolicySettings", "RelaySettings", "RulesSettings", "Secret", "SlaSettings",
    "SmtpPeerSettings", "SmtpSettings", "StoreSettings", "SupportSettings", "TemplatesSettings",
    "ThreadsSettings", "default_state_dir", "demo_config", "format_duration", "load_config",
    "parse_duration",
]
