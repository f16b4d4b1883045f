"""The value types of the configuration's fields: one TOML value checked and converted.

This module owns the checks that need no other key; pydantic applies them field by field, and
each raises ValueError with the sentence the operator reads. Public API, used by the settings
in `mailbridge.config` (which re-exports `Secret`):

- `Secret`, a password that shows as `Secret('**********')` until `.reveal()`.
- Annotated field types: `Address`, `EnvelopeSender`, `Host`, `NonEmpty`, `Port`, `StrictBool`,
  `Tls`, `Timezone`, `StoreUrl`, `Listen`, `Duration`, `PositiveDuration`, `IdleRefresh`,
  `Seconds`, and for the SLA settings `WeekHours` (read with `mailbridge.core.calendar`'s
  `parse_hours`), `ClosedDays` (`parse_closed`), `Regex` (compiled), `Objective` (0 < x < 1);
  for the team settings `HttpsUrl`, `LanguageTag`, `TemplateLanguage` (one with templates:
  shipped, or in the operator's folder that `template_context(folder)` names while
  validating), `OneLine` and `Signature` (multi-line text, at most 12 lines).
- `split_listen("host:port") -> (host, port)`, `mask_url(url)` (the password hidden) and
  `ADDRESS_PATTERN`, the shape of an address.
"""

from __future__ import annotations

import difflib
import hmac
import ipaddress
import re
import zoneinfo
from collections.abc import Mapping
from datetime import date, time, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    PlainSerializer,
    PlainValidator,
    ValidationInfo,
)
from pydantic_core import CoreSchema, core_schema

from mailbridge.config.durations import DURATION_LIKE, format_duration, parse_duration
from mailbridge.config.languages import MARKER, shipped_languages, template_languages
from mailbridge.config.problems import show
from mailbridge.core.calendar import DAY_NAMES, parse_closed, parse_hours
from mailbridge.core.language import match, normalize

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

ADDRESS_PATTERN = re.compile(r'[^@\s<>()\[\],;:"]+@[^@\s<>()\[\],;:"]+')
_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?")
_STORE_SCHEMES = ("sqlite://", "postgresql://", "postgresql+psycopg://")


def _address(value: str) -> str:
    domain = value.rpartition("@")[2]
    if ADDRESS_PATTERN.fullmatch(value) and not domain.startswith(".") and ".." not in domain:
        return value
    hint = "; write only the address here, without a name or <>" if "<" in value else ""
    raise ValueError(f'expected an address like "support@example.com", got {show(value)}{hint}')


def _envelope_sender(value: str) -> str:
    return value if value == "" else _address(value)


def _host(value: str) -> str:
    if _HOSTNAME.fullmatch(value) and ".." not in value:
        return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        shown = show(value)
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
        raise ValueError(f"unknown IANA time zone {show(value)}{hint}") from None
    return value


def _store_url(value: str) -> str:
    if value.startswith(_STORE_SCHEMES):
        return value
    schemes, shown = ", ".join(_STORE_SCHEMES), show(mask_url(value))
    raise ValueError(f"expected a URL starting with {schemes}, got {shown}")


def mask_url(url: str) -> str:
    """Hide the password in scheme://user:password@host, for repr and error messages."""
    return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)


class ListenAddress:
    """`host` and `port` of a settings model's `listen = "host:port"`."""

    if TYPE_CHECKING:
        listen: str

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]


def split_listen(listen: str) -> tuple[str, int]:
    """Split "host:port" or "[ipv6]:port" into (host, port); raise ValueError otherwise."""
    if listen.startswith("["):
        host, _, rest = listen[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = listen.rpartition(":")
    bracketed = listen.startswith("[")
    if not host or (":" in host and not bracketed) or not (port.isascii() and port.isdigit()):
        raise ValueError(
            f'expected "host:port" like "127.0.0.1:9464" or "[::1]:9464", got {show(listen)}'
        )
    if int(port) > 65_535:
        raise ValueError(f"port must be at most 65535, got {port} in {show(listen)}")
    return host, int(port)


def _listen(value: str) -> str:
    split_listen(value)
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
    raise ValueError(f"{DURATION_LIKE}, got {show(value)}{hint}")


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

EnvelopeSender = Annotated[str, AfterValidator(_envelope_sender)]
Timezone = Annotated[str, AfterValidator(_timezone)]
StoreUrl = Annotated[str, AfterValidator(_store_url)]
Listen = Annotated[str, AfterValidator(_listen)]
IdleRefresh = Annotated[PositiveDuration, AfterValidator(_idle_limit)]


# -- SLA field types ---------------------------------------------------------------------------

_HOURS_LIKE = 'expected a table like { mon = ["09:00-17:00"], sat = [] }'


def _hours(value: object) -> Mapping[int, tuple[tuple[time, time], ...]]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{_HOURS_LIKE}, got {show(value)}")
    if value and all(isinstance(day, int) for day in value):  # settings built in code
        value = format_hours(value)
    return MappingProxyType(parse_hours(value))


def format_hours(hours: Mapping[int, tuple[tuple[time, time], ...]]) -> dict[str, list[str]]:
    """Weekly hours as the file writes them: {"mon": ["09:00-17:00"], ...}."""
    def clock(t: time, *, end: bool) -> str:
        return "24:00" if end and t == time(0) else t.strftime("%H:%M")
    return {
        DAY_NAMES[day]: [f"{clock(s, end=False)}-{clock(e, end=True)}" for s, e in spans]
        for day, spans in sorted(hours.items())
    }


def _closed(value: object) -> frozenset[date]:
    if isinstance(value, set | frozenset):
        value = sorted(value)
    if not isinstance(value, list | tuple):
        raise ValueError(
            f'expected an array of dates like ["2026-12-24", "2026-12-27..2026-12-31"], '
            f"got {show(value)}"
        )
    # TOML has a date type too: closed = [2026-12-24] reads the same as "2026-12-24".
    items = [item.isoformat() if type(item) is date else item for item in value]
    return parse_closed(items)


def _regex(value: object) -> re.Pattern[str]:
    if isinstance(value, re.Pattern):
        return value
    if not isinstance(value, str) or not value:
        raise ValueError(f'expected a regular expression like "(?i)outage", got {show(value)}')
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"{show(value)} is not a regular expression: {exc}") from None


