"""The expected answer time as the customer reads it.

Pure: the caller passes `now`; nothing here reads a clock. The due time is shown
in the customer's (or the desk's) IANA time zone, in words a person reads at a
glance, always with the zone so nobody has to guess:

    today by 14:30 (Berlin time)
    tomorrow by 09:00 (New York time)
    Monday 30 November by 10:00 (Berlin time)
    Monday 4 January 2027 by 10:00 (UTC)

The date is spelled out whenever the day is not today or tomorrow (a weekday
alone is ambiguous a week out), and the year only when it is not this year.

When the customer's Date header shows a different UTC offset, their own clock
is added: "today by 14:30 (Berlin time), that is 08:30 your time".

Every function that writes words takes `language`: "en" (the default) or "de"
for the built-in phrases, or a `Phrases` object for any other language (the
renderer reads one from a template folder's phrases.toml). In German:

    heute bis 14:30 Uhr (Berliner Zeit)
    Montag, 30. November, bis 10:00 Uhr (Berliner Zeit)

Public API:

- `honest_due(deadline, *, received, recent_seconds, add_business, ...)`: the time
  we promise: the SLA deadline, or earlier when recent answers were faster.
- `customer_offset(date_header)`: the UTC offset the customer wrote from, or None.
- `describe_due(due, *, timezone, now)`, `describe_promise(due, *, timezone,
  customer_offset, now)`, `describe_time(moment, *, timezone, now)`,
  `describe_opening(opens_at, *, timezone, now)`: the words; each also takes
  `language` ("en" by default, with the English output unchanged).
- `format_iso(due, *, timezone=None)`, `zone_label(timezone, when, *, language="en")`.
- `Phrases`, the words of one language; `PHRASES`, the built-in ones by language;
  `phrases_for(language)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as fixed_zone
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_UTC_KEYS = frozenset(
    {"UTC", "Etc/UTC", "Etc/UCT", "UCT", "GMT", "Etc/GMT", "Zulu", "Etc/Zulu",
     "Universal", "Etc/Universal", "Etc/Greenwich", "Greenwich", "GMT0", "Etc/GMT0"}
)  # fmt: skip


@dataclass(frozen=True)
class Phrases:
    """How one language writes days, times and zones; the patterns use str.format fields.

    A "relative" day is today or tomorrow; a "dated" one is spelled out with `date`
    (or `date_with_year`). Fields: {day}, {time}, {zone}, {ours}, {when}, {weekday},
    {month}, {year}, {city}.
    """

    today: str
    tomorrow: str
    weekdays: tuple[str, ...]
    """Monday first."""
    months: tuple[str, ...]
    date: str
    date_with_year: str
    due: str
    due_dated: str
    at: str
    at_dated: str
    your_time: str
    """The customer's clock on the same day: "{ours}, that is {time} your time"."""
    your_time_relative: str
    your_time_dated: str
    closed: str
    city_zone: str
    zones: Mapping[str, str] = field(default_factory=dict, hash=False)
    """City names as IANA writes them (spaces for "_") to their zone label, when
    `city_zone` does not fit: "Vienna" -> "Wiener Zeit"."""

    def __post_init__(self) -> None:
        if len(self.weekdays) != 7 or len(self.months) != 12:
            raise ValueError("phrases need 7 weekdays (Monday first) and 12 months")
        object.__setattr__(self, "zones", MappingProxyType(dict(self.zones)))


ENGLISH = Phrases(
    today="today", tomorrow="tomorrow",
    weekdays=("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    months=("January", "February", "March", "April", "May", "June", "July", "August",
            "September", "October", "November", "December"),
    date="{weekday} {day} {month}", date_with_year="{weekday} {day} {month} {year}",
    due="{day} by {time} ({zone})", due_dated="{day} by {time} ({zone})",
    at="{day} at {time} ({zone})", at_dated="{day} at {time} ({zone})",
    your_time="{ours}, that is {time} your time",
    your_time_relative="{ours}, that is {day} {time} your time",
    your_time_dated="{ours}, that is {day} {time} your time",
    closed="We are closed right now and open again {when}.",
    city_zone="{city} time",
)  # fmt: skip

