"""The SLA part of the configuration: [sla], [[calendars]] and [[policies]].

This module owns the settings that say how fast each customer is answered, and the checks
that span several entries (names unique, calendars known). `mailbridge.config` re-exports the
settings and calls the rest while loading. Public API:

- `SlaSettings` ([sla]: the default policy and the timers), `CalendarSettings` with
  `HolidaySettings`, `PolicySettings` with `MatchSettings`.
- `ALWAYS_OPEN_CALENDAR` ("24/7", the built-in calendar) and `DEFAULT_POLICY` ("default").
- `reference_problems(calendars, policies, sla)`: the cross-checks as problem sentences, on
  the raw tables of the file or on validated settings alike.
- `describe_error(error, sections)`: `mailbridge.config.problems.describe`, taught the array
  sections and nested tables added here (`[[policies]] #2 match subject #1: ...`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from mailbridge.config.problems import describe, show, unknown
from mailbridge.config.values import (
    Address,
    ClosedDays,
    NonEmpty,
    Objective,
    PositiveDuration,
    Regex,
    StrictBool,
    TemplateLanguage,
    Timezone,
    WeekHours,
)

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

ALWAYS_OPEN_CALENDAR = "24/7"
DEFAULT_POLICY = "default"
ARRAYS = ("agents", "calendars", "policies")
"""The sections written as arrays of tables, [[name]]."""


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlaSettings(_Table):
    """The default policy's targets (every message no [[policies]] entry selects) and timers."""

    first_response: PositiveDuration = timedelta(hours=4)
    next_response: PositiveDuration | None = None
    """None: first_response, so no thread awaits an agent without a deadline."""
    periodic_update: PositiveDuration | None = None
    resolution: PositiveDuration | None = None
    calendar: NonEmpty = ALWAYS_OPEN_CALENDAR
    escalate_to: Address | None = None
    objective: Objective = 0.95
    status_update_before: PositiveDuration = timedelta(minutes=30)
    max_status_updates: Annotated[int, Field(strict=True, ge=0)] = 2
    eta_percentile: Annotated[int, Field(strict=True, ge=1, le=100)] = 80
    eta_window: PositiveDuration = timedelta(days=30)
    eta_min_samples: Annotated[int, Field(strict=True, ge=1)] = 10
    resolve_after_quiet: PositiveDuration = timedelta(days=14)
    at_risk_horizon: PositiveDuration = timedelta(hours=1)
    language: TemplateLanguage | None = None
    """The default policy's language; None means the [support] language."""


class HolidaySettings(_Table):
    """Public holidays, as the `holidays` package knows them, close a calendar's day."""

    country: NonEmpty
    subdivision: NonEmpty | None = None

    @field_validator("country")
    @classmethod
    def _known_country(cls, country: str) -> str:
        import holidays  # here: only a desk with public holidays needs it (20 ms to import)

        supported = holidays.list_supported_countries()
        if country in supported:
            return country
        close = country.upper() if country.upper() in supported else None
        hint = f'; did you mean "{close}"?' if close else ' such as "DE", "FR" or "US"'
        raise ValueError(f"the holidays package knows no country {show(country)}; "
                         f"use an ISO 3166 code{hint}")

    @field_validator("subdivision")
    @classmethod
    def _known_subdivision(cls, subdivision: str | None, info: ValidationInfo) -> str | None:
        country = info.data.get("country")
        if subdivision is None or country is None:
            return subdivision
        import holidays

        try:
            holidays.country_holidays(country, subdiv=subdivision)
        except NotImplementedError:
            known = [str(s) for s in holidays.list_supported_countries().get(country, [])]
            listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
            which = f"known: {listed}" if known else "it has none; remove subdivision"
            hint = _did_you_mean(subdivision, known)
            raise ValueError(
                f"the holidays package knows no subdivision {show(subdivision)} of "
                f"{country} ({which}){hint}"
            ) from None
        return subdivision


class CalendarSettings(_Table):
    """When a desk is open; deadlines of the policies that use it count only open time."""

    name: NonEmpty
    timezone: Timezone | None = None
    """None means the [support] timezone."""
    always_open: StrictBool = False
    hours: WeekHours | None = Field(default=None, validate_default=True)
    holidays: HolidaySettings | None = None
    closed: ClosedDays = frozenset()

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name.casefold() == ALWAYS_OPEN_CALENDAR:
            raise ValueError(f'"{ALWAYS_OPEN_CALENDAR}" is the built-in always-open calendar; '
                             "choose another name")
        return name

    @field_validator("hours")
    @classmethod
    def _hours_unless_always_open(cls, hours: Any, info: ValidationInfo) -> Any:
        always_open = info.data.get("always_open")
        if always_open is True and hours is not None:
            raise ValueError("an always_open calendar has no hours; remove hours, or set "
                             "always_open = false")
        if always_open is False and hours is None:
            raise ValueError('missing; add [calendars.hours] with mon = ["09:00-17:00"] and so '
                             "on, or always_open = true")
        return hours


Priority = Literal["high", "normal", "low"]


class MatchSettings(_Table):
    """Which messages a policy selects; an empty match selects none."""

    senders: tuple[NonEmpty, ...] = ()
    subject: tuple[Regex, ...] = ()
    keywords: tuple[NonEmpty, ...] = ()
    to: tuple[Address, ...] = ()
    mailboxes: tuple[NonEmpty, ...] = ()
    priority: tuple[Priority, ...] = ()
    all: StrictBool = False


