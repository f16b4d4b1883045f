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

Public API: `describe_due(due, *, timezone, now)`, `format_iso(due, *, timezone=None)`,
`zone_label(timezone, when)`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_UTC_KEYS = frozenset(
    {"UTC", "Etc/UTC", "Etc/UCT", "UCT", "GMT", "Etc/GMT", "Zulu", "Etc/Zulu",
     "Universal", "Etc/Universal", "Etc/Greenwich", "Greenwich", "GMT0", "Etc/GMT0"}
)  # fmt: skip


def describe_due(due: datetime, *, timezone: str, now: datetime) -> str:
    """When we will answer, in words, in `timezone`: "today by 14:30 (Berlin time)".

    `due` and `now` must be timezone-aware; `timezone` is an IANA key such as
    "Europe/Berlin". Raises ValueError for a naive datetime or an unknown zone.
    """
    zone = _zone(timezone)
    local_due = _aware(due, "due").astimezone(zone)
    local_now = _aware(now, "now").astimezone(zone)
    days = (local_due.date() - local_now.date()).days
    clock = f"{local_due:%H:%M}"
    if days == 0:
        day = "today"
    elif days == 1:
        day = "tomorrow"
    else:
        day = _spelled_date(local_due, with_year=local_due.year != local_now.year)
    return f"{day} by {clock} ({zone_label(timezone, local_due)})"


def format_iso(due: datetime, *, timezone: str | None = None) -> str:
    """`due` as ISO 8601 to the second, in UTC or in `timezone` when given.

    For machine-readable places: logs, `X-` headers, `<time datetime=...>`.
    """
    aware = _aware(due, "due")
    zone = _zone(timezone) if timezone else ZoneInfo("UTC")
    return aware.astimezone(zone).isoformat(timespec="seconds")


def zone_label(timezone: str, when: datetime) -> str:
    """A short, human name for the zone: "Berlin time", "New York time", "UTC", "UTC+05:30".

    City zones are named after their city; UTC and the fixed-offset or legacy
    keys without a city (Etc/GMT+5, EST5EDT, Japan) show their offset at `when`.
    """
    if timezone in _UTC_KEYS:
        return "UTC"
    area, _, city = timezone.rpartition("/")
    if area and area != "Etc" and not city.startswith(("GMT", "UTC")):
        return f"{city.replace('_', ' ')} time"
    offset = _aware(when, "when").astimezone(_zone(timezone)).utcoffset() or timedelta(0)
    return _offset_label(offset)


def _offset_label(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    if minutes == 0:
        return "UTC"
    sign = "+" if minutes > 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{rest:02d}"


def _spelled_date(moment: datetime, *, with_year: bool) -> str:
    text = f"{_WEEKDAYS[moment.weekday()]} {moment.day} {_MONTHS[moment.month - 1]}"
    return f"{text} {moment.year}" if with_year else text


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown time zone {timezone!r}; use an IANA name") from exc


def _aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {moment.isoformat()}")
    return moment