GERMAN = Phrases(
    today="heute", tomorrow="morgen",
    weekdays=("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
    months=("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August",
            "September", "Oktober", "November", "Dezember"),
    date="{weekday}, {day}. {month}", date_with_year="{weekday}, {day}. {month} {year}",
    due="{day} bis {time} Uhr ({zone})", due_dated="{day}, bis {time} Uhr ({zone})",
    at="{day} um {time} Uhr ({zone})", at_dated="am {day}, um {time} Uhr ({zone})",
    your_time="{ours}, bei Ihnen {time} Uhr",
    your_time_relative="{ours}, bei Ihnen {day} {time} Uhr",
    your_time_dated="{ours}, bei Ihnen {day}, {time} Uhr",
    closed="Wir sind gerade nicht erreichbar und {when} wieder für Sie da.",
    city_zone="Ortszeit {city}",
    zones={
        "Berlin": "Berliner Zeit", "Vienna": "Wiener Zeit", "Zurich": "Zürcher Zeit",
        "London": "Londoner Zeit", "Paris": "Pariser Zeit", "Amsterdam": "Amsterdamer Zeit",
        "Brussels": "Brüsseler Zeit", "Luxembourg": "Luxemburger Zeit",
        "Madrid": "Madrider Zeit", "Rome": "römische Zeit", "Prague": "Prager Zeit",
        "Warsaw": "Warschauer Zeit", "Copenhagen": "Kopenhagener Zeit",
        "Stockholm": "Stockholmer Zeit", "Oslo": "Osloer Zeit", "Dublin": "Dubliner Zeit",
        "Lisbon": "Lissabonner Zeit", "Moscow": "Moskauer Zeit",
        "Istanbul": "Istanbuler Zeit", "New York": "New Yorker Zeit",
        "Chicago": "Chicagoer Zeit", "Tokyo": "Tokioter Zeit",
    },
)  # fmt: skip

PHRASES: Mapping[str, Phrases] = MappingProxyType({"en": ENGLISH, "de": GERMAN})
"""The built-in phrases by language."""

Language = str | Phrases
"""A built-in language ("en", "de") or the phrases of another."""


def phrases_for(language: Language) -> Phrases:
    """The phrases of `language`; ValueError for a language without built-in phrases."""
    if isinstance(language, Phrases):
        return language
    found = PHRASES.get(language.lower().split("-")[0])
    if found is None:
        known = ", ".join(sorted(PHRASES))
        raise ValueError(f"no built-in phrases for language {language!r} (built in: {known}); "
                         "pass a Phrases object")
    return found


def describe_due(due: datetime, *, timezone: str, now: datetime,
                 language: Language = "en") -> str:
    """When we will answer, in words, in `timezone`: "today by 14:30 (Berlin time)".

    `due` and `now` must be timezone-aware; `timezone` is an IANA key such as
    "Europe/Berlin". Raises ValueError for a naive datetime or an unknown zone.
    """
    words = phrases_for(language)
    zone = _zone(timezone)
    local_due = _aware(due, "due").astimezone(zone)
    local_now = _aware(now, "now").astimezone(zone)
    day, dated = _day_words(local_due, local_now, words)
    pattern = words.due_dated if dated else words.due
    return pattern.format(day=day, time=f"{local_due:%H:%M}",
                          zone=zone_label(timezone, local_due, language=words))


def honest_due(
    deadline: datetime,
    *,
    received: datetime,
    recent_seconds: Sequence[float],
    percentile: int = 80,
    min_samples: int = 10,
    add_business: Callable[[datetime, timedelta], datetime],
) -> datetime:
    """The answer time to promise: `deadline`, or earlier when we answer faster lately.

    `recent_seconds` are the first-response times of this policy over a recent
    window, in business seconds. With at least `min_samples` of them, their
    `percentile` (nearest rank: the smallest sample that at least that share of
    samples do not exceed) is added to `received` with `add_business`, the
    business-time addition of the policy's calendar. The result is never later
    than `deadline` (the SLA stays the ceiling) and never before `received`.
    Negative, NaN and infinite samples are ignored and do not count. Raises
    ValueError for naive datetimes, a deadline before `received`, or a
    percentile outside 1-100.
    """
    _aware(deadline, "deadline")
    _aware(received, "received")
    if deadline < received:
        raise ValueError("the deadline cannot be before the message was received")
    if not 1 <= percentile <= 100:
        raise ValueError(f"percentile must be between 1 and 100, got {percentile}")
    samples = sorted(s for s in recent_seconds if math.isfinite(s) and s >= 0)
    if not samples or len(samples) < min_samples:
        return deadline
    seconds = samples[math.ceil(percentile / 100 * len(samples)) - 1]
    if seconds >= (deadline - received).total_seconds():
        # Business time never runs faster than the wall clock, so this lands at or
        # after the deadline anyway; and huge samples would overflow a timedelta.
        return deadline
    expected = add_business(received, timedelta(seconds=seconds))
    _aware(expected, "add_business result")
    return max(received, min(deadline, expected))


def customer_offset(date_header: datetime | None) -> timedelta | None:
    """The UTC offset the customer wrote from, from their parsed Date header; None if unknown.

    None for no header, a naive datetime (`email.utils.parsedate_to_datetime`
    gives one for "-0000", RFC 5322's "local time unknown"), an offset no
    place on Earth uses (beyond -12:00/+14:00, or not whole minutes), and for
    +00:00. A zero offset says little about where a person is: clients that
    hide the zone send +0000, and a Date already converted to UTC looks the
    same. Quoting a wrong "your time" would be worse than quoting none.
    """
    if date_header is None:
        return None
    offset = date_header.utcoffset()
    if offset is None or not offset or offset % timedelta(minutes=1):
        return None
    if not timedelta(hours=-12) <= offset <= timedelta(hours=14):
        return None
    return offset


def describe_promise(
    due: datetime, *, timezone: str, customer_offset: timedelta | None, now: datetime,
    language: Language = "en",
) -> str:
    """`describe_due` in the desk's zone, plus the customer's clock when it differs.

    "today by 14:30 (Berlin time), that is 08:30 your time"; the customer's
    day is named ("tomorrow 02:30 your time") whenever it reads differently on
    their calendar than on ours. Without an offset, or with the same offset as
    the desk's zone at `due`, it is `describe_due` alone.
    """
    words = phrases_for(language)
    ours = describe_due(due, timezone=timezone, now=now, language=words)
    if customer_offset is None:
        return ours
    zone = _zone(timezone)
    if due.astimezone(zone).utcoffset() == customer_offset:
        return ours
    theirs = fixed_zone(customer_offset)
    local_due, local_now = due.astimezone(theirs), now.astimezone(theirs)
    day, dated = _day_words(local_due, local_now, words)
    clock = f"{local_due:%H:%M}"
    if day == _day_words(due.astimezone(zone), now.astimezone(zone), words)[0]:
        return words.your_time.format(ours=ours, time=clock)
    pattern = words.your_time_dated if dated else words.your_time_relative
    return pattern.format(ours=ours, day=day, time=clock)


def describe_time(moment: datetime, *, timezone: str, now: datetime,
                  language: Language = "en") -> str:
    """A moment in words in `timezone`: "today at 09:00 (Berlin time)".

    Days are named as in `describe_due`: today, tomorrow, or the spelled date.
    """
    words = phrases_for(language)
    zone = _zone(timezone)
    local = _aware(moment, "moment").astimezone(zone)
    day, dated = _day_words(local, _aware(now, "now").astimezone(zone), words)
    pattern = words.at_dated if dated else words.at
    return pattern.format(day=day, time=f"{local:%H:%M}",
                          zone=zone_label(timezone, local, language=words))


def describe_opening(opens_at: datetime, *, timezone: str, now: datetime,
                     language: Language = "en") -> str:
    """The sentence for a closed desk, with `opens_at` as in `describe_time`.

    "We are closed right now and open again Monday 30 November at 09:00 (Berlin time)."
    """
    words = phrases_for(language)
    when = describe_time(opens_at, timezone=timezone, now=now, language=words)
    return words.closed.format(when=when)


def format_iso(due: datetime, *, timezone: str | None = None) -> str:
    """`due` as ISO 8601 to the second, in UTC or in `timezone` when given.

    For machine-readable places: logs, `X-` headers, `<time datetime=...>`.
    """
    aware = _aware(due, "due")
    zone = _zone(timezone) if timezone else ZoneInfo("UTC")
    return aware.astimezone(zone).isoformat(timespec="seconds")


def zone_label(timezone: str, when: datetime, *, language: Language = "en") -> str:
    """A short, human name for the zone: "Berlin time", "New York time", "UTC", "UTC+05:30".

    City zones are named after their city; UTC and the fixed-offset or legacy
    keys without a city (Etc/GMT+5, EST5EDT, Japan) show their offset at `when`.
    """
    if timezone in _UTC_KEYS:
        return "UTC"
    area, _, city = timezone.rpartition("/")
    if area and area != "Etc" and not city.startswith(("GMT", "UTC")):
        words = phrases_for(language)
        name = city.replace("_", " ")
        return words.zones.get(name) or words.city_zone.format(city=name)
    offset = _aware(when, "when").astimezone(_zone(timezone)).utcoffset() or timedelta(0)
    return _offset_label(offset)


def _offset_label(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    if minutes == 0:
        return "UTC"
    sign = "+" if minutes > 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{rest:02d}"


def _day_words(local: datetime, local_now: datetime, words: Phrases) -> tuple[str, bool]:
    """The day of `local` seen from `local_now` (same zone): today, tomorrow or the date;
    and whether it is the spelled date."""
    days = (local.date() - local_now.date()).days
    if days == 0:
        return words.today, False
    if days == 1:
        return words.tomorrow, False
    pattern = words.date_with_year if local.year != local_now.year else words.date
    return pattern.format(weekday=words.weekdays[local.weekday()], day=local.day,
                          month=words.months[local.month - 1], year=local.year), True


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown time zone {timezone!r}; use an IANA name") from exc


def _aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {moment.isoformat()}")
    return moment