class PolicySettings(_Table):
    """A named SLA for the messages its match selects; the first matching policy wins."""

    name: NonEmpty
    calendar: NonEmpty | None = None
    """None means [sla] calendar."""
    priority: NonEmpty = "normal"
    first_response: PositiveDuration
    next_response: PositiveDuration | None = None
    """None: this policy's first_response."""
    periodic_update: PositiveDuration | None = None
    resolution: PositiveDuration | None = None
    objective: Objective = 0.95
    escalate_to: Address | None = None
    language: TemplateLanguage | None = None
    """None means [sla] language."""
    match: MatchSettings = Field(default_factory=MatchSettings)

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name.casefold() == DEFAULT_POLICY:
            raise ValueError(f'"{DEFAULT_POLICY}" is the policy set by [sla]; '
                             "choose another name")
        return name


# -- checks across entries ---------------------------------------------------------------------


def reference_problems(calendars: object, policies: object, sla: object) -> list[str]:
    """Duplicate names and unknown calendars, each as `[[section]] #n key: what to change`.

    Takes the raw TOML values (anything may be malformed; what is not a name is left to
    pydantic), so these problems are listed even when other keys fail validation.
    """
    calendar_names = _names(calendars)
    problems = _duplicates("calendars", "calendar", calendar_names)
    problems += _duplicates("policies", "policy", _names(policies))
    known = {ALWAYS_OPEN_CALENDAR: ALWAYS_OPEN_CALENDAR}  # casefolded name -> name; first wins
    for _, name in calendar_names:
        known.setdefault(name.casefold(), name)
    if isinstance(sla, Mapping):
        problems += _unknown_calendar("[sla] calendar", sla.get("calendar"), [*known.values()])
    for number, entry in _entries(policies):
        where = f"[[policies]] #{number} calendar"
        problems += _unknown_calendar(where, entry.get("calendar"), [*known.values()])
    return problems


def _entries(value: object) -> list[tuple[int, Mapping[str, Any]]]:
    if not isinstance(value, Sequence) or isinstance(value, str):
        return []
    return [(n, item) for n, item in enumerate(value, start=1) if isinstance(item, Mapping)]


def _names(value: object) -> list[tuple[int, str]]:
    return [(number, entry["name"].strip()) for number, entry in _entries(value)
            if isinstance(entry.get("name"), str) and entry["name"].strip()]


def _duplicates(section: str, noun: str, names: list[tuple[int, str]]) -> list[str]:
    problems: list[str] = []
    seen: dict[str, int] = {}
    for number, name in names:
        first = seen.setdefault(name.casefold(), number)
        if first != number:
            problems.append(f"[[{section}]] #{number} name: {show(name)} is already the name "
                            f"of #{first}; each {noun} needs its own name")
    return problems


def _unknown_calendar(where: str, value: object, known: list[str]) -> list[str]:
    if not isinstance(value, str) or not value.strip() or value.strip() in known:
        return []
    listed = ", ".join(show(name) for name in known)
    hint = _did_you_mean(value.strip(), known) or (
        f'; add a [[calendars]] block with name = {show(value.strip())}')
    return [f"{where}: unknown calendar {show(value.strip())} (known: {listed}){hint}"]


def _did_you_mean(word: str, choices: Sequence[str]) -> str:
    folded = {choice.casefold(): choice for choice in choices}
    close = difflib.get_close_matches(word.casefold(), list(folded), n=1, cutoff=0.6)
    return f'; did you mean "{folded[close[0]]}"?' if close else ""


# -- problem sentences -------------------------------------------------------------------------

_NESTED: dict[tuple[str, str], type[BaseModel]] = {
    ("calendars", "holidays"): HolidaySettings,
    ("policies", "match"): MatchSettings,
}
_MISSING_EXAMPLES = {
    ("calendars", "name"): 'name = "office"',
    ("calendars", "holidays", "country"): 'country = "DE"',
    ("policies", "name"): 'name = "vip"',
    ("policies", "first_response"): 'first_response = "1h"',
}
# config_problems writes [[agents]] itself, and "not [agents]" must stay as it is.
_SINGLE_TABLE = re.compile(r"(?<!\[)\[(" + "|".join(ARRAYS[1:]) + r")\](?!\])")


def describe_error(error: ErrorDetails, sections: Mapping[str, type[BaseModel]]) -> list[str]:
    """One pydantic error as problem sentences; the array sections are written [[name]].

    An error of the whole Config (its reference check) carries several sentences, one a line.
    """
    loc, kind = error["loc"], error["type"]
    keys = tuple(part for part in loc if isinstance(part, str))
    if not loc:
        return str(error.get("ctx", {}).get("error", error["msg"])).split("\n")
    if len(loc) == 1 and loc[0] in ARRAYS[1:] and kind == "tuple_type":
        return [f"[[{loc[0]}]]: expected [[{loc[0]}]] blocks (an array of tables), "
                f"not [{loc[0]}]"]
    nested = _NESTED.get((keys[0], keys[1])) if len(keys) > 2 else None
    if kind == "extra_forbidden" and nested is not None:
        text = unknown(loc, error["input"], {keys[0]: nested})
    else:
        text = describe(error, sections)
        if kind == "missing" and keys in _MISSING_EXAMPLES:
            text += f"; add {_MISSING_EXAMPLES[keys]}"
    return [_SINGLE_TABLE.sub(r"[[\1]]", text)]
