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

Public API:

- `honest_due(deadline, *, received, recent_seconds, add_business, ...)`: the time
  we promise: the SLA deadline, or earlier when recent answers were faster.
- `customer_offset(date_header)`: the UTC offset the customer wrote from, or None.
- `describe_due(due, *, timezone, now)`, `describe_promise(due, *, timezone,
  customer_offset, now)`, `describe_time(moment, *, timezone, now)`,
  `describe_opening(opens_at, *, timezone, now)`: the words.
- `format_iso(due, *, timezone=None)`, `zone_label(timezone, when)`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from datetime import timezone as fixed_zone
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
    day = _day_words(local_due, local_now)
    return f"{day} by {local_due:%H:%M} ({zone_label(timezone, local_due)})"


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
    due: datetime, *, timezone: str, customer_offset: timedelta | None, now: datetime
) -> str:
    """`describe_due` in the desk's zone, plus the customer's clock when it differs.

    "today by 14:30 (Berlin time), that is 08:30 your time"; the customer's
    day is named ("tomorrow 02:30 your time") whenever it reads differently on
    their calendar than on ours. Without an offset, or with the same offset as
    the desk's zone at `due`, it is `describe_due` alone.
    """
    ours = describe_due(due, timezone=timezone, now=now)
    if customer_offset is None:
        return ours
    zone = _zone(timezone)
    if due.astimezone(zone).utcoffset() == customer_offset:
        return ours
    theirs = fixed_zone(customer_offset)
    local_due, local_now = due.astimezone(theirs), now.astimezone(theirs)
    day = _day_words(local_due, local_now)
    if day == _day_words(due.astimezone(zone), now.astimezone(zone)):
        return f"{ours}, that is {local_due:%H:%M} your time"
    return f"{ours}, that is {day} {local_due:%H:%M} your time"


def describe_time(moment: datetime, *, timezone: str, now: datetime) -> str:
    """A moment in words in `timezone`: "today at 09:00 (Berlin time)".

    Days are named as in `describe_due`: today, tomorrow, or the spelled date.
    """
    zone = _zone(timezone)
    local = _aware(moment, "moment").astimezone(zone)
    day = _day_words(local, _aware(now, "now").astimezone(zone))
    return f"{day} at {local:%H:%M} ({zone_label(timezone, local)})"


def describe_opening(opens_at: datetime, *, timezone: str, now: datetime) -> str:
    """The sentence for a closed desk, with `opens_at` as in `describe_time`.

    "We are closed right now and open again Monday 30 November at 09:00 (Berlin time)."
    """
    when = describe_time(opens_at, timezone=timezone, now=now)
    return f"We are closed right now and open again {when}."


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


def _day_words(local: datetime, local_now: datetime) -> str:
    """The day of `local` seen from `local_now` (same zone): today, tomorrow or the date."""
    days = (local.date() - local_now.date()).days
    if days == 0:
        return "today"
    if days == 1:
        return "tomorrow"
    return _spelled_date(local, with_year=local.year != local_now.year)


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