def _objective(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"expected a fraction such as 0.95, got {show(value)}")
    if not 0 < value < 1:
        hint = f"; write {value / 100:g} for {value:g}%" if 1 < value < 100 else ""
        raise ValueError(f"must lie between 0 and 1 (0.95 is 95%), got {show(value)}{hint}")
    return float(value)


WeekHours = Annotated[
    Mapping[int, tuple[tuple[time, time], ...]],
    PlainValidator(_hours),
    PlainSerializer(format_hours, when_used="json"),
]
ClosedDays = Annotated[
    frozenset[date],
    PlainValidator(_closed),
    PlainSerializer(lambda days: [d.isoformat() for d in sorted(days)], when_used="json"),
]
Regex = Annotated[
    re.Pattern[str],
    PlainValidator(_regex),
    PlainSerializer(lambda pattern: pattern.pattern, when_used="json"),
]
Objective = Annotated[float, PlainValidator(_objective)]


# -- team and language field types --------------------------------------------------------------

_URL_UNSAFE = re.compile(r'[\s"<>\\^`{|}]')


def _https_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f'expected an https URL like "https://example.com/help", '
                         f"got {show(value)}")
    if _URL_UNSAFE.search(value) or any(ord(c) < 32 for c in value):
        raise ValueError(f"{show(value)} holds spaces, quotes or angle brackets; encode them "
                         "(%20, %22, ...)")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{show(value)} holds a user name or password; remove them")
    return value


def _language_tag(value: str) -> str:
    tag = normalize(value)
    if not tag:
        raise ValueError(f'expected a language tag like "en", "de" or "pt-BR", got {show(value)}')
    return tag


_OPERATOR_LANGUAGES = "operator_template_languages"


def template_context(folder: object) -> dict[str, Any]:
    """The validation context in which `TemplateLanguage` also accepts the language folders
    of an operator's template folder ([templates] dir); anything but a `Path` adds none."""
    return {_OPERATOR_LANGUAGES: template_languages(folder) if isinstance(folder, Path) else ()}


def _template_language(value: str, info: ValidationInfo) -> str:
    tag = _language_tag(value)
    theirs: tuple[str, ...] = (info.context or {}).get(_OPERATOR_LANGUAGES, ())
    found = match(tag, (*shipped_languages(), *theirs))
    if found is None:
        known = ", ".join(f'"{name}"' for name in shipped_languages())
        yours = ", ".join(f'"{name}"' for name in theirs)
        known += f"; in [templates] dir: {yours}" if yours else ""
        raise ValueError(f"no templates for language {show(value)} (shipped: {known}); add a "
                         f"folder {tag}/ with its {MARKER} to the [templates] dir, or choose "
                         "one of those")
    return found


def _one_line(value: str) -> str:
    if any(char in value for char in "\r\n"):
        raise ValueError("must be one line")
    return value.strip()


def _signature(value: str) -> str:
    lines = [line.rstrip() for line in value.strip("\n").splitlines()]
    if len(lines) > 12 or len(value) > 1000:
        raise ValueError("at most 12 lines and 1000 characters")
    return "\n".join(lines)


HttpsUrl = Annotated[str, AfterValidator(_https_url)]
LanguageTag = Annotated[str, AfterValidator(_language_tag)]
"""Any well-formed language tag, normalized ("de-DE" -> "de-de")."""
TemplateLanguage = Annotated[str, AfterValidator(_template_language)]
"""A language we have templates for, shipped or in the operator's [templates] dir (a tag, or
its primary subtag)."""
OneLine = Annotated[str, AfterValidator(_one_line)]
Signature = Annotated[str, AfterValidator(_signature)]
